"""`mome params` must reproduce the paper's active-parameter column (MoME, arXiv 2510.04136, Tables 1 and 3) on Llama 3.2-3B."""

from __future__ import annotations

import json
import math

import pytest

from mome.analysis.params import parameter_report
from mome.cli import main
from mome.config import load_config
from mome.models.avsr import AVSRModel
from tiny import tiny_model_config


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
        (
            "paper-mome-23-4-mhsa",
            [
                "model.adapter.mome.num_routed_experts=4",
                "model.adapter.mome.top_k=2",
                "model.adapter.mome.bottleneck=24",
            ],
            12.99,
        ),
        (
            "paper-mome-23-4-mhsa",
            [
                "model.adapter.mome.num_routed_experts=4",
                "model.adapter.mome.top_k=2",
                "model.adapter.mome.bottleneck=24",
                "model.adapter.mome.num_shared_experts=0",
            ],
            8.77,
        ),
        (
            "paper-mome-23-4-mhsa",
            [
                "model.adapter.mome.num_routed_experts=0",
                "model.adapter.mome.num_shared_experts=1",
                "model.adapter.mome.bottleneck=48",
            ],
            8.34,
        ),  # one expert, no router
        ("paper-mome-23-4-mhsa", ["model.adapter.mome.num_shared_experts=2"], 14.88),
    ],
)
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


@pytest.mark.parametrize("shared_router", [True, False])
@pytest.mark.parametrize("num_shared", [0, 1, 2])
def test_mome_active_parameters_count_what_one_token_uses(shared_router: bool, num_shared: int) -> None:
    """Counted from the built tensors: every shared expert, top_k / N_r of the routed ones, one router."""
    cfg = tiny_model_config(
        "mome", num_routed_experts=5, top_k=2, num_shared_experts=num_shared, shared_router=shared_router
    )
    model = AVSRModel.from_config(cfg, audio_dim=12, video_dim=10)
    active = 0
    for layer in model.adapters:

        def expert(e: int) -> int:  # one expert's Linear(d, b) and Linear(b, d), weights and biases
            return layer.down[e].numel() + layer.down_bias[e].numel() + layer.up[e].numel() + layer.up_bias[e].numel()

        shared = sum(expert(e) for e in range(num_shared))
        routed = sum(expert(e) for e in range(num_shared, num_shared + 5))
        router = layer.router[0].numel()  # a token's granularity uses one of the routers
        assert layer.router.shape[0] == (1 if shared_router else len(model.combinations))
        assert shared + routed + layer.router.numel() == sum(p.numel() for p in layer.parameters())
        active += shared + routed * 2 // 5 + router
    assert model.active_adapter_parameters() == active


@pytest.mark.parametrize(
    ("kind", "shared", "specific"), [("lora", 1, 0), ("mtsk-ms", 1, 0), ("mtsk-ss", 0, 1), ("mtsk-mss", 1, 1)]
)
def test_lora_active_parameters_count_what_one_token_uses(kind: str, shared: int, specific: int) -> None:
    """Counted from the built banks: the shared LoRA and one granularity's LoRA of each projection."""
    model = AVSRModel.from_config(tiny_model_config(kind), audio_dim=12, video_dim=10)
    num_banks = shared + specific * len(model.combinations)
    active = 0
    for pair in model.adapters:
        for bank in pair.values():
            assert bank.down.shape[0] == bank.up.shape[0] == num_banks
            one_lora = bank.down[0].numel() + bank.up[0].numel()
            assert one_lora * num_banks == sum(p.numel() for p in bank.parameters())
            active += one_lora * (shared + specific)
    assert model.active_adapter_parameters() == active


@pytest.mark.integration
def test_params_of_a_preset_that_names_local_checkpoints(embedded) -> None:
    """A Whisper directory is read for its shapes only: counting the demo needs no weights in memory."""
    whisper, llm = embedded("whisper-tiny.en"), embedded("smollm2-135m")
    cfg = load_config("demo", [f"model.encoders.audio.path={whisper}", f"model.llm.path={llm}"])
    report = parameter_report(cfg)
    from mome.models.whisper_encoder import WhisperAudioEncoder

    loaded = WhisperAudioEncoder.from_config(cfg.model.encoders.audio)  # the real weights, for comparison
    assert report.audio_encoder == sum(p.numel() for p in loaded.parameters())
    assert report.active_adapters > 0 and report.trainable == report.projectors + report.adapters
