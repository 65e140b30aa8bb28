"""Cost per granularity (`mome cost`): LLM input tokens per second of speech and analytic prefill FLOPs of the
LLM and of its adapters at each rate combination, from the model's shapes alone (built on the meta device).

Counted: the matrix multiplications, 2 FLOPs per multiply-add. For a clip of S seconds at a combination with
tps audio + video tokens per second, the LLM reads n = tps * S tokens (prompt and transcript left out, as in
`tokens_per_second`); every decoder layer then costs

    n * (2 d (h hd) + 4 d (h_kv hd) + 2 (h hd) d + 6 d f)     q, k and v, o, gated MLP (gate, up, down)
    + 4 n^2 h hd                                             scores and weighted values, as a dense kernel
                                                             computes them (the causal half is not skipped)

and the adapters, per token and layer: MoME 2 d N_r (router) + 4 d b (k + N_s) (the chosen and shared
experts: the method's cost); LoRA kinds 2 x their active parameters. mome's MoME evaluates every expert
densely (docs: `adapters/mome.py`), which `dense=True` counts: 2 d N_r + 4 d b (N_r + N_s) + 2 (N_r + N_s) d.
The LM head and the encoders are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mome.config import Combination, Config, combination_key, combinations
from mome.errors import UserError
from mome.evaluation.evaluate import tokens_per_second
from mome.models.avsr import AVSRModel


@dataclass(frozen=True)
class DecoderShape:
    """What the FLOP count needs from an LLM config."""

    layers: int
    hidden: int  # d
    intermediate: int  # f
    heads: int  # h
    kv_heads: int  # h_kv
    head_dim: int  # hd

    @classmethod
    def of(cls, llm_config: Any) -> DecoderShape:
        heads = llm_config.num_attention_heads
        head_dim = getattr(llm_config, "head_dim", None) or llm_config.hidden_size // heads
        kv_heads = getattr(llm_config, "num_key_value_heads", None) or heads
        return cls(
            llm_config.num_hidden_layers,
            llm_config.hidden_size,
            llm_config.intermediate_size,
            heads,
            kv_heads,
            head_dim,
        )

    def linear_flops_per_token(self) -> int:
        """Projections and MLP of one layer for one token."""
        d, q = self.hidden, self.heads * self.head_dim
        return 2 * d * q + 4 * d * self.kv_heads * self.head_dim + 2 * q * d + 6 * d * self.intermediate

    def prefill_flops(self, tokens: float) -> float:
        """Every layer on `tokens` input positions (module docstring)."""
        attention = 4 * tokens**2 * self.heads * self.head_dim
        return self.layers * (tokens * self.linear_flops_per_token() + attention)


def adapter_flops_per_token(model: AVSRModel, shape: DecoderShape, dense: bool = False) -> float:
    """Adapter FLOPs of one token through every layer (module docstring); 0 without adapters."""
    adapter = model.cfg.adapter
    if adapter.kind == "none":
        return 0.0
    if adapter.kind != "mome":
        return 2.0 * model.active_adapter_parameters()  # LoRA: one multiply-add per active weight
    m, d = adapter.mome, shape.hidden
    routed_k = m.top_k if m.num_routed_experts else 0
    experts = m.num_routed_experts + m.num_shared_experts if dense else routed_k + m.num_shared_experts
    per_layer = 2 * d * m.num_routed_experts + 4 * d * m.bottleneck * experts
    if dense:
        per_layer += 2 * (m.num_routed_experts + m.num_shared_experts) * d  # gates @ up_bias
    return float(shape.layers * per_layer)


def uncompressed(cfg: Config) -> Combination:
    """Rate 1 for every modality the task uses: the reference point of the paper's cost comparison."""
    comp = cfg.model.compression
    return (1 if comp.uses_audio else None, 1 if comp.uses_video else None)


def cost_table(cfg: Config, seconds: float = 5.0, extra: list[Combination] | None = None) -> dict[str, Any]:
    """Tokens per second and prefill GFLOPs per second of speech at every combination of `cfg` (plus `extra`)."""
    from mome.analysis.params import build_on_meta

    if seconds <= 0:
        raise UserError(f"--seconds {seconds:g}: must be positive")
    model = build_on_meta(cfg)
    shape = DecoderShape.of(model.llm.config)
    rows = []
    for combo in [*combinations(cfg.model.compression), *(extra or [])]:
        tps = tokens_per_second(model, combo)
        tokens = tps * seconds
        llm = shape.prefill_flops(tokens) / seconds
        adapters = adapter_flops_per_token(model, shape) * tokens / seconds
        rows.append(
            {
                "rates": combination_key(combo),
                "tokens_per_second": tps,
                "llm_gflops_per_second": llm / 1e9,
                "adapter_gflops_per_second": adapters / 1e9,
                "trained": combo not in (extra or []),
            }
        )
    return {"name": cfg.name, "adapter": cfg.model.adapter.kind, "seconds": seconds, "shape": vars(shape), "rows": rows}


def markdown(table: dict[str, Any]) -> str:
    totals = [r["llm_gflops_per_second"] + r["adapter_gflops_per_second"] for r in table["rows"]]
    most = table["rows"][totals.index(max(totals))]["rates"]
    lines = [
        f"{table['name']} ({table['adapter']}): prefill of a {table['seconds']:g} s clip, per second of speech",
        "",
        f"| rates | tokens/s | LLM GFLOPs/s | adapter GFLOPs/s | FLOPs vs {most} |",
        "|---|---:|---:|---:|---:|",
    ]
    for r, total in zip(table["rows"], totals):
        name = r["rates"] if r["trained"] else f"{r['rates']} (reference, not trained)"
        lines.append(
            f"| {name} | {r['tokens_per_second']:.3g} | {r['llm_gflops_per_second']:.3g} | "
            f"{r['adapter_gflops_per_second']:.3g} | {max(totals) / total:.1f}x fewer |"
        )
    return "\n".join(lines)
