"""Pure functions of MoE routing: gates, load-balancing loss, z-loss, and their mean over a forward's records.

Shapes: N tokens, E routed experts, K experts chosen per token, C granularities.
Router softmax runs in fp32 whatever the model dtype (numerically fragile, as in Mixtral and SMoP).
"""

from __future__ import annotations

import torch

from mome.adapters.context import RouterRecord
from mome.config import LoadBalance


def top_k_gates(logits: torch.Tensor, k: int, renormalize: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax over all experts, keep the top-k.

    Args:
        logits: [..., E] router logits.
        k: experts kept per token.
        renormalize: divide the kept probabilities by their sum (Mixtral / the authors' SMoP code) or keep the
            raw softmax values (DeepSeekMoE). The MoME paper does not say which (docs/design.md).

    Returns:
        probs [..., E] fp32 softmax, gates [..., K] fp32, index [..., K] expert ids.
    """
    probs = torch.softmax(logits.float(), dim=-1)
    gates, index = probs.topk(k, dim=-1)
    if renormalize:
        gates = gates / gates.sum(dim=-1, keepdim=True)
    return probs, gates, index


def load_balance_loss(probs: torch.Tensor, index: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Switch/Mixtral load-balancing loss as in the authors' SMoP code: E * sum_e f_e * P_e.

    f_e is the fraction of tokens whose top-k includes expert e (so sum_e f_e = K) and P_e the mean router
    probability. Perfectly uniform routing gives the minimum, K; a router that always picks the same K experts
    with all its probability on them gives E. Padding must already be removed from `probs` / `index`.

    Args:
        probs: [N, E] fp32 router probabilities of valid tokens.
        index: [N, K] chosen experts.
    """
    if probs.shape[0] == 0:
        return probs.new_zeros(())
    counts = torch.zeros(num_experts, device=probs.device, dtype=probs.dtype)
    counts.scatter_add_(0, index.reshape(-1), torch.ones(index.numel(), device=probs.device, dtype=probs.dtype))
    fraction = counts / probs.shape[0]  # [E], sums to K
    mean_prob = probs.mean(dim=0)  # [E], sums to 1
    return num_experts * (fraction * mean_prob).sum()


def z_loss(logits: torch.Tensor) -> torch.Tensor:
    """Router z-loss (ST-MoE): mean squared log-partition, keeps logits small. logits: [N, E]."""
    if logits.shape[0] == 0:
        return logits.new_zeros(())
    return torch.logsumexp(logits.float(), dim=-1).pow(2).mean()


def router_losses(
    records: list[RouterRecord], num_experts: int, num_combinations: int, form: LoadBalance = "per-layer"
) -> dict[str, torch.Tensor]:
    """Load-balance and z-loss over a forward's real tokens. The z-loss, and the load balance in the `per-layer`
    form, are computed per layer and granularity and averaged (the paper does not say how it aggregates them);
    the `pooled` load balance is one loss over every layer's and granularity's tokens together, the form of the
    authors' code (`load_balance_pooled`)."""
    balance: list[torch.Tensor] = []
    zloss: list[torch.Tensor] = []
    for rec in records:
        for c in range(num_combinations):
            sel = rec.combination == c
            if not bool(sel.any()):
                continue
            logits = rec.logits[sel]
            if form == "per-layer":
                balance.append(load_balance_loss(torch.softmax(logits, dim=-1), rec.topk_index[sel], num_experts))
            zloss.append(z_loss(logits))
    if not zloss:
        return {}
    if form == "pooled":
        balance = [load_balance_pooled(records, num_experts)]
    return {"load_balance": torch.stack(balance).mean(), "z_loss": torch.stack(zloss).mean()}


def load_balance_pooled(records: list[RouterRecord], num_experts: int) -> torch.Tensor:
    """`load_balance_loss` of all layers' router logits concatenated into one token set, as the authors' code
    (Hugging Face Mixtral's `load_balancing_loss_func`) computes it, but over real tokens only: the records hold
    no padding, which the reference counts."""
    logits = torch.cat([rec.logits for rec in records])  # [sum of N over layers, E]
    index = torch.cat([rec.topk_index for rec in records])
    return load_balance_loss(torch.softmax(logits, dim=-1), index, num_experts)
