"""Per-forward state that adapters read, set by `AVSRModel` around each LLM call.

Adapters live in hooks on an unmodified Hugging Face model, so anything that varies per call cannot be
passed through HF's keyword arguments without forking its forward methods. Instead the model opens an
`AdapterContext` for the duration of one LLM call:

- `combination`: which Matryoshka granularity each position belongs to: an int for the whole batch, a
  LongTensor[B] per row when all combinations are batched together (padded rows), or a LongTensor[B, L] per
  token when rows of several granularities share a packed row (`models/sequence.py:pack`). Per-granularity
  LoRA (MTSK-SS/MSS) and per-granularity routers read it.
- `token_mask` [B, L]: real tokens (True) vs padding, so that MoME skips padding and the load-balancing loss
  ignores it.
- `segments` [B, L]: token kind (see `Segment`) for the expert-usage statistics.
- `records`: the list into which MoME modules append their router outputs (when `collect`) for the
  auxiliary losses.
- `layouts`: weight layouts computed once per context (decoding), never across contexts.

The context is cleared on exit, also when the forward raises.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum

import torch


class Segment(IntEnum):
    """Kinds of LLM input positions, for per-modality expert statistics."""

    PAD = 0
    AUDIO = 1
    VIDEO = 2
    TEXT = 3  # BOS, markers, prompt, transcript, EOS


@dataclass
class RouterRecord:
    """What one MoME module saw in one forward (per layer)."""

    layer: int
    logits: torch.Tensor  # [N, E] fp32 router logits of the valid tokens
    topk_index: torch.Tensor  # [N, K]
    combination: torch.Tensor  # [N] combination index of each token
    segment: torch.Tensor | None  # [N] Segment of each token


@dataclass
class AdapterContext:
    combination: int | torch.Tensor = 0
    token_mask: torch.Tensor | None = None
    segments: torch.Tensor | None = None
    collect: bool = False
    """Record router outputs (training and analysis); off during generation."""
    records: list[RouterRecord] = field(default_factory=list)
    layouts: dict[int, torch.Tensor] = field(default_factory=dict)
    """Weights re-laid out for speed without gradients (MoME's side-by-side down projections), keyed by module:
    they live as long as this context (one generate call), inside which no weight can change, so a copy is
    never stale whatever writes the weights between calls (an optimiser step, a state-dict load, `.data`)."""

    def combination_per_row(self, batch_size: int, device: torch.device) -> torch.Tensor:
        """LongTensor[B] of combination indices, from an int or per-row `combination` (not a per-token one)."""
        if isinstance(self.combination, torch.Tensor):
            if self.combination.dim() != 1:
                raise ValueError("a per-token combination [B, L] has no per-row form; use combination_per_token")
            if self.combination.numel() == batch_size:
                return self.combination.to(device)
            # Beam search expands every row num_beams times, contiguously.
            repeat = batch_size // self.combination.numel()
            return self.combination.to(device).repeat_interleave(repeat)
        return torch.full((batch_size,), int(self.combination), dtype=torch.long, device=device)

    def combination_per_token(self, batch_size: int, length: int, device: torch.device) -> torch.Tensor:
        """LongTensor[B, L] of combination indices, whatever form `combination` was given in."""
        if isinstance(self.combination, torch.Tensor) and self.combination.dim() == 2:
            if self.combination.shape != (batch_size, length):
                raise ValueError(f"per-token combination {tuple(self.combination.shape)} != input {batch_size, length}")
            return self.combination.to(device)
        return self.combination_per_row(batch_size, device).unsqueeze(1).expand(batch_size, length)


_state = threading.local()


def current() -> AdapterContext:
    """The active context; a default one (combination 0, nothing collected) outside `adapter_context`."""
    ctx = getattr(_state, "ctx", None)
    return ctx if ctx is not None else AdapterContext()


@contextlib.contextmanager
def adapter_context(ctx: AdapterContext) -> Iterator[AdapterContext]:
    previous = getattr(_state, "ctx", None)
    _state.ctx = ctx
    try:
        yield ctx
    finally:
        _state.ctx = previous
