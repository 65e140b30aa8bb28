"""The Matryoshka objective: CE per granularity, weighted by c_ij, plus MoME's router losses.

    L = (1 / C) * sum_c c_c * CE_c  +  lambda_B * mean_{layers, c} L_B  +  lambda_z * mean_{layers, c} L_z
        (+ lambda_CTC * mean_c mean_{rates of c} CTC_rate, `projector.ctc_weight`: not the paper's, off there)

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
    hidden: torch.Tensor,
    labels: torch.Tensor,
    lm_head: nn.Module,
    combination: torch.Tensor,
    num: int,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token CE and token count of each granularity; the LM head runs only where a label exists.

    Sums and counts rather than means, so that data-parallel training can normalise by the global count.

    Args:
        hidden: [R, L, D] last hidden states.
        labels: [R, L] aligned with the inputs (position t predicts labels[t + 1]).
        combination: [R] granularity index of each row, or [R, L] of each position (packed rows, where a
            row holds several original rows; a label never crosses from one into the next).
        num: number of granularities C.
        label_smoothing: the share of each target's probability spread over the vocabulary (0: plain CE).

    Returns:
        sums [C] (differentiable) and counts [C] (labelled tokens) per granularity.
    """
    targets = labels[:, 1:]  # [R, L-1]
    where = targets != IGNORE_INDEX
    logits = lm_head(hidden[:, :-1][where])  # [N, V], N = labelled positions only
    token_loss = F.cross_entropy(
        logits.float(), targets[where], reduction="none", label_smoothing=label_smoothing
    )  # [N]
    if combination.dim() == 1:
        combination = combination.unsqueeze(1).expand_as(labels)  # [R, L]
    token_combination = combination[:, 1:][where]  # [N], the granularity of each target
    sums = torch.zeros(num, device=hidden.device).index_add(0, token_combination, token_loss)
    counts = torch.bincount(token_combination, minlength=num)
    return sums, counts


CTC_TEMPERATURE = 0.1
"""Cosines divided by this are CTC's logits: a range of +-10, enough for a confident softmax over tokens."""


def projector_ctc(
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    targets: list[list[int]],
    embeddings: torch.Tensor,
    blank: torch.Tensor,
) -> torch.Tensor:
    """Mean CTC loss of one rate's projected tokens against the transcripts (EOS excluded).

    Each token is scored by its cosine with the LLM's input embedding of every token in the batch's transcripts
    and with a learned blank: this pulls the tokens that carry a word towards the embedding of that word, which
    the frozen LLM already reads. The batch's transcript tokens stand in for the vocabulary (a sampled softmax:
    scoring all of it would cost more than the LLM's step). A rate too coarse to hold a transcript (fewer
    tokens than CTC needs) adds nothing.

    Args:
        tokens: [B, T, D] projector outputs; lengths: [B] valid tokens per sample.
        targets: token ids of each sample's transcript; embeddings: [V, D] the LLM's input embeddings.
        blank: [D] the blank class's vector.
    """
    flat = torch.tensor([i for t in targets for i in t], dtype=torch.long, device=tokens.device)
    vocab = torch.unique(flat)  # [K] sorted
    classes = torch.cat([blank[None].to(embeddings.dtype), embeddings[vocab]])  # [K+1, D], class 0 = blank
    cosines = F.normalize(tokens.float(), dim=-1) @ F.normalize(classes.float(), dim=-1).T  # [B, T, K+1]
    log_probs = (cosines / CTC_TEMPERATURE).log_softmax(-1).transpose(0, 1)  # [T, B, K+1]
    target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    return F.ctc_loss(
        log_probs,
        torch.searchsorted(vocab, flat) + 1,
        lengths.long().cpu(),
        target_lengths,
        blank=0,
        reduction="mean",
        zero_infinity=True,
    )
