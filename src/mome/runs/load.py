"""A run, a checkpoint file or an export, read as one: its newest intact checkpoint, its payload, its model,
and its export. Every command and `mome.load` that takes a run goes through here, so an export loads
exactly like the run it came from (`runs.export`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mome.config import Config, Override
from mome.errors import UserError
from mome.models.avsr import AVSRModel, build_model
from mome.runs.base_models import check
from mome.runs.checkpoint import checkpoint_config, newest_checkpoint, read_checkpoint, run_directory
from mome.runs.export import WEIGHTS, is_export, read_export, refuse_run_directory, write_export


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, a run / checkpoints directory (its newest intact `step-*.pt`, `newest_checkpoint`)
    or an export (its weights file stands for the checkpoint)."""
    path = Path(path)
    if is_export(path):
        return path / WEIGHTS
    return newest_checkpoint(path)


def latest_checkpoint(directory: str | Path) -> Path | None:
    try:
        return resolve_checkpoint(directory)
    except UserError:
        return None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file, or the newest readable one of a run directory (damaged ones are reported), or
    an export (`mome export`) as the same payload."""
    path = Path(path)
    for folder in (path, path.parent):
        if is_export(folder) and (folder == path or path.name == WEIGHTS):
            return read_export(folder)
    return read_checkpoint(path)


def model_from_checkpoint(
    path: str | Path, overrides: Sequence[Override] | None = None, device: str | torch.device | None = None
) -> tuple[AVSRModel, Config]:
    """Rebuild (model, config) from a checkpoint: frozen parts from their paths, trained weights from the file."""
    return model_from_payload(load_checkpoint(path), overrides, device)


def model_from_payload(
    payload: dict[str, Any], overrides: Sequence[Override] | None = None, device: str | torch.device | None = None
) -> tuple[AVSRModel, Config]:
    """(model, config) from a checkpoint already read by `load_checkpoint` (the file is read and hashed once)."""
    cfg = checkpoint_config(payload, overrides)
    check(payload.get("base_models"), cfg.model, payload["path"])  # before the slow build, in one line
    torch.manual_seed(cfg.train.seed)  # frozen parts built from an `arch` (tests) get the weights training had
    model = build_model(cfg.model, device=device)
    try:
        model.load_trainable_state_dict(payload["model"])
    except KeyError as err:
        raise UserError(f"{payload['path']}: weights do not fit its config: {err}") from None
    return model.eval(), cfg


def export_run(run: Path, out: Path) -> Path:
    """Write the export of `run`'s newest checkpoint (or of an export) into `out`; returns the model card's path."""
    checkpoint = resolve_checkpoint(run)
    run_dir = run_directory(checkpoint)
    refuse_run_directory(out, run_dir)
    return write_export(out, load_checkpoint(checkpoint), run_dir)
