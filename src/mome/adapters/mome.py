"""The MoME module: a sparse mixture of tiny bottleneck experts, parallel to a frozen LLM sublayer.

    x ──► sublayer (frozen: MHSA, FFN or the whole layer) ──► + ──► y
    │                                                          ▲
    └─► u ─► router (fp32 softmax, top-k) ─► Σ g_e E_e(u) ─────┤   routed experts (N_r, K active)
         └─────────────────────────────────► Σ E_s(u) ─────────┘   shared experts (N_s, always on)

    E(u) = Linear(b -> d)(GELU(Linear(d -> b)(u)))            (arXiv 2510.04136; biases on both)

u is the sublayer's normalised input (the choice of the MoE adapter in the authors' Omni-AVSR code): the attention
input for `mhsa`, the MLP input for `ffn`, and `input_layernorm(x)` for `layer`. One router serves every
Matryoshka granularity (the paper's "shared router"); `shared_router: false` gives one router per
granularity for the ablation. Experts are always shared across granularities.

Experts are stored stacked ([n, d, b]) and evaluated densely: every expert runs on every token, and the
gates (zero for experts outside the top-k) weight their outputs. With b = 12 the n*b = 288 columns cost less
than one LLM projection, gradients are exactly those of sparse dispatch (unchosen experts get none), and
there is no Python loop over experts. `tests/adapters/test_mome.py` checks it against a per-token loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mome.adapters import context
from mome.adapters.context import RouterRecord
from mome.adapters.hooks import AdapterHandle, AuxLoss, add_parallel_hook, decoder_layers
from mome.adapters.routing import router_losses, top_k_gates
from mome.config import MoMEConfig


class MoMEAdapter(nn.Module):
    """Routed + shared bottleneck experts of one LLM layer.

    Args:
        dim: LLM width d.
        cfg: MoME hyper-parameters (experts, top-k, bottleneck, router sharing, gate normalisation).
        num_combinations: Matryoshka granularities C (routers when `shared_router` is off).
        layer_index: position in the LLM, recorded with the router statistics.
    """

    def __init__(self, dim: int, cfg: MoMEConfig, num_combinations: int, layer_index: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.layer_index = layer_index
        self.num_routed = cfg.num_routed_experts
        self.num_shared = cfg.num_shared_experts
        n, b = self.num_shared + self.num_routed, cfg.bottleneck
        # Shared experts first, then routed ones (DeepSeekMoE indexing, as in the paper's equation).
        self.down = nn.Parameter(torch.empty(n, dim, b))
        self.down_bias = nn.Parameter(torch.zeros(n, b))
        self.up = nn.Parameter(torch.zeros(n, b, dim))
        self.up_bias = nn.Parameter(torch.zeros(n, dim))
        num_routers = 1 if cfg.shared_router else num_combinations
        self.router = nn.Parameter(torch.empty(num_routers, self.num_routed, dim)) if self.num_routed else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Down projections and router random, up projections zero: the output starts at exactly zero,
        yet every weight is trained (the authors' Matryoshka MoE adapter code zero-initialised both
        projections, so its expert weights never learned)."""
        if self.down.is_meta:
            return
        dim = self.down.shape[1]
        bound = 1 / math.sqrt(dim)  # nn.Linear's default (kaiming_uniform with a=sqrt(5))
        nn.init.uniform_(self.down, -bound, bound)
        nn.init.zeros_(self.down_bias)
        nn.init.zeros_(self.up)
        nn.init.zeros_(self.up_bias)
        if self.router is not None:
            nn.init.uniform_(self.router, -bound, bound)

    def _down_matrix(self) -> torch.Tensor:
        """The experts' down projections side by side, [d, n*b]. Without gradients (decoding) the copy that
        the layout change makes is kept for the current adapter context (one generate call) instead of being
        redone at every token; a new context lays it out again from the weights as they are."""
        n, dim, b = self.down.shape
        if torch.is_grad_enabled() and self.down.requires_grad:
            return self.down.permute(1, 0, 2).reshape(dim, n * b)
        layouts = context.current().layouts
        if id(self) not in layouts:
            layouts[id(self)] = self.down.detach().permute(1, 0, 2).reshape(dim, n * b)
        return layouts[id(self)]

    def router_logits(self, x: torch.Tensor, combination: torch.Tensor | None) -> torch.Tensor:
        """x: [N, d], combination: [N] -> logits [N, E] from each token's granularity's router (fp32); the
        shared router needs no `combination`."""
        assert self.router is not None
        num_routers, num_experts, dim = self.router.shape
        # Under bf16 autocast a matmul runs in bf16 whatever its inputs: switch autocast off so that the
        # routing decision (top-k of nearly tied logits) is made in fp32.
        with torch.autocast(x.device.type, enabled=False):
            if num_routers == 1:
                return x.float() @ self.router[0].float().t()
            assert combination is not None, "per-granularity routers need each token's granularity"
            # Every router on every token ([N, R*E]), then keep each token's own: cheaper than gathering weights.
            all_logits = (x.float() @ self.router.reshape(-1, dim).float().t()).view(-1, num_routers, num_experts)
        return all_logits.gather(1, combination.view(-1, 1, 1).expand(-1, 1, num_experts)).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, L, d] sublayer input -> [B, L, d] MoME output (added to the sublayer output by the hook).

        With a token mask in the context (the training forward), experts run on real tokens only and the
        output is zero on padding: right padding (and the padding at the end of a packed row, a sequence of
        its own) is never attended to nor scored, so this is exact, and it skips the positions that pad the
        granularities' rows to one length (docs/benchmarks.md).
        """
        ctx = context.current()
        batch, length, dim = x.shape
        flat = x.reshape(-1, dim).to(self.down.dtype)  # [N, d], N = B*L
        keep = None
        if ctx.token_mask is not None and ctx.token_mask.numel() == flat.shape[0]:
            keep = ctx.token_mask.reshape(-1).nonzero().squeeze(1)  # [N'] real tokens
            flat = flat.index_select(0, keep)  # [N', d]
        if self.num_routed:
            combo = None  # each token's granularity: needed by per-granularity routers and the statistics
            if self.router.shape[0] > 1 or ctx.collect:
                combo = ctx.combination_per_token(batch, length, x.device).reshape(-1)  # [N]
                combo = combo[keep] if keep is not None else combo  # [N']
            logits = self.router_logits(flat, combo)
            _, top_gates, top_index = top_k_gates(logits, self.cfg.top_k, self.cfg.renormalize_gates)
            routed = torch.zeros_like(logits).scatter(1, top_index, top_gates)  # [N', E], zero off the top-k
            gates = F.pad(routed.to(flat.dtype), (self.num_shared, 0), value=1.0)  # [N', n]: shared experts on
            if ctx.collect:
                self._record(ctx, logits, top_index, combo, keep)
        else:
            gates = flat.new_ones(flat.shape[0], self.num_shared)  # [N', n]
        n, _, b = self.down.shape
        hidden = flat @ self._down_matrix()  # [N', n*b]: every expert's Linear(d, b)
        hidden = F.gelu(hidden.view(-1, n, b) + self.down_bias)  # [N', n, b]
        hidden = hidden * gates.unsqueeze(-1)  # weight each expert by its gate (0 = not chosen)
        out = hidden.reshape(-1, n * b) @ self.up.reshape(n * b, dim) + gates @ self.up_bias  # [N', d]
        if keep is not None:
            out = out.new_zeros(batch * length, dim).index_copy(0, keep, out)  # [N, d], zero on padding
        return out.view(batch, length, dim)

    def _record(self, ctx: context.AdapterContext, logits, top_index, combo, keep: torch.Tensor | None) -> None:
        """Router outputs of real tokens only (`keep`: their flat indices; None = every token is real)."""
        segment = ctx.segments.reshape(-1) if ctx.segments is not None else None
        if keep is not None and segment is not None:
            segment = segment[keep]
        ctx.records.append(RouterRecord(self.layer_index, logits, top_index, combo, segment))

    def active_parameters(self) -> int:
        """Parameters used per token: K routed + all shared experts, and one router (as counted in MoME's Table 1)."""
        n, dim, b = self.down.shape
        per_expert = 2 * dim * b + b + dim
        router = self.num_routed * dim
        active_experts = self.num_shared + (self.cfg.top_k if self.num_routed else 0)
        return active_experts * per_expert + router


def _router_loss_fn(cfg: MoMEConfig, num_combinations: int) -> Callable[[list[RouterRecord]], dict[str, AuxLoss]]:
    """MoME's auxiliary losses: load balance and z-loss of the routed experts, weighted by their coefficients."""

    def losses(records: list[RouterRecord]) -> dict[str, AuxLoss]:
        weights = {"load_balance": cfg.load_balance_coef, "z_loss": cfg.z_loss_coef}
        terms = router_losses(records, cfg.num_routed_experts, num_combinations, cfg.load_balance)
        return {name: AuxLoss(weights[name], value) for name, value in terms.items()}

    return losses


def _layer_input_norm(layer: nn.Module):
    return lambda x: layer.input_layernorm(x)


def attach_mome(llm: nn.Module, cfg: MoMEConfig, num_combinations: int) -> AdapterHandle:
    """Put one MoME module in parallel to the chosen sublayer of every decoder layer."""
    layers = decoder_layers(llm)
    dim = llm.config.hidden_size
    modules = nn.ModuleList(MoMEAdapter(dim, cfg, num_combinations, i) for i in range(len(layers)))
    handle = AdapterHandle(
        modules, aux_loss_fn=_router_loss_fn(cfg, num_combinations) if cfg.num_routed_experts else None
    )
    for layer, adapter in zip(layers, modules):
        if cfg.placement == "mhsa":  # attention input is input_layernorm(x)
            add_parallel_hook(handle, layer.self_attn, adapter)
        elif cfg.placement == "ffn":  # MLP input is post_attention_layernorm(x')
            add_parallel_hook(handle, layer.mlp, adapter)
        elif cfg.placement == "layer":  # layer input is the raw residual stream: normalise it as MHSA does
            add_parallel_hook(handle, layer, adapter, input_fn=_layer_input_norm(layer))
        else:
            raise ValueError(f"unknown MoME placement {cfg.placement!r}")
    return handle
