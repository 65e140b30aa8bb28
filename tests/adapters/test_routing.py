from __future__ import annotations

import math

import pytest
import torch

from mome.adapters.context import RouterRecord
from mome.adapters.routing import load_balance_loss, router_losses, top_k_gates, z_loss


def test_gates_renormalised_or_not() -> None:
    logits = torch.randn(10, 6)
    probs, gates, index = top_k_gates(logits, 2, renormalize=True)
    torch.testing.assert_close(gates.sum(-1), torch.ones(10))
    torch.testing.assert_close(probs.sum(-1), torch.ones(10))
    _, raw, raw_index = top_k_gates(logits, 2, renormalize=False)
    assert torch.equal(index, raw_index)
    torch.testing.assert_close(raw, probs.gather(1, index))
    assert (raw.sum(-1) < 1).all()


def test_load_balance_minimum_is_k_for_uniform_routing() -> None:
    num_experts, k = 8, 2
    # Every expert chosen equally often, uniform probabilities.
    index = torch.stack([torch.arange(8), (torch.arange(8) + 4) % 8], dim=1)  # [8 tokens, 2]
    probs = torch.full((8, num_experts), 1 / num_experts)
    torch.testing.assert_close(load_balance_loss(probs, index, num_experts), torch.tensor(float(k)))
    # A collapsed router (always experts 0 and 1, all probability on them) scores E.
    collapsed = torch.zeros(8, num_experts)
    collapsed[:, :2] = 0.5
    index = torch.tensor([[0, 1]] * 8)
    torch.testing.assert_close(load_balance_loss(collapsed, index, num_experts), torch.tensor(float(num_experts)))


def test_z_loss() -> None:
    assert z_loss(torch.zeros(4, 3)).item() == torch.log(torch.tensor(3.0)).pow(2).item()


def _records(logits: list[torch.Tensor], k: int) -> list[RouterRecord]:
    """One record per layer; its tokens alternate between two granularities."""
    out = []
    for layer, x in enumerate(logits):
        combo = torch.arange(len(x)) % 2
        out.append(RouterRecord(layer, x, x.topk(k, dim=-1).indices, combo, None))
    return out


def _pooled_by_hand(logits: list[torch.Tensor], k: int, num_experts: int) -> float:
    """E * sum_e f_e P_e over every layer's tokens at once, with plain Python loops."""
    tokens = [row for x in logits for row in x.tolist()]
    chosen = [0] * num_experts
    mass = [0.0] * num_experts
    for row in tokens:
        z = [math.exp(v) for v in row]
        for e in sorted(range(num_experts), key=lambda e: -row[e])[:k]:
            chosen[e] += 1
        for e in range(num_experts):
            mass[e] += z[e] / sum(z)
    n = len(tokens)
    return num_experts * sum(chosen[e] / n * mass[e] / n for e in range(num_experts))


def test_pooled_load_balance_is_one_loss_over_all_layers_and_differs_from_per_layer() -> None:
    num_experts, k = 5, 2
    generator = torch.Generator().manual_seed(0)
    # layer 0 leans to expert 0, layer 1 to expert 1: balanced pooled, unbalanced per layer
    logits = [torch.randn(6, num_experts, generator=generator) for _ in range(2)]
    logits[0][:, 0] += 2.0
    logits[1][:5, 1] += 2.0
    leaves = [x.clone().requires_grad_() for x in logits]
    pooled = router_losses(_records(leaves, k), num_experts, 2, "pooled")["load_balance"]
    assert pooled.item() == pytest.approx(_pooled_by_hand(logits, k, num_experts), rel=1e-6)
    per_layer = router_losses(_records(leaves, k), num_experts, 2, "per-layer")["load_balance"]
    assert per_layer.item() > pooled.item() + 0.1  # each layer (and granularity) alone is less balanced
    grads = [torch.cat([g.flatten() for g in torch.autograd.grad(loss, leaves)]) for loss in (pooled, per_layer)]
    assert torch.nn.functional.cosine_similarity(*grads, dim=0) < 0.9  # they push the routers differently
    # the z-loss does not depend on the form
    z = [router_losses(_records(logits, k), num_experts, 2, form)["z_loss"] for form in ("pooled", "per-layer")]
    torch.testing.assert_close(*z)
