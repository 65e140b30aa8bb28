"""Checkpoints: the trainable weights, the resolved config and the training state, written atomically.

A checkpoint never holds the frozen LLM or encoders (gigabytes that the user already has): it holds what
`AVSRModel.trainable_state_dict()` returns, plus the config that rebuilds everything else from its paths.

    <run>/checkpoints/step-00000400.pt   {"format", "config", "model", "train_state"}
    <run>/checkpoints/latest             name of the newest complete checkpoint

Each file is written to a temporary name and renamed, so a kill -9 at any moment leaves the previous
checkpoint intact and `latest` always names a complete file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mome.config import Config, saved_config
from mome.errors import UserError
from mome.io import atomic_write, atomic_write_bytes

FORMAT = "mome-checkpoint-1"
LATEST = "latest"


def save_torch(path: str | Path, payload: Any) -> Path:
    """The one writer of mome's torch files (checkpoints, lip encoders): atomic and flushed to disk, so a kill
    or a power cut leaves the old file or the new one, never a truncated one."""
    return atomic_write(path, lambda tmp: torch.save(payload, tmp), fsync=True)


def save_checkpoint(
    directory: str | Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    cfg: Config,
    train_state: dict[str, Any],
    keep: int = 3,
) -> Path:
    """Write `step-XXXXXXXX.pt`, point `latest` at it, and keep only the newest `keep` checkpoints."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step-{step:08d}.pt"
    payload = {"format": FORMAT, "config": cfg.to_dict(), "model": model_state, "train_state": train_state}
    save_torch(path, payload)
    atomic_write_bytes(directory / LATEST, path.name.encode(), fsync=True)
    for old in sorted(directory.glob("step-*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run / checkpoints directory (its newest `step-*.pt`).

    The newest step file is always the one `latest` names, or newer: a kill between writing a checkpoint
    and its `latest` pointer leaves a complete step file without a pointer. So the step files decide, and
    `latest` is only a pointer for people and scripts.
    """
    path = Path(path)
    for directory in (path, path / "checkpoints"):
        steps = sorted(directory.glob("step-*.pt")) if directory.is_dir() else []
        if steps:
            return steps[-1]
    if path.is_file():
        return path
    raise UserError(f"no checkpoint at {path} (expected a .pt file or a run directory with checkpoints/step-*.pt)")


def latest_checkpoint(directory: str | Path) -> Path | None:
    try:
        return resolve_checkpoint(directory)
    except UserError:
        return None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (tensors and plain containers only: no code runs)."""
    path = resolve_checkpoint(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or foreign pickle
        raise UserError(f"{path}: not a readable mome checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(
            f"{path}: not a mome checkpoint (format {payload.get('format') if isinstance(payload, dict) else '?'})"
        )
    payload["path"] = str(path)
    return payload


def checkpoint_config(payload: dict[str, Any], overrides: list[str] | None = None) -> Config:
    """The config stored in a checkpoint, with optional `key=value` overrides (e.g. a new data.root)."""
    return saved_config(payload["config"], overrides)


def model_from_checkpoint(
    path: str | Path, overrides: list[str] | None = None, device: str | torch.device | None = None
):
    """Rebuild (model, config) from a checkpoint: frozen parts from their paths, trained weights from the file."""
    from mome.models.avsr import build_model

    payload = load_checkpoint(path)
    cfg = checkpoint_config(payload, overrides)
    torch.manual_seed(cfg.train.seed)  # frozen parts built from an `arch` (tests) get the weights training had
    model = build_model(cfg.model, device=device)
    try:
        model.load_trainable_state_dict(payload["model"])
    except KeyError as err:
        raise UserError(f"{payload['path']}: weights do not fit its config: {err}") from None
    return model.eval(), cfg
