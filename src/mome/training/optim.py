"""AdamW over the trainable parameters and the per-step warmup + cosine schedule of the reference code."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from mome.config import TrainConfig

ELEMENTWISE = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.PReLU)
"""Modules whose parameters scale or shift elementwise (norm gains, PReLU slopes): never decayed."""


def no_decay_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """Biases (`bias`, `*_bias`, whatever their shape: MoME's are [experts, width]) and the parameters of
    normalisation layers and PReLUs; decaying them only pulls shifts and gains towards zero."""
    for module in model.modules():
        elementwise = isinstance(module, ELEMENTWISE) or type(module).__name__.endswith("RMSNorm")  # HF norms
        for name, p in module.named_parameters(recurse=False):
            if elementwise or name == "bias" or name.endswith("_bias"):
                yield p


def projector_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """The parameters of the modality projectors (`AVSRModel.audio_projectors` / `video_projectors`)."""
    for name in ("audio_projectors", "video_projectors"):
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            yield from module.parameters()


FUSED_DEVICES = ("cpu", "cuda")
"""Devices where PyTorch's fused AdamW runs; elsewhere the for-loop implementation."""


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over `model`'s trainable parameters (paper: lr 1e-3 ASR/AVSR, 5e-4 VSR; wd 0.1; betas 0.9/0.98),
    with weight decay on weights only (`no_decay_parameters` by role) and the projectors at
    `lr * projector_lr_scale`."""
    params = [p for p in model.parameters() if p.requires_grad]
    exempt = {id(p) for p in no_decay_parameters(model)}
    # one group pair at scale 1: the optimiser state of earlier checkpoints keeps its layout
    projector = {id(p) for p in projector_parameters(model)} if cfg.projector_lr_scale != 1 else set()
    groups = []
    for scale, members in (
        (1.0, [p for p in params if id(p) not in projector]),
        (cfg.projector_lr_scale, [p for p in params if id(p) in projector]),
    ):
        groups += [
            {
                "params": [p for p in members if id(p) not in exempt],
                "weight_decay": cfg.weight_decay,
                "lr": cfg.lr * scale,
            },
            {"params": [p for p in members if id(p) in exempt], "weight_decay": 0.0, "lr": cfg.lr * scale},
        ]
    # fused: one kernel over all parameters instead of a Python loop of small ops (CPU and CUDA)
    fused = all(p.device.type in FUSED_DEVICES for p in params)
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=tuple(cfg.betas), fused=fused)


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """LR multiplier: linear warmup to 1, then cosine to 0 at `total` steps."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, cfg.warmup_steps, total_steps))
