"""What the training loops (`mome train`, `mome pretrain-video`) do when something goes wrong, in one place.

- SIGINT / SIGTERM finish the current step; the loop saves and raises `Interrupted`, which the command line
  turns into exit code 130 / 143 (`mome.stopping.StopSignals`, shared with the feature cache and the demo).
- `NonFiniteGuard`: a step with a non-finite loss or gradient is skipped and counted; a few in a row stop
  the run (a checkpoint is never written from non-finite weights: `check_finite`).
- `SkipLog`: utterances that fail to load are reported once each (not once per epoch); more of them than
  `train.max_bad_fraction` of the rows stop the run (`mome train`), and an epoch that yields no batch at all
  stops it with the most common reason instead of looping on empty epochs.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from mome.data.collate import collate
from mome.errors import UserError

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ non-finite
def check_finite(tensors: Iterable[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def grad_norm(parameters: Iterable[torch.Tensor]) -> torch.Tensor:
    """The global L2 norm of the gradients (inf or nan if any element is)."""
    norms = [p.grad.detach().float().norm() for p in parameters if p.grad is not None]
    return torch.stack(norms).norm() if norms else torch.zeros(())


class NonFiniteGuard:
    """Counts steps with a non-finite loss or gradient; `limit` of them in a row raise a one-line UserError."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit, self.what = limit, what
        self.in_a_row = self.total = 0

    def ok(self, *values: torch.Tensor, step: int) -> bool:
        """True if every value is finite (take the step); False: skip it. Raises after `limit` in a row."""
        if all(bool(torch.isfinite(v).all()) for v in values):
            self.in_a_row = 0
            return True
        self.in_a_row += 1
        self.total += 1
        log.warning(
            "%s: non-finite loss or gradient at step %d: step skipped (%d in a row)", self.what, step, self.in_a_row
        )
        if self.in_a_row >= self.limit:
            raise UserError(
                f"{self.what}: {self.in_a_row} steps in a row with a non-finite loss or gradient after step {step} "
                f"(limit train.max_nonfinite_steps={self.limit}); stopped without saving: lower train.lr or check "
                "the data"
            )
        return False


# ------------------------------------------------------------------------------------------ bad items
class Marked(Dataset):
    """A dataset whose failed items come back as {"id", "error"} markers instead of None, so that the reason
    reaches the main process from a DataLoader worker (where `dataset.bad` is a copy)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        if item is None:
            row = self.dataset.rows[index]
            return {"id": row.rel_path, "error": self.dataset.bad.get(row.rel_path, "unreadable")}
        return item


def collate_marked(items: list[dict]) -> dict:
    """`collate` of the good items (None if none) plus the failed ones as {id: reason}."""
    failed = {it["id"]: it["error"] for it in items if "error" in it}
    return {"batch": collate([it for it in items if "error" not in it]), "failed": failed}


def _reason(rel_path: str, reason: str) -> str:
    """The reason without its file name (`<root>/<rel>.mp4: missing file` -> `missing file`), for counting."""
    head, sep, tail = reason.partition(": ")
    return tail if sep and rel_path in head else reason


class SkipLog:
    """Utterances that failed to load: each reported once per run, counted for the empty-epoch message."""

    def __init__(self, labels: str | Path) -> None:
        self.labels = labels
        self.failed: dict[str, str] = {}

    def add(self, failed: dict[str, str]) -> None:
        for rel, reason in failed.items():
            if rel not in self.failed:
                log.warning("skipping %s: %s", rel, reason)
                self.failed[rel] = reason

    def _most_common(self) -> str:
        reasons = Counter(_reason(rel, r) for rel, r in self.failed.items())
        if not reasons:
            return ""
        reason, count = reasons.most_common(1)[0]
        return f"; most common: {reason!r} ({count} rows)"

    def no_batch(self, rows: int, epoch: int) -> UserError:
        """The one-line error of an epoch that trained no batch."""
        return UserError(
            f"{self.labels}: epoch {epoch} yielded no batch: {len(self.failed)} of {rows} rows failed to load"
            f"{self._most_common()}"
        )

    def too_many(self, failed: int, rows: int, malformed: int, fraction: float) -> UserError | None:
        """The one-line error of a run that left out more than `fraction` of its rows (`failed` to load so far,
        over every rank, and `malformed` label rows), else None."""
        bad, total = failed + malformed, rows + malformed
        if bad <= fraction * total:
            return None
        return UserError(
            f"{self.labels}: {bad} of {total} training rows left out ({failed} failed to load, {malformed} malformed), "
            f"more than train.max_bad_fraction={fraction:g} allows{self._most_common()}; repair the data (a damaged "
            "feature cache: `mome features`) or raise train.max_bad_fraction"
        )


@contextmanager
def quiet_dataset() -> Iterator[None]:
    """Silence the dataset's per-item warnings (a DataLoader worker repeats them every epoch): `SkipLog`
    reports each failure once instead."""
    logger = logging.getLogger("mome.data.dataset")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
