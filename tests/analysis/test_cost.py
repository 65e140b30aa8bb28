"""`mome cost`: the analytic FLOP count against torch's FLOP counter on a tiny model's forward, and the
command on a real preset."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mome.analysis.cost import DecoderShape, adapter_flops_per_token, cost_table
from mome.cli import main
from mome.config import load_config
from mome.models.avsr import AVSRModel, Features
from tiny import tiny_model_config


def _counted_and_analytic(kind: str, attention: str) -> tuple[float, float]:
    cfg = tiny_model_config(kind)
    cfg.prompt = "T:"
    model = AVSRModel.from_config(cfg, audio_dim=12, video_dim=10).eval()
    model.llm.config._attn_implementation = attention
    features = Features(torch.randn(1, 40, 12), torch.tensor([40]), torch.randn(1, 20, 10), torch.tensor([20]))
    seq = model.build_sequences(features, [model.combinations[0]], ["bin blue"], padding_side="right")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.last_hidden(seq)
    tokens = seq.embeds.shape[1]
    shape = DecoderShape.of(model.llm.config)
    analytic = shape.prefill_flops(tokens) + adapter_flops_per_token(model, shape, dense=True) * tokens
    return counter.get_total_flops(), analytic


@pytest.mark.parametrize("kind", ["none", "mome"])
def test_analytic_flops_match_torch_flop_counter(kind: str) -> None:
    # Eager attention: torch's counter does not count the CPU kernel of sdpa (it reports no attention FLOPs).
    counted, analytic = _counted_and_analytic(kind, "eager")
    # The only matmul the formula leaves out is the rotary table (head_dim / 2 x tokens per forward).
    assert counted == pytest.approx(analytic, rel=0.01), (counted, analytic)


def test_sparse_count_is_the_chosen_experts_only() -> None:
    cfg = tiny_model_config("mome")  # 5 routed experts, top-2, 1 shared, bottleneck 4
    model = AVSRModel.from_config(cfg, audio_dim=12, video_dim=10)
    shape = DecoderShape.of(model.llm.config)
    d, layers = shape.hidden, shape.layers
    assert adapter_flops_per_token(model, shape) == layers * (2 * d * 5 + 4 * d * 4 * (2 + 1))
    assert adapter_flops_per_token(model, shape, dense=True) == layers * (2 * d * 5 + 4 * d * 4 * 6 + 2 * 6 * d)


def test_cost_falls_with_the_rates_on_a_paper_preset(capsys) -> None:
    table = cost_table(load_config("paper-mome-23-4-mhsa"))
    rows = {r["rates"]: r for r in table["rows"]}
    assert rows["a16_v5"]["tokens_per_second"] == 50 / 16 + 25 / 5
    assert rows["a4_v2"]["llm_gflops_per_second"] > rows["a16_v5"]["llm_gflops_per_second"] > 0
    assert main(["cost", "paper-mome-23-4-mhsa", "--seconds", "3"]) == 0
    out = capsys.readouterr().out
    assert "a1_v1 (reference, not trained)" in out and "prefill of a 3 s clip" in out
    assert main(["cost", "paper-mome-23-4-mhsa", "--seconds", "0"]) == 2
