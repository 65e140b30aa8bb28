"""Finding the decoder layers of a Hugging Face causal LM and hooking them without editing its code.

We never copy an HF `forward`. Adapters are attached with forward hooks on modules the HF model already
has (`self_attn`, `mlp`, `q_proj`, `v_proj`, the decoder layer itself); a hook adds the adapter's output to
the module's output. The HF module tree and its state-dict keys stay exactly as they were, and `remove()`
restores the original model. Checked against Llama, Qwen2 and SmolLM2 (a Llama).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from mome.adapters.context import RouterRecord


def decoder_layers(llm: nn.Module) -> nn.ModuleList:
    """The decoder layers of an HF causal LM, checked so that an unexpected architecture fails loudly."""
    base = getattr(llm, getattr(llm, "base_model_prefix", "model"), None)
    layers = getattr(base, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise TypeError(
            f"{type(llm).__name__}: no decoder layers found at .{llm.base_model_prefix}.layers; "
            "mome supports Llama-style HF causal LMs (Llama, Qwen2, SmolLM2, Mistral ...)"
        )
    for i, layer in enumerate(layers):
        for name in ("self_attn", "mlp", "input_layernorm", "post_attention_layernorm"):
            if not hasattr(layer, name):
                raise TypeError(f"decoder layer {i} ({type(layer).__name__}) has no `{name}`; cannot place adapters")
        for name in ("q_proj", "v_proj"):
            if not isinstance(getattr(layer.self_attn, name, None), nn.Linear):
                raise TypeError(f"decoder layer {i}: self_attn.{name} is not an nn.Linear; cannot place LoRA")
    return layers


def hook_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """The hidden states a hooked module received, whether passed positionally or by keyword."""
    if "hidden_states" in kwargs:
        return kwargs["hidden_states"]
    return args[0]


def add_to_output(output: Any, delta: torch.Tensor) -> Any:
    """Add `delta` to a module's output; HF attention returns a tuple whose first item is the output."""
    if isinstance(output, tuple):
        return (output[0] + delta.to(output[0].dtype), *output[1:])
    return output + delta.to(output.dtype)


class AuxLoss(NamedTuple):
    """One auxiliary loss term of an adapter kind: the objective adds `weight * value`."""

    weight: float
    value: torch.Tensor


@dataclass
class AdapterHandle:
    """What attaching adapters returns, and all the model knows of an adapter kind: its trainable modules,
    its auxiliary losses, and a way to switch them off or remove them."""

    modules: nn.ModuleList
    hooks: list[torch.utils.hooks.RemovableHandle] = field(default_factory=list)
    enabled: bool = True
    aux_loss_fn: Callable[[list[RouterRecord]], dict[str, AuxLoss]] | None = None
    """The kind's auxiliary losses from the router records of one forward (MoME's router losses); None: none."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters this kind trains: all of its modules' (the LLM they hook onto stays frozen)."""
        return list(self.modules.parameters())

    def aux_losses(self, records: list[RouterRecord]) -> dict[str, AuxLoss]:
        """Named auxiliary loss terms of one forward, in the order they are added to the objective."""
        return self.aux_loss_fn(records) if self.aux_loss_fn is not None else {}

    def active_parameters(self) -> int:
        """Adapter parameters used for one token at one granularity (the paper's "active params")."""
        return sum(m.active_parameters() for m in self.modules.modules() if hasattr(m, "active_parameters"))

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks.clear()

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Run the LLM as if no adapter were attached (parity checks, base-model baselines)."""
        previous, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = previous


def add_parallel_hook(
    handle: AdapterHandle,
    target: nn.Module,
    delta_fn: Callable[[torch.Tensor], torch.Tensor],
    input_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Hook `target` so that output <- output + delta_fn(input_fn(input)) while `handle` is enabled."""

    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        if not handle.enabled:
            return output
        x = hook_input(args, kwargs)
        if input_fn is not None:
            x = input_fn(x)
        return add_to_output(output, delta_fn(x))

    handle.hooks.append(target.register_forward_hook(hook, with_kwargs=True))
