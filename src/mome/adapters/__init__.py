"""Adapters that make a frozen Hugging Face LLM speak audio-visual: MoME and the LoRA baselines.

`ADAPTERS` is the single registry from `adapter.kind` to the function that attaches it; its keys are the
config's `AdapterKind` values. What a kind trains and which auxiliary losses it adds, the `AdapterHandle`
it returns says, so the model never asks which kind it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from mome.adapters.hooks import AdapterHandle, AuxLoss, decoder_layers
from mome.adapters.lora import LORA_LAYOUT, attach_lora
from mome.adapters.mome import attach_mome
from mome.config import ADAPTER_KINDS, AdapterConfig, AdapterKind

__all__ = ["ADAPTERS", "AdapterHandle", "AuxLoss", "attach_adapters"]

Attach = Callable[[nn.Module, AdapterConfig, int], AdapterHandle]
"""(llm, adapter config, number of granularities) -> the handle of the adapters hooked onto `llm`."""


def _attach_none(llm: nn.Module, cfg: AdapterConfig, num_combinations: int) -> AdapterHandle:
    decoder_layers(llm)  # still check that the LLM is one we can wrap
    return AdapterHandle(nn.ModuleList())


def _attach_mome(llm: nn.Module, cfg: AdapterConfig, num_combinations: int) -> AdapterHandle:
    return attach_mome(llm, cfg.mome, num_combinations)


def _attach_lora(kind: str, llm: nn.Module, cfg: AdapterConfig, num_combinations: int) -> AdapterHandle:
    return attach_lora(llm, kind, cfg.lora, num_combinations)


ADAPTERS: dict[AdapterKind, Attach] = {
    "none": _attach_none,
    **{kind: partial(_attach_lora, kind) for kind in LORA_LAYOUT},  # lora (Llama-AVSR), mtsk-ms/ss/mss
    "mome": _attach_mome,
}
if set(ADAPTERS) != set(ADAPTER_KINDS):  # one list of kinds: the config's
    raise ImportError(f"adapter registry {tuple(ADAPTERS)} does not match config.ADAPTER_KINDS {ADAPTER_KINDS}")


def attach_adapters(llm: nn.Module, cfg: AdapterConfig, num_combinations: int) -> AdapterHandle:
    """Attach the adapters named by `cfg.kind` to every decoder layer of `llm`; returns their handle."""
    if cfg.kind not in ADAPTERS:
        raise ValueError(f"unknown adapter kind {cfg.kind!r}; expected one of {', '.join(ADAPTERS)}")
    return ADAPTERS[cfg.kind](llm, cfg, num_combinations)
