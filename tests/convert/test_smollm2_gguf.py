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
