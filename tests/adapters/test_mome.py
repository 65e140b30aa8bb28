from __future__ import annotations

import torch
import torch.nn.functional as F

from mome.adapters.context import AdapterContext, adapter_context
from mome.adapters.mome import MoMEAdapter
from mome.config import MoMEConfig


def _adapter(**kw) -> MoMEAdapter:
    cfg = MoMEConfig(num_routed_experts=6, top_k=2, num_shared_experts=1, bottleneck=3, **kw)
    adapter = MoMEAdapter(8, cfg, num_combinations=3, layer_index=0)
    with torch.no_grad():  # non-zero up projections so that outputs are informative
        adapter.up.normal_()
        adapter.up_bias.normal_()
    return adapter


def _loop_reference(adapter: MoMEAdapter, x: torch.Tensor, combination: torch.Tensor) -> torch.Tensor:
    """Token-by-token sparse dispatch, written the obvious way."""
    cfg, out = adapter.cfg, torch.zeros_like(x)
    s = adapter.num_shared

    def expert(e: int, h: torch.Tensor) -> torch.Tensor:
        return F.gelu(h @ adapter.down[e] + adapter.down_bias[e]) @ adapter.up[e] + adapter.up_bias[e]

    for b in range(x.shape[0]):
        router = adapter.router[0 if cfg.shared_router else int(combination[b])]
        for t in range(x.shape[1]):
            h = x[b, t]
            probs = torch.softmax(h @ router.t(), -1)
            gates, index = probs.topk(cfg.top_k)
            if cfg.renormalize_gates:
                gates = gates / gates.sum()
            out[b, t] = sum(expert(e, h) for e in range(s)) + sum(
                g * expert(s + int(i), h) for g, i in zip(gates, index)
            )
    return out


def test_dense_dispatch_equals_a_per_token_loop() -> None:
    x = torch.randn(3, 5, 8)
    combination = torch.tensor([0, 2, 1])
    for kw in ({}, {"renormalize_gates": False}, {"shared_router": False}):
        adapter = _adapter(**kw)
        with adapter_context(AdapterContext(combination)):
            out = adapter(x)
        torch.testing.assert_close(out, _loop_reference(adapter, x, combination), rtol=1e-5, atol=1e-5)


def test_per_granularity_routers_route_differently() -> None:
    adapter = _adapter(shared_router=False)
    x = torch.randn(1, 50, 8)
    with adapter_context(AdapterContext(0)):
        a = adapter(x)
    with adapter_context(AdapterContext(1)):
        b = adapter(x)
    assert not torch.allclose(a, b)


def test_starts_at_zero_and_every_weight_learns() -> None:
    adapter = MoMEAdapter(8, MoMEConfig(num_routed_experts=4, top_k=4, num_shared_experts=1, bottleneck=3), 1, 0)
    x = torch.randn(2, 16, 8)
    assert adapter(x).abs().max() == 0  # the frozen LLM is untouched at step 0
    opt = torch.optim.SGD(adapter.parameters(), lr=0.1)
    target = torch.randn(2, 16, 8)
    grads_seen = {n: False for n, _ in adapter.named_parameters()}
    for _ in range(2):  # up projections learn at step 1, down projections and router from step 2 on
        opt.zero_grad()
        with adapter_context(AdapterContext(0)):
            (adapter(x) - target).pow(2).mean().backward()
        for n, p in adapter.named_parameters():
            grads_seen[n] |= bool(p.grad is not None and p.grad.abs().sum() > 0)
        opt.step()
    assert all(grads_seen.values()), grads_seen


def test_records_skip_padding() -> None:
    adapter = _adapter()
    x = torch.randn(2, 6, 8)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    ctx = AdapterContext(torch.tensor([0, 1]), token_mask=mask, collect=True)
    with adapter_context(ctx):
        adapter(x)
    (rec,) = ctx.records
    assert rec.logits.shape == (10, 6) and rec.topk_index.shape == (10, 2)
    assert rec.combination.tolist() == [0] * 4 + [1] * 6


def test_decoding_never_uses_down_projections_older_than_the_weights() -> None:
    """Weights written between two no-grad calls by a fused AdamW step (which does not move the version counter)
    or through `.data` must be what the next call computes with (the layout copy lives for one context)."""
    adapter = _adapter()
    x = torch.randn(2, 4, 8)
    combination = torch.tensor([0, 1])

    def decode() -> torch.Tensor:
        with torch.no_grad(), adapter_context(AdapterContext(combination)):
            return adapter(x)

    decode()  # lays out the down projections
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=0.5, fused=True)
    with adapter_context(AdapterContext(combination)):
        adapter(x).square().sum().backward()
    optimizer.step()
    torch.testing.assert_close(decode(), _loop_reference(adapter, x, combination).detach(), rtol=1e-5, atol=1e-5)
    adapter.down.data.copy_(torch.randn_like(adapter.down))
    torch.testing.assert_close(decode(), _loop_reference(adapter, x, combination).detach(), rtol=1e-5, atol=1e-5)
    with torch.no_grad(), adapter_context(AdapterContext(combination)) as ctx:
        adapter(x)
        adapter(x)
    assert len(ctx.layouts) == 1  # within one context the layout is made once
