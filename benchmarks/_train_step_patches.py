"""Proposed optimisations, applied by `train_step.py --experimental` as monkeypatches (not library code).

MoME on real tokens only: in the batched training forward every row is padded (on the right) to the
longest row of any granularity, so ~30 % of the positions MoME computes are padding (SmolLM2, batch 4:
1068 real of 1520). Padding is masked out of attention and never scored, so its adapter output cannot
reach the loss; skipping it is exact for every real position. Only when the context carries a token mask
of the input's shape (the training forward); generation and plain HF calls are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mome.adapters import context
from mome.adapters.context import RouterRecord
from mome.adapters.mome import MoMEAdapter
from mome.adapters.routing import top_k_gates


def forward_real_tokens(self: MoMEAdapter, x: torch.Tensor) -> torch.Tensor:
    """x: [B, L, d] sublayer input -> [B, L, d] MoME output; zero on padding when a token mask is set."""
    ctx = context.current()
    batch, length, dim = x.shape
    flat = x.reshape(-1, dim).to(self.down.dtype)  # [N, d], N = B*L
    keep = None
    if ctx.token_mask is not None and ctx.token_mask.numel() == flat.shape[0]:
        keep = ctx.token_mask.reshape(-1).nonzero().squeeze(1)  # [N'] real tokens
        flat = flat.index_select(0, keep)  # [N', d]
    gates = flat.new_ones(flat.shape[0], self.num_shared + self.num_routed)  # [N', n]
    if self.num_routed:
        combo = ctx.combination_per_row(batch, x.device).repeat_interleave(length)  # [N]
        combo = combo[keep] if keep is not None else combo  # [N']
        logits = self.router_logits(flat, combo)
        _, top_gates, top_index = top_k_gates(logits, self.cfg.top_k, self.cfg.renormalize_gates)
        routed = torch.zeros_like(logits).scatter(1, top_index, top_gates)  # [N', E]
        gates = torch.cat([gates[:, : self.num_shared], routed.to(gates.dtype)], dim=1)
        if ctx.collect:
            if keep is not None:  # already real tokens only
                segment = ctx.segments.reshape(-1)[keep] if ctx.segments is not None else None
                ctx.records.append(RouterRecord(self.layer_index, logits, top_index, combo, segment))
            else:
                self._record(ctx, logits, top_index, combo, batch, length)
    n, _, b = self.down.shape
    hidden = flat @ self.down.permute(1, 0, 2).reshape(dim, n * b)  # [N', n*b]
    hidden = F.gelu(hidden.view(-1, n, b) + self.down_bias)  # [N', n, b]
    hidden = hidden * gates.unsqueeze(-1)
    out = hidden.reshape(-1, n * b) @ self.up.reshape(n * b, dim) + gates @ self.up_bias  # [N', d]
    if keep is not None:
        out = out.new_zeros(batch * length, dim).index_copy(0, keep, out)  # [N, d], zero on padding
    return out.view(batch, length, dim)


def apply() -> None:
    MoMEAdapter.forward = forward_real_tokens
