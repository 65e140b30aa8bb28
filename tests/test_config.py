from __future__ import annotations

import pytest

from mome.cli import main
from mome.config import (
    ConfigError,
    combination_key,
    combinations,
    config_from_dict,
    list_presets,
    load_config,
    parse_combination,
)


def test_every_preset_loads_and_validates() -> None:
    presets = list_presets()
    assert {
        "paper-mome-23-4-mhsa",
        "paper-mome-23-4-ffn",
        "paper-mome-23-4-layer",
        "paper-llama-avsr",
        "paper-mtsk-ms",
        "paper-mtsk-ss",
        "paper-mtsk-mss",
        "tiny",
    } <= set(presets)
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
        ("model.llm.dtype=auto", "model.llm.dtype"),  # `auto` is an autocast choice, not a weight dtype
        ("train.plateau.rates=[a4_v3]", "train.plateau.rates"),  # not one of the model's combinations
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


# One bad value per numeric or enumerated field (issue: values that destroy or invert must fail at load time).
BAD_VALUES = {
    "model.encoders.audio.kind": "wav2vec",
    "model.encoders.video.kind": "resnet",
    "model.compression.task": "lipreading",
    "model.compression.mode": "max-pool",
    "model.compression.audio_rates": "[0, 4]",
    "model.compression.video_rates": "[5, 5]",
    "model.projector.hidden_size": "0",
    "model.llm.num_layers": "0",
    "model.llm.hidden_size": "-1",
    "model.llm.dtype": "int8",
    "model.adapter.kind": "moe",
    "model.adapter.mome.num_routed_experts": "-1",
    "model.adapter.mome.top_k": "0",
    "model.adapter.mome.num_shared_experts": "-1",
    "model.adapter.mome.bottleneck": "0",
    "model.adapter.mome.placement": "attention",
    "model.adapter.mome.load_balance_coef": "-0.01",
    "model.adapter.mome.load_balance": "global",
    "model.adapter.mome.z_loss_coef": "-1",
    "model.adapter.lora.rank_factor": "0",
    "model.adapter.lora.alpha": "0",
    "model.combination_weights": "{a4_v2: -1}",
    "data.train_snrs": "[100]",
    "data.max_frames": "0",
    "data.clean_epochs": "-1",
    "data.clean_steps_share": "1.5",
    "data.crop_size": "200",
    "data.num_workers": "-1",
    "data.num_buckets": "0",
    "data.av_tolerance_frames": "-1",
    "data.eval_noise_seed": "-3",
    "data.feature_noisy_versions": "0",
    "data.feature_cache_store": "pooled-ish",
    "train.seed": "-1",
    "train.lr": "0",
    "train.projector_lr_scale": "0",
    "model.projector.ctc_weight": "-1",
    "model.projector.dropout": "1",
    "model.label_smoothing": "-0.1",
    "train.weight_decay": "-0.1",
    "train.betas": "[2, 3]",
    "train.warmup_steps": "-5",
    "train.epochs": "0",
    "train.max_steps": "0",
    "train.grad_clip": "-1",
    "train.precision": "fp8",
    "train.save_every_steps": "0",
    "train.keep_checkpoints": "-1",
    "train.max_nonfinite_steps": "0",
    "train.max_bad_fraction": "1.5",
    "train.log_every_steps": "0",
    "train.val_every_steps": "0",
    "train.val_max_batches": "0",
    "train.num_threads": "-2",
    "train.task_mix": "{avsr: -1}",
    "train.plateau.every_steps": "0",
    "train.plateau.min_gain": "-0.5",
    "train.plateau.window": "1.5",
    "train.plateau.min_steps": "-1",
    "train.plateau.max_utterances": "0",
    "decode.num_beams": "0",
    "decode.max_new_tokens": "0",
    "decode.length_penalty": ".nan",
    "decode.batch_size": "0",
    "decode.precision": "fp64",
    "decode.quantize": "int4",
    "lip.objective": "lipreading",
    "lip.ctc_weight": "-1",
    "lip.max_val": "0",
}


@pytest.mark.parametrize("field", sorted(BAD_VALUES))
def test_every_bad_value_fails_at_load_naming_its_field(field: str) -> None:
    with pytest.raises(ConfigError, match="^" + field.replace(".", r"\.")):
        load_config("tiny", [f"{field}={BAD_VALUES[field]}"])


def _leaf_fields(cls: type, prefix: str = ""):
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _leaf_fields(hints[f.name], path)
        else:
            yield path, hints[f.name]


def test_the_bad_value_table_covers_every_numeric_and_enumerated_field() -> None:
    """A new int, float, list-of-numbers or Literal field must get a row above."""
    from mome.config import Config

    def checked(tp) -> bool:
        return any(t in str(tp) for t in ("Literal", "int", "float"))

    wanted = {path for path, tp in _leaf_fields(Config) if checked(tp)}
    assert wanted <= set(BAD_VALUES), sorted(wanted - set(BAD_VALUES))


def test_precision_defaults_to_auto_and_the_test_preset_pins_fp32() -> None:
    """`auto` by default and in the CPU demo presets; `tiny` stays fp32 so tests give the same numbers everywhere."""
    from mome.config import Config

    assert Config().train.precision == Config().decode.precision == "auto"
    for name in ("demo", "smol", "feasibility"):
        cfg = load_config(name)
        assert (cfg.train.precision, cfg.decode.precision) == ("auto", "auto"), name
    tiny = load_config("tiny")
    assert (tiny.train.precision, tiny.decode.precision) == ("fp32", "fp32")
    assert load_config("paper-mome-23-4-mhsa").train.precision == "bf16"
    assert load_config("tiny", ["train.precision=auto", "decode.precision=bf16"]).decode.precision == "bf16"


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_int8_decoding_with_an_explicit_half_precision_fails_at_load(precision: str) -> None:
    """int8 decoding runs in fp32: a bf16 / fp16 request beside it is a contradiction, named in one line."""
    with pytest.raises(ConfigError, match=rf"^decode\.quantize: int8 decodes in fp32; decode\.precision={precision}"):
        load_config("tiny", ["decode.quantize=int8", f"decode.precision={precision}"])
    for ok in ("auto", "fp32"):
        assert load_config("tiny", ["decode.quantize=int8", f"decode.precision={ok}"]).decode.quantize == "int8"


def test_legacy_dtype_names_of_saved_runs_still_load() -> None:
    cfg = config_from_dict({"model": {"llm": {"arch": {"model_type": "llama"}, "dtype": "bfloat16"}}})
    assert cfg.model.llm.dtype == "bf16"


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"a: [1,\n", r"bad\.yaml:2:1: YAML syntax error"), (b"name: \xff\xfe\n", r"bad\.yaml: not UTF-8 text")],
)
def test_yaml_errors_are_one_line_with_the_position(tmp_path, content: bytes, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=needle):
        load_config(str(path))


def test_a_malformed_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"override 'train\.betas=\[0\.9,':1:6: YAML syntax error"):
        load_config("tiny", ["train.betas=[0.9,"])


def test_a_typed_override_sets_its_value_as_it_is(tmp_path) -> None:
    """Code sets fields by (key, value): a path with `#` or `: ` in it would be cut or turned into a mapping by
    YAML, as the same text typed by a user is."""
    odd = tmp_path / "run #2: final"
    cfg = load_config("tiny", [("data.root", odd), ("train.max_steps", 7), ("model.compression.audio_rates", [4, 8])])
    assert (cfg.data.root, cfg.train.max_steps, cfg.model.compression.audio_rates) == (str(odd), 7, [4, 8])
    assert load_config("tiny", [f"data.root={tmp_path / 'run #2'}"]).data.root == str(tmp_path / "run")
    later = load_config("tiny", [("train.max_steps", 7), "train.max_steps=9"])  # in order: the later wins
    assert later.train.max_steps == 9
    arch = dict(load_config("tiny").model.llm.arch)
    cfg = load_config("tiny", [("model.llm.arch", arch)])
    arch["num_hidden_layers"] = 9  # the caller's dict, changed later, is not the config's
    assert cfg.model.llm.arch["num_hidden_layers"] == 2


def test_loader_workers_are_automatic_unless_set() -> None:
    """A cached batch is a few memory-mapped reads: no workers; media decoding: two (docs/benchmarks.md)."""
    assert load_config("tiny").data.loader_workers == 2
    assert load_config("tiny", ["data.feature_cache=f"]).data.loader_workers == 0
    assert load_config("tiny", ["data.feature_cache=f", "data.num_workers=1"]).data.loader_workers == 1
    assert load_config("tiny", ["data.num_workers=0"]).data.loader_workers == 0
