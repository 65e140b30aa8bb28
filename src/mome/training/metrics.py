"""Training logs: one CSV row per logged step (append-only, survives a crash) and TensorBoard scalars."""

from __future__ import annotations

import csv
from pathlib import Path


class MetricsLogger:
    """Writes `metrics.csv` and `tensorboard/` under the run directory (main process only)."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.csv"
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: round(float(v), 6) for k, v in values.items()}}
        new = not self.path.exists()
        fields = list(row)
        if not new:  # keep the header of the file; new keys (e.g. validation) go to their own rows
            with open(self.path, newline="") as f:
                header = next(csv.reader(f), [])
            if set(fields) - set(header):
                fields = header + [k for k in fields if k not in header]
                self._rewrite_header(fields)
            else:
                fields = header
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            if new:
                w.writeheader()
            w.writerow(row)
        for k, v in values.items():
            self.writer.add_scalar(k, float(v), step)

    def _rewrite_header(self, fields: list[str]) -> None:
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
