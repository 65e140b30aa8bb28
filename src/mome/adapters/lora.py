"""LoRA on the query and value projections: Llama-AVSR and the three Llama-MTSK variants.

    q = W_q x + s * U_q D_q x        v = W_v x + s * U_v D_v x       (the Llama-AVSR reference code)

The reference's "rank" is a reduction factor: the bottleneck is r = d / rank_factor and the scaling is
s = alpha / rank_factor. D starts at zero and U kaiming-uniform, as in the reference, so the LoRA output
starts at zero (the reverse of the usual LoRA init, same effect).

Variants (Llama-MTSK, arXiv 2503.06362), as banks of LoRAs per projection:
    lora      one LoRA, one fixed rate combination (Llama-AVSR: one model per combination)
    mtsk-ms   one LoRA shared by all granularities
    mtsk-ss   one LoRA per granularity
    mtsk-mss  a shared LoRA plus one per granularity, summed

AV-HuBERT's optional LoRA is a separate, plain one (`models/avhubert.py:LoRALinear`, which says why).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mome.adapters import context
from mome.adapters.hooks import AdapterHandle, add_parallel_hook, decoder_layers
from mome.config import LoRAConfig

LORA_LAYOUT = {  # kind -> (has a shared LoRA, has one LoRA per granularity)
    "lora": (True, False),
    "mtsk-ms": (True, False),
    "mtsk-ss": (False, True),
    "mtsk-mss": (True, True),
}


class LoRABank(nn.Module):
    """The LoRA deltas of one frozen Linear: optionally a shared LoRA and one LoRA per granularity."""

    def __init__(
        self, in_features: int, out_features: int, rank: int, scaling: float, shared: bool, per_combination: int
    ) -> None:
        super().__init__()
        self.scaling = scaling
        self.has_shared = shared
        self.num_specific = per_combination
        n = int(shared) + per_combination  # bank 0 is the shared LoRA when there is one
        self.down = nn.Parameter(torch.zeros(n, in_features, rank))
        self.up = nn.Parameter(torch.empty(n, rank, out_features))
        if not self.up.is_meta:
            for i in range(n):  # kaiming_uniform(a=sqrt(5)) on a Linear(rank, out) weight, as in the reference
                bound = 1 / math.sqrt(rank)
                nn.init.uniform_(self.up[i], -bound, bound)

    def _bank_delta(self, x: torch.Tensor, bank: int) -> torch.Tensor:
        return (x @ self.down[bank]) @ self.up[bank]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, L, in] -> scaled delta [B, L, out] for each token's granularity."""
        x = x.to(self.down.dtype)
        delta = self._bank_delta(x, 0) if self.has_shared else None
        if self.num_specific:
            ctx = context.current()
            if isinstance(ctx.combination, int):
                specific = self._bank_delta(x, int(self.has_shared) + ctx.combination)
            else:
                specific = self._specific_per_token(x, ctx)
            delta = specific if delta is None else delta + specific
        return self.scaling * delta

    def _specific_per_token(self, x: torch.Tensor, ctx: context.AdapterContext) -> torch.Tensor:
        """Tokens of several granularities in one batch (padded rows or packed ones): each bank on its own tokens."""
        batch, length, width = x.shape
        combo = ctx.combination_per_token(batch, length, x.device).reshape(-1)  # [N], N = B*L
        flat = x.reshape(-1, width)  # [N, in]
        specific = flat.new_zeros(flat.shape[0], self.up.shape[-1])  # [N, out]
        for c in combo.unique().tolist():
            tokens = (combo == c).nonzero().squeeze(1)  # [N_c]
            bank = int(self.has_shared) + c
            specific = specific.index_copy(0, tokens, self._bank_delta(flat[tokens], bank).to(specific.dtype))
        return specific.view(batch, length, -1)

    def active_parameters(self) -> int:
        """One LoRA per granularity is used at a time, plus the shared one (as counted in MoME's Table 1)."""
        per_lora = self.down[0].numel() + self.up[0].numel()
        return per_lora * (int(self.has_shared) + int(self.num_specific > 0))


def attach_lora(llm: nn.Module, kind: str, cfg: LoRAConfig, num_combinations: int) -> AdapterHandle:
    """Hook a LoRA bank onto q_proj and v_proj of every decoder layer."""
    shared, specific = LORA_LAYOUT[kind]
    layers = decoder_layers(llm)
    dim = llm.config.hidden_size
    rank = max(1, round(dim / cfg.rank_factor))
    scaling = cfg.alpha / cfg.rank_factor
    modules = nn.ModuleList()
    handle = AdapterHandle(modules)
    for layer in layers:
        pair = nn.ModuleDict()
        for name in ("q_proj", "v_proj"):
            proj: nn.Linear = getattr(layer.self_attn, name)
            # v_proj outputs num_key_value_heads * head_dim under GQA: read it off the module.
            bank = LoRABank(
                proj.in_features, proj.out_features, rank, scaling, shared, num_combinations if specific else 0
            )
            pair[name] = bank
            add_parallel_hook(handle, proj, bank)
        modules.append(pair)
    return handle
