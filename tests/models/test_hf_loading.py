"""Loading a truncated LLM prints nothing from transformers, and mome itself rejects weights it did not expect."""

from __future__ import annotations

import copy

import pytest
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM

from mome.config import LLMConfig
from mome.errors import UserError
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
