"""Pure functions of MoE routing: gates, load-balancing loss, z-loss, and their mean over a forward's records.

Shapes: N tokens, E routed experts, K experts chosen per token, C granularities.
Router softmax runs in fp32 whatever the model dtype (numerically fragile, as in Mixtral and SMoP).
"""

from __future__ import annotations

import torch

from mome.adapters.context import RouterRecord


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


def router_losses(records: list[RouterRecord], num_experts: int, num_combinations: int) -> dict[str, torch.Tensor]:
    """Load-balance and z-loss per layer and granularity over real tokens, averaged (the paper does not say
    how it aggregates them over layers and granularities)."""
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
