"""One writer per directory: an exclusive `flock` on DIR/.writer.lock, held for a process's lifetime.

The kernel drops the lock when its holder exits in any way (SIGKILL included), so a stale lock
file never blocks anyone; the file holds the holder's PID only so the refusal can name it. Readers
(`datasets check`) ask `holder()` to tell a dataset being written from a broken one.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from generalist.errors import GeneralistError, OutputPathError, os_error_sentence
from generalist.fs import ensure_dir

LOCK_FILE = ".writer.lock"


class LockedError(GeneralistError):
    """Another process is writing the directory."""


class WriterLock:
    """An exclusive writer lock on a directory (created if needed); release() or process exit frees it."""

    def __init__(self, directory: Path, what: str, flag: str = "--out"):
        directory = Path(directory).absolute()
        # the top directory this lock creates: removed again if the locked work fails leaving nothing
        self.created = next((p for p in reversed([directory, *directory.parents]) if not p.exists()), None)
        self.directory = ensure_dir(directory, flag)
        self.path = self.directory / LOCK_FILE
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            msg = os_error_sentence(e)
            if msg is None:
                raise
            raise OutputPathError(f"{flag} {directory}: cannot write there ({msg})") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._fd)
            self._fd = None
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            pid = holder(self.directory) or _read_pid(self.path)
            who = f"process {pid}" if pid else "another process"
            raise LockedError(f"{self.directory} is being written by {who} (another {what}); "
                              "wait for it to finish or use another --out") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        """Give the lock up (closing the descriptor releases the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None and self.created is not None and os.listdir(self.directory) == [LOCK_FILE]:
            self.path.unlink()  # a refused command leaves no empty --out behind
            for d in [self.directory, *self.directory.parents]:
                try:
                    d.rmdir()
                except OSError:  # not empty: another writer's or the user's files are there
                    break
                if d == self.created:
                    break
        self.release()


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def holder(directory: Path) -> int | None:
    """The PID writing `directory` now, or None when nobody holds its lock.

    Read from /proc/locks, which never takes the lock itself (probing with flock could refuse a
    writer that starts at that moment); without /proc/locks, a shared-lock probe answers 0."""
    path = Path(directory) / LOCK_FILE
    try:
        st = path.stat()
    except OSError:
        return None
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return _probe(path)
    for line in lines:
        f = line.split()
        if len(f) >= 6 and f[1] == "FLOCK" and f[3] == "WRITE" and f[5] == key:
            return int(f[4])
    return None


def _probe(path: Path) -> int | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _read_pid(path) or 0
    finally:
        os.close(fd)
    return None
