"""Loading a truncated LLM prints nothing from transformers, and mome itself rejects weights it did not expect."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM

from mome.config import LLMConfig
from mome.errors import ConfigError, UserError
from mome.models.hf_loading import check_loading_info
from mome.models.llm import load_llm
from tiny import TINY_LLAMA


@pytest.fixture
def llm_dir(tmp_path):
    """A tiny random Llama with two layers, saved as a local Hugging Face directory with a tokenizer."""
    from mome.models.tokenizer import build_char_tokenizer

    arch = copy.deepcopy(TINY_LLAMA)
    config = AutoConfig.for_model(arch.pop("model_type"), **arch)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    build_char_tokenizer(with_bos=True).save_pretrained(tmp_path)
    return tmp_path


def test_truncated_load_is_quiet_and_keeps_the_first_layers(llm_dir, capfd):
    full = load_llm(LLMConfig(path=str(llm_dir))).model
    capfd.readouterr()
    short = load_llm(LLMConfig(path=str(llm_dir), num_layers=1)).model
    printed = capfd.readouterr()
    assert "LOAD REPORT" not in printed.err + printed.out and "Loading weights" not in printed.err
    assert "vocab-expansion" not in printed.err + printed.out  # the embedding-resize notice
    assert len(short.model.layers) == 1
    assert short.model.layers[0].self_attn.q_proj.weight.equal(full.model.layers[0].self_attn.q_proj.weight)


def test_a_missing_tensor_is_an_error_not_a_random_weight(llm_dir):
    weights = llm_dir / "model.safetensors"
    state = load_file(weights)
    del state["model.layers.0.mlp.up_proj.weight"]
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(UserError, match="missing.*layers.0.mlp.up_proj"):
        load_llm(LLMConfig(path=str(llm_dir), num_layers=1))


def test_only_the_dropped_layers_may_be_unexpected():
    info = {"unexpected_keys": ["model.layers.3.mlp.up_proj.weight", "model.layers.12.input_layernorm.weight"]}
    check_loading_info(info, "ckpt", kept_layers=3)
    with pytest.raises(UserError, match="unexpected.*layers.12"):
        check_loading_info(info, "ckpt", kept_layers=13)
    with pytest.raises(UserError, match="unexpected"):
        check_loading_info({"unexpected_keys": ["extra.weight"]}, "ckpt", kept_layers=3)
    check_loading_info({"missing_keys": ["lm_head.weight"]}, "ckpt", allowed_missing=["lm_head.weight"])


@pytest.mark.parametrize(
    ("section", "typo", "field"),
    [
        ("llm", {"num_hidden_layer": 3}, "model.llm.arch.num_hidden_layer"),
        ("audio", {"encoder_layer": 3}, "model.encoders.audio.arch.encoder_layer"),
        ("llm", {"model_type": "lama"}, "model.llm.arch.model_type"),
    ],
)
def test_an_unknown_arch_field_is_refused_not_kept_as_a_loose_attribute(section, typo, field) -> None:
    """transformers would keep `num_hidden_layer` as an attribute and build its default depth."""
    from mome.config import load_config
    from mome.models.llm import load_config as llm_config
    from mome.models.whisper_encoder import load_whisper_encoder

    cfg = load_config("tiny")
    if section == "llm":
        with pytest.raises(ConfigError, match=rf"^{field}"):
            llm_config(dataclasses.replace(cfg.model.llm, arch={**cfg.model.llm.arch, **typo}))
        assert llm_config(cfg.model.llm).num_hidden_layers == cfg.model.llm.arch["num_hidden_layers"]
    else:
        with pytest.raises(ConfigError, match=rf"^{field}"):
            load_whisper_encoder({**cfg.model.encoders.audio.arch, **typo})
        assert load_whisper_encoder(cfg.model.encoders.audio.arch)[0].config.encoder_layers > 0


def test_every_preset_arch_is_in_the_transformers_schema() -> None:
    from transformers import CONFIG_MAPPING, WhisperConfig

    from mome.config import list_presets, load_config
    from mome.models.hf_loading import checked_arch

    checked = 0
    for preset in list_presets():
        m = load_config(preset).model
        if m.llm.arch:
            llm = dict(m.llm.arch)
            checked += bool(checked_arch(CONFIG_MAPPING[llm.pop("model_type")], llm, f"{preset}: model.llm.arch"))
        if m.encoders.audio.arch:
            checked += bool(checked_arch(WhisperConfig, m.encoders.audio.arch, f"{preset}: model.encoders.audio.arch"))
    assert checked >= 4  # tiny and the paper presets carry both
