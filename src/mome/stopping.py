"""SIGINT / SIGTERM, in one place: a stopped command saves what it has and exits with 130 / 143 (128 + the
signal number, what a shell reports), never 0, so an interrupted run never passes for a finished one.

- `StopSignals`: inside a loop that can save (training, the feature cache), a signal only sets a flag; the
  loop finishes its step or utterance, saves and raises `interrupted()` (`errors.Interrupted`).
- `stoppable(fn)`: elsewhere (a command of several stages), SIGTERM unwinds like Ctrl-C (a `KeyboardInterrupt`),
  and `exit_code` gives the code of either; a `StopSignals` inside it takes both signals over while it runs.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mome.errors import Interrupted

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
"""128 + the signal number, what a shell reports for a process the signal ended."""
T = TypeVar("T")


class StopSignals:
    """While active, SIGINT and SIGTERM only set `signum`: the loop finishes its step, saves and raises
    `interrupted()`. A second SIGINT raises KeyboardInterrupt at once (a stuck step can still be left)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for signum in EXIT_CODES:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def stop(self) -> bool:
        return self.signum is not None

    def interrupted(
        self, what: str, saved: Path | None, rerun: str = "rerun the same command to resume"
    ) -> Interrupted:
        name = signal.Signals(self.signum or signal.SIGINT).name
        where = f"; saved {saved}" if saved else ""
        return Interrupted(f"{what}: interrupted by {name}{where}; {rerun}", EXIT_CODES[self.signum or signal.SIGINT])


class Terminated(KeyboardInterrupt):
    """SIGTERM inside `stoppable`: unwinds like Ctrl-C (no `except Exception` can swallow it)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


def stoppable(fn: Callable[[], T]) -> T:
    """Run `fn` with SIGTERM unwinding like Ctrl-C, so that the code around it can name where it stopped."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return fn()
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_code(stop: KeyboardInterrupt) -> int:
    """130 for a Ctrl-C, 143 for a SIGTERM inside `stoppable`."""
    return EXIT_CODES[signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT]
