"""The project's error type: a mistake or fault the user can fix, printed as one line (exit 2).

Every error meant for the user derives from `GeneralistError`; the CLI catches it and nothing else
of Python's (a bare ValueError or KeyError is a bug and keeps its traceback). OS errors that a
user causes (a full disk, a read-only mount, `--out` naming a file) are turned into sentences by
`os_error_sentence`.
"""

from __future__ import annotations

import errno


class GeneralistError(Exception):
    """A user-fixable error; its message is one line that says what happened and what to do."""


class ConfigError(GeneralistError, ValueError):
    """An option value that cannot work (a ValueError too, for callers that catch those)."""


class OutputPathError(GeneralistError):
    """An output directory that cannot be created or written."""


class DiskFullError(GeneralistError):
    """Not enough free space for what is about to be written (checked before HDF5 writes: HDF5
    crashes the process when the disk fills mid-write)."""


# errno -> what to tell the user (the path is prepended)
_ADVICE = {
    errno.ENOSPC: "no space left on the device; free some space and rerun (finished work is kept)",
    errno.EDQUOT: "disk quota exceeded; free some space and rerun (finished work is kept)",
    errno.EROFS: "the file system is read-only; choose an --out on a writable disk",
    errno.EACCES: "permission denied; choose an --out you can write to",
    errno.EPERM: "operation not permitted; choose an --out you can write to",
    errno.ENOTDIR: "a part of this path is a file, not a directory; choose another --out",
    errno.EISDIR: "this is a directory where a file was expected",
    errno.ENAMETOOLONG: "the path is too long",
}
USER_ERRNOS = frozenset(_ADVICE)


def os_error_sentence(e: OSError) -> str | None:
    """One line for an OS error a user can fix (None for the others, which stay bugs)."""
    if e.errno not in _ADVICE:
        return None
    where = e.filename if e.filename is not None else "?"
    return f"{where}: {_ADVICE[e.errno]}"
