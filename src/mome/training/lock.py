"""One `mome train` per run directory: `<run>/train.lock`, held (flock) while a process trains into it.

Two processes training into one directory would delete each other's temporary checkpoints and interleave
their rows in metrics.csv. The kernel releases the lock when its holder ends, however it ends (return,
exception, kill -9), so the lock of a dead process is taken over without a stale-lock check; the file holds
the holder's PID, for the one line a second process gets, and is emptied on release.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mome.errors import UserError

LOCK_FILE = "train.lock"


class RunLocked(UserError):
    """Another process trains into the run directory."""


def _holder(fd: int) -> str:
    """The PID the lock file names (written by its holder), or `unknown` (it is being written)."""
    text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    return text if text.isdigit() else "unknown"


@contextmanager
def run_lock(run_dir: Path) -> Iterator[Path]:
    """Hold `<run_dir>/train.lock` for the block (creating the directory); `RunLocked` at once, naming the
    holder's PID, if another process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(
                f"{run_dir}: another `mome train` (PID {_holder(fd)}) is training into this directory ({LOCK_FILE}); "
                "wait for it to finish, or choose another train.output_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # released: no PID left behind to mislead a reader
    finally:
        os.close(fd)  # releases the lock
