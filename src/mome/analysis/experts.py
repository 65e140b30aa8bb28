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
by the overlap in seconds; 1 means the same experts for the same speech.

Chance, and whether the score beats it: a permutation test that keeps everything but the time. Each of
`permutations` seeded shuffles moves every token's top-k set to a random position of the same utterance,
granularity and modality (the same shuffle for every layer and pair), and the score is computed again. Chance
is the mean shuffled score and the p-value (1 + shuffles scoring at least as high) / (1 + shuffles). Routing
that depends on the utterance (its speaker, its words) but not on the moment scores at chance this way. The
older control, sets shuffled across utterances (`chance_across_utterances`), counts such utterance preferences
as consistency; it is reported beside, not tested against.

Per modality (`consistency_mean`), the score pools every layer and pair (overlap-weighted: sum of weighted
Jaccards / sum of overlaps), and so do chance and the p-value; audio and video are never averaged. The
per-utterance sums (`utterances`) let `mome.evaluation.bootstrap` draw intervals over utterances and seeds.
A step-0 control (`untrained_model`: the same config freshly initialised) tells what the frozen model and the
rates give before any router is trained.
"""

from __future__ import annotations

import itertools
import json
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mome.adapters.context import AdapterContext, Segment, adapter_context
from mome.config import Combination, Config, ModelConfig, combination_key
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
        return Routing(
            parts[0].layer,
            *(
                torch.cat([getattr(p, f) for p in parts])
                for f in ("topk", "combination", "segment", "utterance", "start", "end")
            ),
        )


def _spans(seq_segments: torch.Tensor, rates: torch.Tensor, fps: float, kind: Segment) -> tuple:
    """Start and end (s) of every position of `kind` from its order in its row: [R, L] each, NaN elsewhere."""
    is_kind = seq_segments == kind
    order = is_kind.long().cumsum(1) - 1  # [R, L] the i-th token of this kind in its row
    seconds = rates.view(-1, 1).float() / fps  # [R, 1] span of one token
    start = torch.where(is_kind, order * seconds, torch.nan)
    return start, start + seconds


@torch.no_grad()
def route_batch(
    model: AVSRModel,
    features: Features,
    texts: list[str],
    combos: list[Combination],
    first_utterance: int,
    frame_rates: tuple[float, float],
) -> list[Routing]:
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
    for kind, rates, fps in (
        (Segment.AUDIO, [c[0] for c in combos], frame_rates[0]),
        (Segment.VIDEO, [c[1] for c in combos], frame_rates[1]),
    ):
        if any(rates):
            present = torch.tensor([r or 0 for r in rates])  # 0: a row without this modality (unified model)
            s, e = _spans(seq.segments.cpu(), present.repeat_interleave(batch), fps, kind)
            start, end = torch.where(s.isnan(), start, s), torch.where(e.isnan(), end, e)
    rows = mask.cpu().nonzero(as_tuple=True)  # row-major: the order MoME records real tokens in
    utterance = first_utterance + rows[0] % batch
    fields = (local[rows[0]], seq.segments.cpu()[rows], utterance, start[rows], end[rows])
    return [Routing(r.layer, r.topk_index.cpu(), *fields) for r in sorted(ctx.records, key=lambda r: r.layer)]


def collect(
    model: AVSRModel,
    batches: Iterable[tuple[Features, list[str]]],
    combos: list[Combination],
    frame_rates: tuple[float, float],
) -> list[Routing]:
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
    return torch.zeros(*topk.shape[:-1], num_experts).scatter_(-1, topk, 1.0)  # [..., E]


def _jaccard(x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Jaccard overlap of top-k sets given as multi-hot rows: [..., n, E], [..., m, E] -> [..., n, m]."""
    shared = x @ y.transpose(-1, -2)  # experts in both top-k sets
    return shared / (2 * k - shared)


PERMUTATIONS = 1000
"""Within-utterance shuffles behind each consistency p-value (the smallest p-value is 1 / 1001)."""
SHUFFLE_CHUNK = 100
"""Shuffles drawn and scored together (memory: SHUFFLE_CHUNK x utterances x tokens per utterance)."""


@dataclass
class ConsistencySums:
    """Overlap-weighted Jaccard sums of one or more (layer, pair)s, per utterance, and under each shuffle."""

    score: torch.Tensor  # [U] float64: sum over overlapping token pairs of overlap (s) x Jaccard
    chance: torch.Tensor  # [U] the mean of that sum over the within-utterance shuffles
    weight: torch.Tensor  # [U] sum of the overlaps (s)
    null: torch.Tensor  # [P] the total score (over utterances) under each shuffle
    across: torch.Tensor  # [U] the sum with the second granularity's sets shuffled across all utterances

    def __add__(self, other: ConsistencySums) -> ConsistencySums:
        fields = ("score", "chance", "weight", "null", "across")
        return ConsistencySums(*(getattr(self, f) + getattr(other, f) for f in fields))

    def summary(self) -> dict[str, Any]:
        """score, chance, excess (their difference), the permutation p-value and the chance across utterances;
        NaN without any overlap."""
        weight, score = float(self.weight.sum()), float(self.score.sum())
        if not weight:
            return {
                "score": math.nan,
                "chance": math.nan,
                "excess": math.nan,
                "p_value": math.nan,
                "permutations": len(self.null),
                "chance_across_utterances": math.nan,
            }
        chance = float(self.chance.sum()) / weight
        at_least = int((self.null >= score - 1e-9 * abs(score)).sum())  # ties count against the score
        return {
            "score": score / weight,
            "chance": chance,
            "excess": score / weight - chance,
            "p_value": (1 + at_least) / (1 + len(self.null)),
            "permutations": len(self.null),
            "chance_across_utterances": float(self.across.sum()) / weight,
        }

    def per_utterance(self) -> dict[str, list]:
        """The utterances with overlapping tokens: index, score, chance and weight sums (for the bootstrap)."""
        keep = (self.weight > 0).nonzero().squeeze(1)
        return {
            "index": keep.tolist(),
            **{f: [round(float(v), 6) for v in getattr(self, f)[keep]] for f in ("score", "chance", "weight")},
        }


@dataclass
class _Group:
    """The tokens of one granularity and kind, by utterance (row = utterance id)."""

    key: tuple[int, int]  # (granularity, kind): the shuffles' seed
    table: torch.Tensor  # [utterances, L] token indices in time order, -1 padded

    def shuffles(self, chunk: int, count: int, seed: int) -> torch.Tensor:
        """[count, utterances, L]: in shuffle p, position i of utterance u takes the routing of its token number
        out[p, u, i] (the same utterance, granularity and kind; only the time moves). Seeded by the group, so
        every layer and pair sees the same shuffles of it."""
        generator = torch.Generator().manual_seed(zlib.crc32(repr((seed, *self.key, chunk)).encode()))
        keys = torch.rand(count, *self.table.shape, generator=generator, dtype=torch.float64)
        return keys.masked_fill(self.table < 0, math.inf).argsort(dim=-1)  # real tokens first, in random order


def _group(routing: Routing, combination: int, kind: Segment, utterances: int) -> _Group | None:
    tokens = ((routing.combination == combination) & (routing.segment == kind)).nonzero().squeeze(1)
    if not len(tokens):
        return None
    row = routing.utterance[tokens].long()
    order = torch.argsort(row, stable=True)  # tokens are recorded in time order within an utterance
    tokens, row = tokens[order], row[order]
    counts = torch.bincount(row, minlength=utterances)
    column = torch.arange(len(tokens)) - (counts.cumsum(0) - counts)[row]
    table = torch.full((utterances, int(counts.max())), -1, dtype=torch.long)
    table[row, column] = tokens
    return _Group((combination, int(kind)), table)


def _overlaps(routing: Routing, first: _Group, second: _Group) -> tuple[torch.Tensor, torch.Tensor]:
    """([M, 3] (utterance, position in `first`, position in `second`), [M] seconds) of the token pairs that
    cover the same speech."""

    def spans(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        real, pick = table >= 0, table.clamp_min(0)
        return (
            torch.where(real, routing.start[pick].double(), math.nan),
            torch.where(real, routing.end[pick].double(), math.nan),
        )

    (start_a, end_a), (start_b, end_b) = spans(first.table), spans(second.table)
    latest_start = torch.maximum(start_a[:, :, None], start_b[:, None, :])
    overlap = (torch.minimum(end_a[:, :, None], end_b[:, None, :]) - latest_start).nan_to_num(0.0).clamp_min(0.0)
    pairs = overlap.nonzero()  # [M, 3]
    return pairs, overlap[tuple(pairs.T)]


def consistency(
    routings: list[Routing],
    first: int,
    second: int,
    kind: Segment,
    num_experts: int,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
) -> list[ConsistencySums] | None:
    """Per layer of `routings` (one token layout), the sums of granularities `first` and `second` on tokens of
    `kind` (module docstring), observed and under `permutations` seeded within-utterance shuffles; None when no
    two such tokens overlap in time."""
    utterances = int(routings[0].utterance.max()) + 1
    groups = _group(routings[0], first, kind, utterances), _group(routings[0], second, kind, utterances)
    if None in groups:
        return None
    a, b = groups
    pairs, weight = _overlaps(routings[0], a, b)
    if not len(pairs):
        return None
    u, i, j = pairs.T
    token_a, token_b = a.table[u, i], b.table[u, j]
    length_a, length_b = a.table.shape[1], b.table.shape[1]
    k = routings[0].topk.shape[1]
    hot = [_multi_hot(r.topk, num_experts).double() for r in routings]  # [N, E] per layer
    blocks = [_jaccard(h[a.table.clamp_min(0)], h[b.table.clamp_min(0)], k).flatten() for h in hot]  # [U*La*Lb]
    observed = [block[(u * length_a + i) * length_b + j] * weight for block in blocks]  # [M]
    real_b = b.table[b.table >= 0]
    elsewhere = torch.full_like(routings[0].combination, -1, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    elsewhere[real_b] = real_b[torch.randperm(len(real_b), generator=generator)]  # any utterance's token
    across = [_jaccard(h[token_a, None], h[elsewhere[token_b], None], k).view(-1) * weight for h in hot]
    null = [weight.new_zeros(permutations) for _ in routings]
    chance = [torch.zeros_like(weight) for _ in routings]
    for chunk, begin in enumerate(range(0, permutations, SHUFFLE_CHUNK)):
        count = min(SHUFFLE_CHUNK, permutations - begin)
        moved_a = a.shuffles(chunk, count, seed)[:, u, i]  # [count, M]
        moved_b = b.shuffles(chunk, count, seed)[:, u, j]
        index = (u * length_a + moved_a) * length_b + moved_b
        for layer, block in enumerate(blocks):
            moved = block[index]  # [count, M] Jaccard of each overlapping pair's shuffled sets
            null[layer][begin : begin + count] = moved @ weight
            chance[layer] += moved.sum(0) * weight / permutations

    def by_utterance(values: torch.Tensor) -> torch.Tensor:  # [M] -> [utterances]
        return values.new_zeros(utterances).index_add_(0, u, values)

    return [
        ConsistencySums(by_utterance(o), by_utterance(c), by_utterance(weight), n, by_utterance(x))
        for o, c, n, x in zip(observed, chance, null, across)
    ]


# ------------------------------------------------------------------------------------------ report
def analyse(
    routings: list[Routing],
    combos: list[Combination],
    num_experts: int,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
) -> dict[str, Any]:
    """Usage, load balance and consistency of every layer, as the JSON that `mome experts` writes."""
    keys = [combination_key(c) for c in combos]
    layers = [_usage_entry(routing, keys, num_experts) for routing in routings]
    totals: dict[str, ConsistencySums] = {}
    for (i, ci), (j, cj) in itertools.combinations(enumerate(combos), 2):
        for name, kind, rate in (("audio", Segment.AUDIO, 0), ("video", Segment.VIDEO, 1)):
            if not (ci[rate] and cj[rate] and ci[rate] != cj[rate]):  # the same stretch at two rates only
                continue
            per_layer = consistency(routings, i, j, kind, num_experts, permutations, seed)
            for layer, sums in zip(layers, per_layer or [_NO_OVERLAP] * len(layers)):
                layer["consistency"].append({"first": keys[i], "second": keys[j], "modality": name, **sums.summary()})
                if per_layer is not None:
                    totals[name] = totals[name] + sums if name in totals else sums
    return {
        "combinations": keys,
        "num_experts": num_experts,
        "top_k": int(routings[0].topk.shape[1]),
        "layers": layers,
        "consistency_mean": {
            m: {**t.summary(), "utterances": t.per_utterance()} for m, t in totals.items() if t.weight.sum() > 0
        },
    }


_NO_OVERLAP = ConsistencySums(*[torch.zeros(0, dtype=torch.float64)] * 5)


def _usage_entry(routing: Routing, keys: list[str], num_experts: int) -> dict[str, Any]:
    """One layer's token counts, usage shares and load balance per granularity (consistency: filled later)."""
    share = usage(routing, num_experts, len(keys))
    return {
        "layer": routing.layer,
        "tokens": {key: int((routing.combination == c).sum()) for c, key in enumerate(keys)},
        "share": {key: {kind: _floats(share[c, k]) for k, kind in enumerate(KINDS)} for c, key in enumerate(keys)},
        "load_balance_cv": {key: load_balance_cv(routing, num_experts, c) for c, key in enumerate(keys)},
        "consistency": [],
    }


def _floats(values: torch.Tensor) -> list[float | None]:
    return [None if v != v else round(float(v), 5) for v in values]


def markdown(result: dict[str, Any], title: str) -> str:
    lines = [
        f"# Expert usage of {title}",
        "",
        f"{result['num_experts']} routed experts, top-{result['top_k']}. Consistency: overlap-weighted "
        "Jaccard of the top-k sets of tokens that cover the same speech at two granularities (1 = the same "
        "experts). Chance: the same score with each token's set moved to a random moment of its utterance "
        "(same granularity and modality), and p the share of such shuffles scoring at least as high. Across "
        "utterances: sets shuffled over every utterance, which also counts utterance preferences.",
        "",
    ]
    for modality, v in result["consistency_mean"].items():
        lines.append(
            f"- {modality}: consistency {v['score']:.3f}, chance {v['chance']:.3f} "
            f"(excess {v['excess']:+.3f}, p = {v['p_value']:.3g}, {v['permutations']} shuffles within "
            f"utterances); chance across utterances {v['chance_across_utterances']:.3f}. Every layer and "
            "pair pooled"
        )
    lines += ["", "| layer | granularity | load balance CV | tokens |", "|---:|---|---:|---:|"]
    for layer in result["layers"]:
        for key in result["combinations"]:
            lines.append(f"| {layer['layer']} | {key} | {layer['load_balance_cv'][key]:.3f} | {layer['tokens'][key]} |")
    lines += [
        "",
        "| layer | first | second | modality | consistency | chance | p | across utterances |",
        "|---:|---|---|---|---:|---:|---:|---:|",
    ]
    for layer in result["layers"]:
        for p in layer["consistency"]:
            lines.append(
                f"| {layer['layer']} | {p['first']} | {p['second']} | {p['modality']} | {p['score']:.3f} "
                f"| {p['chance']:.3f} | {p['p_value']:.3g} | {p['chance_across_utterances']:.3f} |"
            )
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
def has_router(cfg: ModelConfig) -> bool:
    """Whether a model config (`ModelConfig`) routes tokens: MoME with routed experts."""
    return cfg.adapter.kind == "mome" and cfg.adapter.mome.num_routed_experts > 0


def untrained_model(cfg: Config, device: str | torch.device | None = None) -> AVSRModel:
    """The model of config `cfg` as its training starts (seeded with `train.seed`, no step taken): the same
    frozen encoders and LLM, fresh projectors and routers. Its `expert_usage` is the step-0 control."""
    from mome.models.avsr import build_model

    torch.manual_seed(cfg.train.seed)
    return build_model(cfg.model, device=device).eval()


def expert_usage(
    model: AVSRModel,
    cfg: Config,
    labels: Path,
    root: Path,
    combos: list[Combination],
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """`analyse` of the clean utterances of `labels` at `combos`: what `mome experts` and the demo report."""
    from mome.evaluation.evaluate import frame_rates

    routings = collect(
        model.eval(), labelled_batches(model, cfg, labels, root, limit, progress), combos, frame_rates(model)
    )
    return analyse(routings, combos, cfg.model.adapter.mome.num_routed_experts)


def labelled_batches(
    model: AVSRModel, cfg: Config, labels: Path, root: Path, limit: int | None, progress: bool = True
) -> Iterable[tuple[Features, list[str]]]:
    """(features, transcripts) of the clean utterances of `labels` in file order, as `mome eval` reads them
    (cached features when `data.feature_cache` is set); unreadable utterances are left out."""
    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    from mome.config import absolute_path
    from mome.data.collate import collate, to_device
    from mome.evaluation.evaluate import feature_cache
    from mome.features.dataset import make_dataset

    root = Path(absolute_path(str(root)))
    labels = Path(absolute_path(str(labels), root))
    cache = feature_cache(model, cfg, root)
    dataset = make_dataset(cfg, labels, root, False, cache, eval_snr=None)
    size = len(dataset) if limit is None else min(limit, len(dataset))
    if cache is not None:
        cache.fill(labels, cache.conditions("test", [None]), limit=size, progress=progress)
    loader = DataLoader(
        Subset(dataset, range(size)),
        batch_size=cfg.decode.batch_size,
        shuffle=False,
        num_workers=cfg.data.loader_workers,
        collate_fn=collate,
    )
    for batch in tqdm(loader, desc="experts", unit="batch", disable=not progress):
        if batch is not None:
            yield model.encode(to_device(batch, next(model.parameters()).device)), batch["texts"]
