"""The one process pool of the project: spawned workers that die with their parent.

Collection, scoring, evaluation and videos all run their workers here. Each worker asks the
kernel for SIGKILL when its parent dies (PR_SET_PDEATHSIG), so killing a run, even with SIGKILL,
leaves no orphan writing on or holding memory; an error in the parent terminates the workers
instead of waiting for the queued jobs to finish.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any


def die_with_parent() -> None:
    """Linux: deliver SIGKILL to this process when its parent dies (elsewhere: nothing)."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _start(parent: int, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    die_with_parent()
    if os.getppid() != parent:  # the parent died while this worker was starting: too late for the signal
        os._exit(1)
    if initializer is not None:
        initializer(*initargs)


def spawn_queue() -> Any:
    """A queue workers of `process_pool` can report through (pass it in `initargs`)."""
    return mp.get_context("spawn").Queue()


@contextmanager
def process_pool(workers: int, initializer: Callable[..., None] | None = None,
                 initargs: tuple[Any, ...] = ()) -> Iterator[ProcessPoolExecutor]:
    """A pool of `workers` spawned processes (fresh interpreters: no inherited GL contexts or threads)."""
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_start,
                               initargs=(os.getpid(), initializer, initargs))
    try:
        yield pool
    except BaseException:
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:  # don't let the rest of the queue run after a failure or Ctrl-C
            p.terminate()
        raise
    pool.shutdown(wait=True)
