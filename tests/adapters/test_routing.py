from __future__ import annotations

import torch

from mome.adapters.routing import load_balance_loss, top_k_gates, z_loss


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
