"""Matryoshka compression: one padded batch of encoder features pooled at every configured rate.

`avg-pool` averages `rate` consecutive frames (AvgPool1d with kernel = stride = rate, as in Llama-MTSK and
MoME); `stack` concatenates them on the feature axis (Llama-AVSR). Both keep floor(T / rate) tokens, like the
reference, but never fewer than one: a clip shorter than the rate becomes a single token averaging the frames
it has. Padding frames are excluded from every average and every pooled position past a clip's length is
zero, and the pooled lengths travel with the features so that the sequence builder takes only real tokens
(the Llama-AVSR / Llama-MTSK reference code let padded frames into the LLM input).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def pooled_key(modality: str, rate: int) -> str:
    """The batch key of features pooled ahead of time (a pooled feature cache): `audio_pooled4`; its lengths
    are under the key + `_lengths`."""
    return f"{modality}_pooled{rate}"


def pooled_lengths(lengths: torch.Tensor, rate: int) -> torch.Tensor:
    """Tokens kept per clip at `rate`: floor(T / rate), at least 1 for a non-empty clip. The only copy of this rule."""
    return torch.where(lengths > 0, (lengths // rate).clamp_min(1), torch.zeros_like(lengths))


@dataclass
class Pooled:
    features: torch.Tensor  # [B, T', D'] (D' = D for avg-pool, rate*D for stack)
    lengths: torch.Tensor  # [B] valid tokens per clip

    @property
    def mask(self) -> torch.Tensor:
        """[B, T'] True on real tokens."""
        positions = torch.arange(self.features.shape[1], device=self.lengths.device)
        return positions.unsqueeze(0) < self.lengths.unsqueeze(1)


def pool(features: torch.Tensor, lengths: torch.Tensor, rate: int, mode: str = "avg-pool") -> Pooled:
    """Pool [B, T, D] features with valid `lengths` [B] at one rate."""
    batch, time, dim = features.shape
    out_lengths = pooled_lengths(lengths, rate)
    windows = max(1, -(-time // rate))  # ceil, so a short clip's partial window exists
    pad = windows * rate - time
    valid = torch.arange(time, device=features.device).unsqueeze(0) < lengths.unsqueeze(1)  # [B, T]
    x = (features * valid.unsqueeze(-1)).to(features.dtype)
    x = nn.functional.pad(x, (0, 0, 0, pad)).view(batch, windows, rate, dim)  # [B, W, rate, D]
    if mode == "avg-pool":
        counts = nn.functional.pad(valid, (0, pad)).view(batch, windows, rate).sum(-1, keepdim=True)  # [B, W, 1]
        pooled = x.sum(2) / counts.clamp_min(1).to(x.dtype)  # [B, W, D]
    elif mode == "stack":
        pooled = x.reshape(batch, windows, rate * dim)  # [B, W, rate*D]
    else:
        raise ValueError(f"unknown compression mode {mode!r}")
    width = int(out_lengths.max().item()) if batch else 0
    pooled = pooled[:, :width]
    keep = torch.arange(width, device=features.device).unsqueeze(0) < out_lengths.unsqueeze(1)
    return Pooled(pooled * keep.unsqueeze(-1), out_lengths)


class MatryoshkaPooler(nn.Module):
    """Pools one modality at each of its rates: features [B, T, D] -> {rate: Pooled}."""

    def __init__(self, rates: list[int], mode: str = "avg-pool") -> None:
        super().__init__()
        self.rates = list(rates)
        self.mode = mode

    def output_dim(self, input_dim: int, rate: int) -> int:
        return input_dim * rate if self.mode == "stack" else input_dim

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor, rates: list[int] | None = None
    ) -> dict[int, Pooled]:
        return {r: pool(features, lengths, r, self.mode) for r in (rates or self.rates)}
