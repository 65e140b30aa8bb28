"""Projectors from encoder width to LLM width: Linear -> ReLU -> Linear (-> LayerNorm), per modality.

Llama-MTSK keeps one projector per (modality, rate); `projector.per_rate: false` shares one across rates.
Stacked compression changes the input width with the rate, so it always needs one per rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mome.config import ProjectorConfig
from mome.errors import ConfigError


class Projector(nn.Sequential):
    def __init__(self, in_dim: int, hidden: int, out_dim: int, layer_norm: bool) -> None:
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)]
        if layer_norm:
            layers.append(nn.LayerNorm(out_dim))
        super().__init__(*layers)


class ModalityProjectors(nn.Module):
    """The projectors of one modality, addressed by rate: `projectors(rate, x)`."""

    def __init__(
        self, in_dims: dict[int, int], out_dim: int, cfg: ProjectorConfig, embedding_rms: float | None = None
    ) -> None:
        super().__init__()
        self.per_rate = cfg.per_rate
        self.dropout = cfg.dropout
        if not cfg.per_rate and len(set(in_dims.values())) > 1:
            raise ConfigError("model.projector.per_rate: stacked compression needs one projector per rate")
        keys = {rate: (f"r{rate}" if cfg.per_rate else "shared") for rate in in_dims}
        self.keys = keys
        self.layers = nn.ModuleDict(
            {key: Projector(in_dims[rate], cfg.hidden_size, out_dim, cfg.layer_norm) for rate, key in keys.items()}
        )
        if cfg.layer_norm and cfg.match_embedding_scale and embedding_rms is not None:
            for projector in self.layers.values():
                nn.init.constant_(projector[-1].weight, embedding_rms)
        # CTC's blank class, one per modality (`projector.ctc_weight`); absent otherwise, so checkpoints match
        self.ctc_blank = nn.Parameter(torch.randn(out_dim) * 0.02) if cfg.ctc_weight > 0 else None

    def forward(self, rate: int, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T', D_in] pooled features at `rate` -> [B, T', D_llm]."""
        x = F.dropout(x, self.dropout, self.training)  # a functional dropout: no module, the same state keys
        return self.layers[self.keys[rate]](x)
