"""`mome params` must reproduce the paper's active-parameter column (MoME, arXiv 2510.04136, Tables 1 and 3) on Llama 3.2-3B."""

from __future__ import annotations

import json
import math

import pytest

from mome.analysis.params import parameter_report
from mome.cli import main
from mome.config import load_config


@pytest.mark.parametrize(
    ("preset", "overrides", "active_millions"),
    [
        ("paper-mome-23-4-mhsa", [], 12.7),  # Table 1: MoME-23/4, 1 shared, b=12
        ("paper-mome-23-4-layer", [], 12.7),
        ("paper-llama-avsr", [], 27.5),  # LoRA, rank factor 32
        ("paper-mtsk-ms", [], 27.5),
        ("paper-mtsk-ss", [], 27.5),
        ("paper-mtsk-mss", [], 55.0),
        # Table 3 ablation rows
        ("paper-mome-23-4-mhsa", ["model.adapter.mome.num_routed_experts=4", "model.adapter.mome.top_k=2",
                                  "model.adapter.mome.bottleneck=24"], 12.99),
        ("paper-mome-23-4-mhsa", ["model.adapter.mome.num_routed_experts=4", "model.adapter.mome.top_k=2",
                                  "model.adapter.mome.bottleneck=24", "model.adapter.mome.num_shared_experts=0"], 8.77),
        ("paper-mome-23-4-mhsa", ["model.adapter.mome.num_routed_experts=0", "model.adapter.mome.num_shared_experts=1",
                                  "model.adapter.mome.bottleneck=48"], 8.34),  # one expert, no router
        ("paper-mome-23-4-mhsa", ["model.adapter.mome.num_shared_experts=2"], 14.88),
    ],
)  # fmt: skip
def test_active_parameters_match_the_paper(preset: str, overrides: list[str], active_millions: float) -> None:
    report = parameter_report(load_config(preset, overrides))
    # The paper's tables truncate (55.05M is printed 55.0, 8.345M is 8.34): compare at the table's precision.
    digits = len(str(active_millions).split(".")[1])
    assert math.floor(report.active_adapters / 1e6 * 10**digits) == round(active_millions * 10**digits)


def test_totals_are_consistent() -> None:
    report = parameter_report(load_config("paper-mome-23-4-mhsa"))
    assert 3.2e9 < report.llm < 3.3e9  # Llama 3.2-3B (+5 added token rows)
    assert report.trainable == report.projectors + report.adapters
    # All 24 experts and the router of 28 layers are trainable; only 5 experts run per token.
    assert report.adapters == 28 * (24 * (2 * 3072 * 12 + 12 + 3072) + 23 * 3072)
    ss = parameter_report(load_config("paper-mtsk-ss"))
    assert ss.adapters == 4 * ss.active_adapters  # one LoRA per granularity


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", "paper-mtsk-mss", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["active adapter params per token"] == 2 * 27_525_120
