"""The Matryoshka objective: CE per granularity, weighted by c_ij, plus MoME's router losses.

    L = (1 / C) * sum_c c_c * CE_c  +  lambda_B * mean_{layers, c} L_B  +  lambda_z * mean_{layers, c} L_z

CE_c is the mean over the transcript + EOS tokens of the rows of granularity c, exactly what a separate
forward of that granularity would give (the Matryoshka loss of arXiv 2510.04136). The router losses belong to the adapter: MoME's
handle computes them (`adapters/routing.py:router_losses`) and `AVSRModel` adds each with its weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mome.models.sequence import IGNORE_INDEX


def per_combination_ce(
    hidden: torch.Tensor, labels: torch.Tensor, lm_head: nn.Module, combination: torch.Tensor, num: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token CE and token count of each granularity; the LM head runs only where a label exists.

    Sums and counts rather than means, so that data-parallel training can normalise by the global count.

    Args:
        hidden: [R, L, D] last hidden states.
        labels: [R, L] aligned with the inputs (position t predicts labels[t + 1]).
        combination: [R] granularity index of each row, or [R, L] of each position (packed rows, where a
            row holds several original rows; a label never crosses from one into the next).
        num: number of granularities C.

    Returns:
        sums [C] (differentiable) and counts [C] (labelled tokens) per granularity.
    """
    targets = labels[:, 1:]  # [R, L-1]
    where = targets != IGNORE_INDEX
    logits = lm_head(hidden[:, :-1][where])  # [N, V], N = labelled positions only
    token_loss = F.cross_entropy(logits.float(), targets[where], reduction="none")  # [N]
    if combination.dim() == 1:
        combination = combination.unsqueeze(1).expand_as(labels)  # [R, L]
    token_combination = combination[:, 1:][where]  # [N], the granularity of each target
    sums = torch.zeros(num, device=hidden.device).index_add(0, token_combination, token_loss)
    counts = torch.bincount(token_combination, minlength=num)
    return sums, counts
