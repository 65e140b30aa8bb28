"""Training logs: `metrics.csv`, one row per logged step and kind, and TensorBoard scalars.

Rows are keyed by (step, kind): a training row (loss, lr, ...) and a validation row (`val/...`) may share a
step, and a row logged again for a key replaces the earlier one. A resumed run (`resume_step`) drops the rows
after its checkpoint's step, which it is about to compute again, so a crash and a resume never leave a step
twice. Rows are appended while nothing needs replacing; a replacement or a new column rewrites the file
atomically.
"""

from __future__ import annotations

import csv
from pathlib import Path

from mome.io import atomic_write


def _kind(values: dict[str, object]) -> str:
    """`val` for a row of validation values only, `train` for any other."""
    return "val" if all(k.startswith("val/") for k in values) else "train"


def _step(row: dict[str, str]) -> int | None:
    try:
        return int(row.get("step") or "")
    except ValueError:
        return None  # a line a kill cut short


class MetricsLogger:
    """Writes `metrics.csv` and `tensorboard/` under the run directory (main process only).

    `resume_step`: the step the run resumes from (0: a fresh run); rows after it are dropped."""

    def __init__(self, run_dir: Path, enabled: bool = True, resume_step: int = 0) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.csv"
        self.writer = None
        self.header: list[str] = []
        self.keys: set[tuple[int, str]] = set()
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._open(resume_step)
            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step + 1)

    def _open(self, resume_step: int) -> None:
        """Read the keys of the rows so far, dropping those after `resume_step` (and any cut short)."""
        if not self.path.exists():
            return
        header, rows = self._read()
        kept = [r for r in rows if (step := _step(r)) is not None and step <= resume_step]
        if len(kept) < len(rows):
            self._write(header, kept)
        self.header = header
        self.keys = {(int(r["step"]), _kind({k: v for k, v in r.items() if k != "step" and v})) for r in kept}

    def _read(self) -> tuple[list[str], list[dict[str, str]]]:
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            rows = [r for r in reader if None not in r]  # a row with more fields than the header: cut short
            return list(reader.fieldnames or []), rows

    def _write(self, fields: list[str], rows: list[dict]) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=fields)
                w.writeheader()
                w.writerows(rows)

        atomic_write(self.path, write)

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: round(float(v), 6) for k, v in values.items()}}
        key = (step, _kind(values))
        new_fields = [k for k in row if k not in self.header]
        if key in self.keys or (new_fields and self.header):  # replace the row, or widen the header
            _, rows = self._read()
            rows = [r for r in rows if (_step(r), _kind({k: v for k, v in r.items() if k != "step" and v})) != key]
            self.header += new_fields
            self._write(self.header, [*rows, row])
        else:
            new = not self.header
            self.header += new_fields
            with open(self.path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.header)
                if new:
                    w.writeheader()
                w.writerow(row)
        self.keys.add(key)
        for k, v in values.items():
            self.writer.add_scalar(k, float(v), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
