"""File-system checks made before writing, so that a user's mistake is a sentence, not a crash."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from generalist.errors import DiskFullError, OutputPathError, os_error_sentence

SPACE_MARGIN = 4 * 2**20  # bytes kept free beyond an estimate (indexes, metadata, HDF5 overhead)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """The one atomic-write idiom: yields `path` + ".tmp" to write, renamed over `path` when the block
    ends without error, so that readers see the old file or the new one, never a partial one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves the old file and nothing else
        raise
    os.replace(tmp, path)


def first_file_ancestor(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` (itself included) that is not a directory, or None."""
    for p in [path, *path.parents]:
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


def check_not_a_file(path: Path, flag: str = "--out") -> None:
    """Raise OutputPathError when `path`, or a parent of it, is an existing file (creates nothing)."""
    path = Path(path)
    blocker = first_file_ancestor(path)
    if blocker == path:
        raise OutputPathError(f"{flag} {path} is a file, not a directory; choose another {flag}")
    if blocker is not None:
        raise OutputPathError(f"{flag} {path} is under {blocker}, which is a file; choose another {flag}")


def ensure_dir(path: Path, flag: str = "--out") -> Path:
    """Create directory `path` (and parents) or raise OutputPathError saying why it cannot be."""
    path = Path(path)
    check_not_a_file(path, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        msg = os_error_sentence(e)
        if msg is None:
            raise
        raise OutputPathError(f"{flag} {path}: cannot create it ({msg})") from None
    return path


def require_free_space(directory: Path, nbytes: int, what: str) -> None:
    """Raise DiskFullError unless `directory`'s file system has `nbytes` plus a margin free."""
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    if free < nbytes + SPACE_MARGIN:
        raise DiskFullError(f"{directory}: {free / 2**20:.1f} MB free, {what} needs about "
                            f"{(nbytes + SPACE_MARGIN) / 2**20:.1f} MB; free some space and rerun "
                            "(with --resume for collect: finished episodes are kept)")
