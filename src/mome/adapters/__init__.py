"""Adapters that make a frozen Hugging Face LLM speak audio-visual: MoME and the LoRA baselines.

`attach_adapters(llm, cfg, num_combinations)` is the single registry from `adapter.kind` to a builder.
"""

from __future__ import annotations

from torch import nn

from mome.adapters.hooks import AdapterHandle, decoder_layers
from mome.adapters.lora import LORA_LAYOUT, attach_lora
from mome.adapters.mome import attach_mome
from mome.config import AdapterConfig

__all__ = ["AdapterHandle", "attach_adapters", "active_adapter_parameters"]


def attach_adapters(llm: nn.Module, cfg: AdapterConfig, num_combinations: int) -> AdapterHandle:
    """Attach the adapters named by `cfg.kind` to every decoder layer of `llm`; returns their handle."""
    if cfg.kind == "none":
        decoder_layers(llm)  # still check that the LLM is one we can wrap
        return AdapterHandle(nn.ModuleList())
    if cfg.kind == "mome":
        return attach_mome(llm, cfg.mome, num_combinations)
    if cfg.kind in LORA_LAYOUT:
        return attach_lora(llm, cfg.kind, cfg.lora, num_combinations)
    raise ValueError(f"unknown adapter kind {cfg.kind!r}")


def active_adapter_parameters(handle: AdapterHandle) -> int:
    """Adapter parameters used for one token at one granularity (the paper's "active params")."""
    total = 0
    for module in handle.modules.modules():
        fn = getattr(module, "active_parameters", None)
        if fn is not None and module is not handle.modules:
            total += fn()
    return total
