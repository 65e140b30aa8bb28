"""Expert usage of a trained MoME model (`mome experts`): which routed experts each layer picks, per
granularity and token kind, and how consistently the router picks the same experts for the same stretch of
speech at different granularities (the paper's interpretability claim, made measurable).

    every batch: one teacher-forced LLM forward over the chosen granularities (right-padded rows, router
    outputs recorded) -> per token and layer: top-k experts, granularity, kind (audio / video / text),
    utterance and time span: audio token i at rate a covers [i a, (i+1) a) / 50 s, video token j at
    rate v covers [j v, (j+1) v) / 25 s (the encoders' frame rates)

Usage: share[layer, granularity, kind, expert] = fraction of the tokens whose top-k holds the expert (the
shares of a row sum to k). Load balance: coefficient of variation (std / mean) of a layer's shares over
the experts, per granularity; 0 = perfectly even.

Consistency of two granularities whose rates differ for a modality, per layer: every pair of tokens of that
modality in one utterance whose time spans overlap scores the Jaccard overlap of their top-k sets, weighted
by the overlap in seconds; 1 means the same experts for the same speech. Chance: the same pairs, with the second token's set taken from a random
token of its granularity and modality (a seeded permutation), which is what uneven usage alone gives.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mome.adapters.context import AdapterContext, Segment, adapter_context
from mome.config import Combination, combination_key
from mome.io import atomic_write_text
from mome.models.avsr import AVSRModel, Features

KINDS = {"audio": Segment.AUDIO, "video": Segment.VIDEO, "text": Segment.TEXT}


@dataclass
class Routing:
    """Top-k experts of the analysed tokens of one layer (one entry per token)."""

    layer: int
    topk: torch.Tensor  # [N, K] expert indices
    combination: torch.Tensor  # [N] index into the analysed combinations
    segment: torch.Tensor  # [N] Segment
    utterance: torch.Tensor  # [N]
    start: torch.Tensor  # [N] seconds; NaN for text
    end: torch.Tensor  # [N]

    @staticmethod
    def concat(parts: list[Routing]) -> Routing:
        return Routing(parts[0].layer, *(torch.cat([getattr(p, f) for p in parts]) for f in
                                         ("topk", "combination", "segment", "utterance", "start", "end")))  # fmt: skip


def _spans(seq_segments: torch.Tensor, rates: torch.Tensor, fps: float, kind: Segment) -> tuple:
    """Start and end (s) of every position of `kind` from its order in its row: [R, L] each, NaN elsewhere."""
    is_kind = seq_segments == kind
    order = is_kind.long().cumsum(1) - 1  # [R, L] the i-th token of this kind in its row
    seconds = rates.view(-1, 1).float() / fps  # [R, 1] span of one token
    start = torch.where(is_kind, order * seconds, torch.nan)
    return start, start + seconds


@torch.no_grad()
def route_batch(
    model: AVSRModel, features: Features, texts: list[str], combos: list[Combination], first_utterance: int,
    frame_rates: tuple[float, float],
) -> list[Routing]:  # fmt: skip
    """One teacher-forced forward of a batch at `combos`; the routing of its real tokens, per MoME layer."""
    batch = features.batch_size
    seq = model.build_sequences(features, combos, texts, padding_side="right")  # rows: c * B + b
    index = torch.tensor([model.combinations.index(c) for c in combos]).repeat_interleave(batch)  # [R]
    mask = seq.attention_mask.bool()
    ctx = AdapterContext(index.to(mask.device), mask, seq.segments, collect=True)
    with adapter_context(ctx):
        model.last_hidden(seq)
    local = torch.arange(len(combos)).repeat_interleave(batch)  # [R] index into `combos`
    start = torch.full(mask.shape, torch.nan)
    end = torch.full(mask.shape, torch.nan)
    for kind, rates, fps in ((Segment.AUDIO, [c[0] for c in combos], frame_rates[0]),
                             (Segment.VIDEO, [c[1] for c in combos], frame_rates[1])):  # fmt: skip
        if any(rates):
            present = torch.tensor([r or 0 for r in rates])  # 0: a row without this modality (unified model)
            s, e = _spans(seq.segments.cpu(), present.repeat_interleave(batch), fps, kind)
            start, end = torch.where(s.isnan(), start, s), torch.where(e.isnan(), end, e)
    rows = mask.cpu().nonzero(as_tuple=True)  # row-major: the order MoME records real tokens in
    utterance = first_utterance + rows[0] % batch
    fields = (local[rows[0]], seq.segments.cpu()[rows], utterance, start[rows], end[rows])
    return [Routing(r.layer, r.topk_index.cpu(), *fields) for r in sorted(ctx.records, key=lambda r: r.layer)]


def collect(model: AVSRModel, batches: Iterable[tuple[Features, list[str]]], combos: list[Combination],
            frame_rates: tuple[float, float]) -> list[Routing]:  # fmt: skip
    """The routing of every batch, concatenated per layer. Raises ValueError for a model without routers."""
    per_layer: dict[int, list[Routing]] = {}
    seen = 0
    for features, texts in batches:
        for routing in route_batch(model, features, texts, combos, seen, frame_rates):
            per_layer.setdefault(routing.layer, []).append(routing)
        seen += features.batch_size
    if not per_layer:
        raise ValueError("no router outputs: expert usage needs a MoME model with routed experts")
    return [Routing.concat(parts) for _, parts in sorted(per_layer.items())]


# ------------------------------------------------------------------------------------------ statistics
def usage(routing: Routing, num_experts: int, num_combinations: int) -> torch.Tensor:
    """share [C, kinds, E]: per granularity and token kind (KINDS order), the fraction of tokens choosing each
    expert (NaN rows where there is no such token)."""
    out = torch.full((num_combinations, len(KINDS), num_experts), torch.nan)
    for c, (k, kind) in itertools.product(range(num_combinations), enumerate(KINDS.values())):
        chosen = routing.topk[(routing.combination == c) & (routing.segment == kind)]  # [n, K]
        if len(chosen):
            out[c, k] = torch.bincount(chosen.flatten(), minlength=num_experts).float() / len(chosen)
    return out


def load_balance_cv(routing: Routing, num_experts: int, combination: int) -> float:
    """Coefficient of variation of the experts' shares over every token of one granularity."""
    chosen = routing.topk[routing.combination == combination]
    counts = torch.bincount(chosen.flatten(), minlength=num_experts).float()
    return float(counts.std(correction=0) / counts.mean()) if counts.sum() else float("nan")


def _multi_hot(topk: torch.Tensor, num_experts: int) -> torch.Tensor:
    return torch.zeros(len(topk), num_experts).scatter_(1, topk, 1.0)  # [n, E]


def consistency(routing: Routing, first: int, second: int, kind: Segment, num_experts: int,
                seed: int = 0) -> tuple[float, float]:  # fmt: skip
    """(score, chance) for granularities `first` and `second` on tokens of `kind` (module docstring);
    (NaN, NaN) when no two such tokens overlap in time."""
    a = ((routing.combination == first) & (routing.segment == kind)).nonzero().squeeze(1)
    b = ((routing.combination == second) & (routing.segment == kind)).nonzero().squeeze(1)
    if not len(a) or not len(b):
        return float("nan"), float("nan")
    sets_a, sets_b = _multi_hot(routing.topk[a], num_experts), _multi_hot(routing.topk[b], num_experts)
    generator = torch.Generator().manual_seed(seed)
    shuffled = sets_b[torch.randperm(len(b), generator=generator)]
    k = routing.topk.shape[1]

    def jaccard(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # [n_a, E], [n_b, E] -> [n_a, n_b]
        shared = x @ y.T  # experts in both top-k sets
        return shared / (2 * k - shared)

    score = chance = weight = 0.0
    for u in routing.utterance[a].unique():
        in_a, in_b = routing.utterance[a] == u, routing.utterance[b] == u
        latest_start = torch.maximum(routing.start[a][in_a, None], routing.start[b][None, in_b])
        earliest_end = torch.minimum(routing.end[a][in_a, None], routing.end[b][None, in_b])
        overlap = (earliest_end - latest_start).clamp_min(0)  # [n_a, n_b] seconds
        score += float((overlap * jaccard(sets_a[in_a], sets_b[in_b])).sum())
        chance += float((overlap * jaccard(sets_a[in_a], shuffled[in_b])).sum())
        weight += float(overlap.sum())
    return (score / weight, chance / weight) if weight else (float("nan"), float("nan"))


# ------------------------------------------------------------------------------------------ report
def analyse(routings: list[Routing], combos: list[Combination], num_experts: int) -> dict[str, Any]:
    """Usage, load balance and consistency of every layer, as the JSON that `mome experts` writes."""
    keys = [combination_key(c) for c in combos]
    layers = []
    for routing in routings:
        share = usage(routing, num_experts, len(combos))
        pairs = []
        for (i, ci), (j, cj) in itertools.combinations(enumerate(combos), 2):
            for name, kind, rate in (("audio", Segment.AUDIO, 0), ("video", Segment.VIDEO, 1)):
                if ci[rate] and cj[rate] and ci[rate] != cj[rate]:  # the same stretch at two rates
                    score, chance = consistency(routing, i, j, kind, num_experts)
                    pairs.append({"first": keys[i], "second": keys[j], "modality": name, "score": score,
                                  "chance": chance})  # fmt: skip
        layers.append({
            "layer": routing.layer,
            "tokens": {keys[c]: int((routing.combination == c).sum()) for c in range(len(combos))},
            "share": {keys[c]: {kind: _floats(share[c, k]) for k, kind in enumerate(KINDS)} for c in range(len(combos))},
            "load_balance_cv": {keys[c]: load_balance_cv(routing, num_experts, c) for c in range(len(combos))},
            "consistency": pairs,
        })  # fmt: skip
    return {"combinations": keys, "num_experts": num_experts, "top_k": int(routings[0].topk.shape[1]),
            "layers": layers, "consistency_mean": _mean_consistency(layers)}  # fmt: skip


def _floats(values: torch.Tensor) -> list[float | None]:
    return [None if v != v else round(float(v), 5) for v in values]


def _mean_consistency(layers: list[dict]) -> dict[str, dict[str, float]]:
    """Per modality: score and chance averaged over layers and granularity pairs."""
    out = {}
    for modality in ("audio", "video"):
        pairs = [p for layer in layers for p in layer["consistency"] if p["modality"] == modality]
        pairs = [p for p in pairs if p["score"] == p["score"]]  # not NaN
        if pairs:
            out[modality] = {k: sum(p[k] for p in pairs) / len(pairs) for k in ("score", "chance")}
    return out


def markdown(result: dict[str, Any], title: str) -> str:
    lines = [f"# Expert usage of {title}", "",
             f"{result['num_experts']} routed experts, top-{result['top_k']}. Consistency: overlap-weighted "
             "Jaccard of the top-k sets of tokens that cover the same speech at two granularities (1 = the same "
             "experts), against chance (the same pairs with shuffled sets).", ""]  # fmt: skip
    for modality, v in result["consistency_mean"].items():
        lines.append(
            f"- {modality}: consistency {v['score']:.3f}, chance {v['chance']:.3f} (mean over layers and pairs)"
        )
    lines += ["", "| layer | granularity | load balance CV | tokens |", "|---:|---|---:|---:|"]
    for layer in result["layers"]:
        for key in result["combinations"]:
            lines.append(f"| {layer['layer']} | {key} | {layer['load_balance_cv'][key]:.3f} | {layer['tokens'][key]} |")
    lines += ["", "| layer | first | second | modality | consistency | chance |", "|---:|---|---|---|---:|---:|"]
    for layer in result["layers"]:
        for p in layer["consistency"]:
            lines.append(f"| {layer['layer']} | {p['first']} | {p['second']} | {p['modality']} | {p['score']:.3f} "
                         f"| {p['chance']:.3f} |")  # fmt: skip
    lines += ["", "Heatmaps: `layer_<i>.png` (rows: granularity x token kind, columns: experts).", ""]
    return "\n".join(lines)


def heatmap(layer: dict[str, Any], path: Path) -> Path:
    """One layer's usage shares as an image: rows granularity x token kind, columns experts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, rows = [], []
    for key, kinds in layer["share"].items():
        for kind, values in kinds.items():
            if any(v is not None for v in values):
                labels.append(f"{key} {kind}")
                rows.append([float("nan") if v is None else v for v in values])
    fig, ax = plt.subplots(figsize=(0.3 * len(rows[0]) + 2.5, 0.3 * len(rows) + 1.5))
    image = ax.imshow(rows, aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xticks(range(len(rows[0])), range(len(rows[0])), fontsize=6)
    ax.set_xlabel("routed expert")
    ax.set_title(f"layer {layer['layer']}: share of tokens routed to each expert", fontsize=9)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return path


def write_outputs(result: dict[str, Any], out_dir: Path, title: str) -> None:
    """experts.json, experts.md and one heatmap per layer in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "experts.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(out_dir / "experts.md", markdown(result, title))
    for layer in result["layers"]:
        heatmap(layer, out_dir / f"layer_{layer['layer']}.png")


# ------------------------------------------------------------------------------------------ data
def has_router(cfg: Any) -> bool:
    """Whether a model config (`ModelConfig`) routes tokens: MoME with routed experts."""
    return cfg.adapter.kind == "mome" and cfg.adapter.mome.num_routed_experts > 0


def expert_usage(model: AVSRModel, cfg: Any, labels: Path, root: Path, combos: list[Combination],
                 limit: int | None = None, progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """`analyse` of the clean utterances of `labels` at `combos`: what `mome experts` and the demo report."""
    from mome.evaluation.evaluate import frame_rates

    routings = collect(model.eval(), labelled_batches(model, cfg, labels, root, limit, progress), combos,
                       frame_rates(model))  # fmt: skip
    return analyse(routings, combos, cfg.model.adapter.mome.num_routed_experts)


def labelled_batches(model: AVSRModel, cfg: Any, labels: Path, root: Path, limit: int | None,
                 progress: bool = True) -> Iterable[tuple[Features, list[str]]]:  # fmt: skip
    """(features, transcripts) of the clean utterances of `labels` in file order, as `mome eval` reads them
    (cached features when `data.feature_cache` is set); unreadable utterances are left out."""
    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    from mome.config import absolute_path
    from mome.data.collate import collate
    from mome.evaluation.evaluate import feature_cache, to_device
    from mome.features.dataset import make_dataset

    root = Path(absolute_path(str(root)))
    labels = Path(absolute_path(str(labels), root))
    cache = feature_cache(model, cfg, root)
    dataset = make_dataset(cfg, labels, root, False, cache, eval_snr=None)
    size = len(dataset) if limit is None else min(limit, len(dataset))
    if cache is not None:
        cache.fill(labels, cache.conditions("test", [None]), limit=size, progress=progress)
    loader = DataLoader(Subset(dataset, range(size)), batch_size=cfg.decode.batch_size, shuffle=False,
                        num_workers=cfg.data.loader_workers, collate_fn=collate)  # fmt: skip
    for batch in tqdm(loader, desc="experts", unit="batch", disable=not progress):
        if batch is not None:
            yield model.encode(to_device(batch, model)), batch["texts"]
