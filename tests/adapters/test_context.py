"""AdapterContext's combination forms (int, per row, per token) and the adapters that read them per token."""

from __future__ import annotations

import pytest
import torch

from mome.adapters.context import AdapterContext, adapter_context
from mome.adapters.lora import LoRABank
from mome.adapters.mome import MoMEAdapter
from mome.config import MoMEConfig


def test_combination_per_token_from_every_form() -> None:
    device = torch.device("cpu")
    assert AdapterContext(2).combination_per_token(2, 3, device).tolist() == [[2, 2, 2], [2, 2, 2]]
    per_row = AdapterContext(torch.tensor([0, 1]))
    assert per_row.combination_per_token(2, 2, device).tolist() == [[0, 0], [1, 1]]
    assert per_row.combination_per_token(4, 1, device).tolist() == [[0], [0], [1], [1]]  # 2 beams per row
    per_token = torch.tensor([[0, 0, 1], [2, 1, 1]])
    assert torch.equal(AdapterContext(per_token).combination_per_token(2, 3, device), per_token)
    with pytest.raises(ValueError, match="per-token combination"):
        AdapterContext(per_token).combination_per_token(2, 4, device)
    with pytest.raises(ValueError, match="no per-row form"):
        AdapterContext(per_token).combination_per_row(2, device)


def _per_granularity_reference(adapter: torch.nn.Module, x: torch.Tensor, combination: torch.Tensor) -> torch.Tensor:
    """Each token's output from a run of the whole input at that token's granularity."""
    out = torch.zeros(*x.shape[:-1], adapter(x).shape[-1])
    for c in combination.unique().tolist():
        with adapter_context(AdapterContext(c)):
            whole = adapter(x)
        out[combination == c] = whole[combination == c]
    return out


def test_adapters_apply_each_tokens_own_granularity() -> None:
    """A packed row holds rows of several granularities: per-granularity LoRA banks and routers go per token."""
    torch.manual_seed(0)
    x = torch.randn(2, 7, 8)
    combination = torch.tensor([[0, 0, 0, 2, 2, 1, 1], [1, 1, 1, 1, 0, 0, 0]])
    lora = LoRABank(8, 6, rank=2, scaling=0.5, shared=True, per_combination=3)
    mome = MoMEAdapter(8, MoMEConfig(num_routed_experts=4, top_k=2, bottleneck=3, shared_router=False), 3, 0)
    with torch.no_grad():
        lora.down.normal_()
        mome.up.normal_()
    for adapter in (lora, mome):
        want = _per_granularity_reference(adapter, x, combination)
        with adapter_context(AdapterContext(combination)):
            got = adapter(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
