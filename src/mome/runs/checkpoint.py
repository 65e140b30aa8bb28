"""Checkpoints: the trainable weights, the resolved config and the training state, written atomically.

A checkpoint never holds the frozen LLM or encoders (gigabytes that the user already has): it holds what
`AVSRModel.trainable_state_dict()` returns, plus the config that rebuilds everything else from its paths.

    <run>/checkpoints/step-00000400.pt          {"format", "config", "model", "train_state"}
    <run>/checkpoints/step-00000400.pt.sha256   its checksum, in `sha256sum` format (`sha256sum -c` reads it)
    <run>/checkpoints/latest                    name of the newest complete checkpoint

Each file is written to a temporary name and renamed, so a kill -9 at any moment leaves the previous
checkpoint intact and `latest` always names a complete file; temporaries that a kill left behind are removed
by the next save. Loading verifies the checksum: a damaged newest checkpoint is reported in one line and the
previous intact one is used, and rotation (`train.keep_checkpoints`) only deletes checkpoints older than the
newest `keep` intact ones. A checkpoint without a `.sha256` (written before checksums, or killed between the
two renames) loads unverified. A run, a checkpoint or an export read as one: `mome.runs.load`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from mome.config import Config, Override, saved_config
from mome.errors import UserError
from mome.io import atomic_write, atomic_write_bytes, file_sha256
from mome.runs.checksums import CorruptCheckpoint, checksum_path, verify_checksum, write_checksum

FORMAT = "mome-checkpoint-1"
LATEST = "latest"
T = TypeVar("T")


def save_torch(path: str | Path, payload: Any) -> Path:
    """The one writer of mome's torch files (checkpoints, lip encoders): atomic and flushed to disk, so a kill
    or a power cut leaves the old file or the new one, never a truncated one."""
    path = Path(path)
    remove_temporaries(path.parent, f".{path.name}.tmp-*")
    return atomic_write(path, lambda tmp: torch.save(payload, tmp), fsync=True)


def remove_temporaries(directory: Path, pattern: str = ".*.tmp-*") -> list[Path]:
    """Delete the temporary files (`io.atomic_write`'s `.NAME.tmp-*`) that a killed writer left behind; one
    writer per run directory, so none of them is in use."""
    removed = [p for p in directory.glob(pattern) if p.is_file()] if directory.is_dir() else []
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


def checkpoint_source(path: Path) -> dict[str, Any]:
    """What a result was computed from: the checkpoint file, its step and the sha256 of its bytes."""
    step = path.stem.removeprefix("step-")
    return {"checkpoint": str(path), "step": int(step) if step.isdigit() else None, "sha256": file_sha256(path)}


def _intact(path: Path) -> bool:
    """`verify_checksum` as a bool, remembered per (path, size, mtime): rotation asks at every save."""
    try:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _INTACT:
            verify_checksum(path)
            _INTACT.add(key)
    except (CorruptCheckpoint, OSError):
        return False
    return True


def _rotate(directory: Path, keep: int) -> None:
    """Keep the newest `keep` intact checkpoints and any newer damaged ones; delete the older rest."""
    intact = 0
    for path in sorted(directory.glob("step-*.pt"), reverse=True):
        if intact >= keep:
            path.unlink(missing_ok=True)
            checksum_path(path).unlink(missing_ok=True)
        elif _intact(path):
            intact += 1


def save_checkpoint(
    directory: str | Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    cfg: Config,
    train_state: dict[str, Any],
    keep: int = 3,
    base_models: dict[str, Any] | None = None,
) -> Path:
    """Write `step-XXXXXXXX.pt` and its checksum, point `latest` at it, keep the newest `keep` intact ones.
    `base_models`: the fingerprints of the frozen models it was trained on (`runs.base_models`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    remove_temporaries(directory)
    path = directory / f"step-{step:08d}.pt"
    payload = {
        "format": FORMAT,
        "config": cfg.to_dict(),
        "model": model_state,
        "train_state": train_state,
        "base_models": base_models or {},
    }
    checksum_path(path).unlink(missing_ok=True)  # an old checksum must never vouch for the new file
    save_torch(path, payload)
    write_checksum(path)
    atomic_write_bytes(directory / LATEST, path.name.encode(), fsync=True)
    _rotate(directory, keep)
    return path


def _candidates(path: Path) -> list[Path] | None:
    """The step files of a run or checkpoints directory, newest first (None: `path` is no such directory)."""
    for directory in (path, path / "checkpoints"):
        steps = sorted(directory.glob("step-*.pt"), reverse=True) if directory.is_dir() else []
        if steps:
            return steps
    return None


_REPORTED: set[tuple[str, int]] = set()
_INTACT: set[tuple[str, int, int]] = set()  # (path, size, mtime) of files whose checksum was verified


def _report(path: Path, err: Exception, fallback: Path | None) -> None:
    """One line per damaged file and process (a command may look at a run directory more than once)."""
    key = (str(path), path.stat().st_mtime_ns if path.exists() else 0)
    if key not in _REPORTED:
        _REPORTED.add(key)
        then = f"; using {fallback.name}" if fallback else ""
        print(f"mome: warning: {err}{then}", file=sys.stderr, flush=True)


def newest_checkpoint(path: Path) -> Path:
    """A checkpoint file, or a run / checkpoints directory: its newest intact `step-*.pt`.

    The newest step file is always the one `latest` names, or newer: a kill between writing a checkpoint
    and its `latest` pointer leaves a complete step file without a pointer. So the step files decide, and
    `latest` is only a pointer for people and scripts. A damaged one is reported and the previous one used.
    """
    steps = _candidates(path)
    if steps is None:
        if path.is_file():
            return path
        raise UserError(f"no checkpoint at {path} (expected a .pt file or a run directory with checkpoints/step-*.pt)")
    return _newest_good(path, steps, _verified)


def _verified(step: Path) -> Path:
    verify_checksum(step)
    return step


def _newest_good(path: Path, steps: list[Path], read: Callable[[Path], T]) -> T:
    """`read` of the newest step file it succeeds on; each damaged one is reported with its fallback."""
    for i, step in enumerate(steps):
        try:
            return read(step)
        except CorruptCheckpoint as err:
            _report(step, err, steps[i + 1] if i + 1 < len(steps) else None)
    raise UserError(f"{path}: every checkpoint is corrupt ({', '.join(p.name for p in steps)})")


def _load_file(path: Path) -> dict[str, Any]:
    """One checkpoint file, verified and read safely (tensors and plain containers only: no code runs)."""
    verify_checksum(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or foreign pickle
        raise CorruptCheckpoint(
            f"{path}: not a readable mome checkpoint ({type(err).__name__}: {err})".splitlines()[0]
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(
            f"{path}: not a mome checkpoint (format {payload.get('format') if isinstance(payload, dict) else '?'})"
        )
    payload["path"] = str(path)
    return payload


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint file, or the newest readable one of a run directory (damaged ones are reported)."""
    steps = _candidates(path) if path.is_dir() else None
    if not steps:
        return _load_file(newest_checkpoint(path))
    return _newest_good(path, steps, _load_file)


def run_directory(checkpoint: Path) -> Path:
    """The run directory of a checkpoint file: the one that holds `checkpoints/`."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def checkpoint_config(payload: dict[str, Any], overrides: Sequence[Override] | None = None) -> Config:
    """The config stored in a checkpoint, with optional overrides (e.g. a new data.root)."""
    return saved_config(payload["config"], overrides)
