from __future__ import annotations

import pytest

from mome.cli import main
from mome.config import (
    ConfigError,
    combinations,
    combination_key,
    config_from_dict,
    list_presets,
    load_config,
    parse_combination,
)


def test_every_preset_loads_and_validates() -> None:
    presets = list_presets()
    assert {"paper-mome-23-4-mhsa", "paper-mome-23-4-ffn", "paper-mome-23-4-layer", "paper-llama-avsr",
            "paper-mtsk-ms", "paper-mtsk-ss", "paper-mtsk-mss", "tiny"} <= set(presets)  # fmt: skip
    for name in presets:
        cfg = load_config(name)
        assert cfg.name == name


def test_extends_and_overrides() -> None:
    cfg = load_config("paper-mome-23-4-layer", ["model.adapter.mome.top_k=2", "model.compression.audio_rates=[4,8]"])
    assert cfg.model.adapter.mome.placement == "layer"
    assert cfg.model.adapter.mome.top_k == 2
    assert cfg.model.compression.audio_rates == [4, 8]
    assert cfg.model.llm.arch["hidden_size"] == 3072  # inherited from the MHSA preset


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("model.adapter.kind=moe", "model.adapter.kind"),
        ("model.adapter.mome.top_k=30", "model.adapter.mome.top_k"),
        ("model.compression.audio_rates=[]", "model.compression.audio_rates"),
        ("model.llm.arch=null", "model.llm.path"),
        ("model.llm.path=/does/not/exist", "model.llm.path"),
        ("model.adapter.mome.placment=ffn", "model.adapter.mome.placment"),
        ("model.adapter.mome.top_k=two", "model.adapter.mome.top_k"),
        ("model.compression.task=lipreading", "model.compression.task"),
        ("model.combination_weights={a3_v2: 1.0}", "model.combination_weights.a3_v2"),
    ],
)
def test_bad_config_names_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config("tiny", [override])


def test_hidden_size_mismatch_fails_at_load() -> None:
    from mome.models.llm import load_llm

    cfg = load_config("tiny", ["model.llm.hidden_size=128"])  # the arch says 64
    with pytest.raises(ConfigError, match=r"model\.llm\.hidden_size"):
        load_llm(cfg.model.llm, device="meta")


def test_combinations_and_parsing() -> None:
    cfg = load_config("tiny")
    comp = cfg.model.compression
    assert combinations(comp) == [(4, 2), (4, 5), (16, 2), (16, 5)]
    assert [combination_key(c) for c in combinations(comp)] == ["a4_v2", "a4_v5", "a16_v2", "a16_v5"]
    assert parse_combination("16,5", comp) == (16, 5)
    with pytest.raises(ConfigError, match="not a trained combination"):
        parse_combination("8,5", comp)
    comp.task = "asr"
    assert combinations(comp) == [(4, None), (16, None)]
    assert parse_combination("16", comp) == (16, None)


def test_unknown_top_level_key() -> None:
    with pytest.raises(ConfigError, match="modle"):
        config_from_dict({"modle": {}})


def test_cli_reports_user_errors_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", "tiny", "model.adapter.kind=moe"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mome: error: model.adapter.kind")
    assert main(["params", "no-such-preset"]) == 2
    assert "no such file or preset" in capsys.readouterr().err


def test_training_refuses_a_random_llm_unless_allowed() -> None:
    from mome.errors import UserError
    from mome.training.recipe import train

    with pytest.raises(UserError, match=r"model\.llm\.path"):
        train(load_config("paper-mome-23-4-mhsa"))  # architecture only: no weights to train on
    assert load_config("tiny").model.llm.allow_random_weights
