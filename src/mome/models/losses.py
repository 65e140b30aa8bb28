"""The Matryoshka objective: CE per granularity, weighted by c_ij, plus MoME's router losses.

    L = (1 / C) * sum_c c_c * CE_c  +  lambda_B * mean_{layers, c} L_B  +  lambda_z * mean_{layers, c} L_z

CE_c is the mean over the transcript + EOS tokens of the rows of granularity c, exactly what a separate
forward of that granularity would give (the Matryoshka loss of arXiv 2510.04136). The router losses are computed per layer and per
granularity over real tokens only (no padding), then averaged (the paper does not give the aggregation;
docs/design.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mome.adapters.context import RouterRecord
from mome.adapters.routing import load_balance_loss, z_loss
from mome.models.sequence import IGNORE_INDEX


def per_combination_ce(
    hidden: torch.Tensor, labels: torch.Tensor, lm_head: nn.Module, row_combination: torch.Tensor, num: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token CE and token count of each granularity; the LM head runs only where a label exists.

    Sums and counts rather than means, so that data-parallel training can normalise by the global count.

    Args:
        hidden: [R, L, D] last hidden states.
        labels: [R, L] aligned with the inputs (position t predicts labels[t + 1]).
        row_combination: [R] granularity index of each row.
        num: number of granularities C.

    Returns:
        sums [C] (differentiable) and counts [C] (labelled tokens) per granularity.
    """
    targets = labels[:, 1:]  # [R, L-1]
    where = targets != IGNORE_INDEX
    logits = lm_head(hidden[:, :-1][where])  # [N, V], N = labelled positions only
    token_loss = F.cross_entropy(logits.float(), targets[where], reduction="none")  # [N]
    token_combination = row_combination.unsqueeze(1).expand_as(targets)[where]  # [N]
    sums = torch.zeros(num, device=hidden.device).index_add(0, token_combination, token_loss)
    counts = torch.bincount(token_combination, minlength=num)
    return sums, counts


def router_losses(records: list[RouterRecord], num_experts: int, num_combinations: int) -> dict[str, torch.Tensor]:
    """Load-balance and z-loss, per layer and granularity over real tokens, averaged."""
    balance: list[torch.Tensor] = []
    zloss: list[torch.Tensor] = []
    for rec in records:
        for c in range(num_combinations):
            sel = rec.combination == c
            if not bool(sel.any()):
                continue
            logits = rec.logits[sel]
            balance.append(load_balance_loss(torch.softmax(logits, dim=-1), rec.topk_index[sel], num_experts))
            zloss.append(z_loss(logits))
    if not balance:
        return {}
    return {"load_balance": torch.stack(balance).mean(), "z_loss": torch.stack(zloss).mean()}
