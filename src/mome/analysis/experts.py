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
    return torch.zeros(*topk.shape[:-1], num_experts).scatter_(-1, topk, 1.0)  # [..., E]


def _jaccard(x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Jaccard overlap of top-k sets given as multi-hot rows: [..., n, E], [..., m, E] -> [..., n, m]."""
    shared = x @ y.transpose(-1, -2)  # experts in both top-k sets
    return shared / (2 * k - shared)


PERMUTATIONS = 1000
"""Within-utterance shuffles behind each consistency p-value (the smallest p-value is 1 / 1001)."""


def within_utterance_permutations(routing: Routing, count: int, seed: int = 0) -> torch.Tensor:
    """[count, N] token indices: permutation p puts the routing of token perms[p, t] at token t's position, and
    both tokens share utterance, granularity and kind (only the time moves). Seeded."""
    group = (routing.utterance.long() * (int(routing.combination.max()) + 1) + routing.combination.long()) * len(
        Segment
    ) + routing.segment.long()
    order = torch.argsort(group, stable=True)  # the tokens grouped, in their order
    generator = torch.Generator().manual_seed(seed)
    keys = group.double() + torch.rand(count, len(group), generator=generator, dtype=torch.float64)
    perms = torch.empty(count, len(group), dtype=torch.long)
    perms[:, order] = keys.argsort(dim=1)  # the i-th token of a group gets a random token of the same group
    return perms


@dataclass
class ConsistencySums:
    """Overlap-weighted Jaccard sums of one or more (layer, pair)s, per utterance, and under each permutation."""

    score: torch.Tensor  # [U] float64: sum over overlapping token pairs of overlap (s) x Jaccard
    chance: torch.Tensor  # [U] the mean of that sum over the permutations
    weight: torch.Tensor  # [U] sum of the overlaps (s)
    null: torch.Tensor  # [P] the total score (over utterances) under each permutation

    def __add__(self, other: ConsistencySums) -> ConsistencySums:
        return ConsistencySums(*(getattr(self, f) + getattr(other, f) for f in ("score", "chance", "weight", "null")))

    def summary(self) -> dict[str, Any]:
        """score, chance, excess (their difference) and the permutation p-value; NaN without any overlap."""
        weight, score = float(self.weight.sum()), float(self.score.sum())
        if not weight:
            nan = float("nan")
            return {"score": nan, "chance": nan, "excess": nan, "p_value": nan, "permutations": len(self.null)}
        chance = float(self.chance.sum()) / weight
        at_least = int((self.null >= score - 1e-9 * abs(score)).sum())  # ties count against the score
        return {"score": score / weight, "chance": chance, "excess": score / weight - chance,
                "p_value": (1 + at_least) / (1 + len(self.null)), "permutations": len(self.null)}  # fmt: skip

    def per_utterance(self) -> dict[str, list]:
        """The utterances with overlapping tokens: index, score, chance and weight sums (for the bootstrap)."""
        keep = (self.weight > 0).nonzero().squeeze(1)
        return {"index": keep.tolist(), **{f: [round(float(v), 6) for v in getattr(self, f)[keep]]
                                           for f in ("score", "chance", "weight")}}  # fmt: skip


@dataclass
class _Overlaps:
    """The token pairs of two granularities, one kind, that cover the same speech (the same in every layer)."""

    utterances: torch.Tensor  # [U] utterance ids
    first: torch.Tensor  # [U, L1] token index of the i-th first-granularity token of each utterance; -1: none
    second: torch.Tensor  # [U, L2]
    pairs: torch.Tensor  # [M, 3] (utterance row, rank in `first`, rank in `second`) of each overlapping pair
    weight: torch.Tensor  # [M] float64 seconds of overlap
    rank: torch.Tensor  # [N] each token's rank in its row of `first` or `second`


def _by_utterance(tokens: torch.Tensor, utterance: torch.Tensor, ids: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """[U, L] the tokens of each utterance of `ids` in order, -1 padded; writes each token's column to `rank`."""
    row = torch.searchsorted(ids, utterance[tokens])
    order = torch.argsort(row, stable=True)
    tokens, row = tokens[order], row[order]
    counts = torch.bincount(row, minlength=len(ids))
    column = torch.arange(len(tokens)) - (counts.cumsum(0) - counts)[row]
    table = torch.full((len(ids), int(counts.max())), -1, dtype=torch.long)
    table[row, column] = tokens
    rank[tokens] = column
    return table


def _overlaps(routing: Routing, first: int, second: int, kind: Segment) -> _Overlaps | None:
    a = ((routing.combination == first) & (routing.segment == kind)).nonzero().squeeze(1)
    b = ((routing.combination == second) & (routing.segment == kind)).nonzero().squeeze(1)
    if not len(a) or not len(b):
        return None
    ids = routing.utterance[torch.cat([a, b])].unique()
    rank = torch.full_like(routing.combination, -1, dtype=torch.long)
    table_a, table_b = (_by_utterance(t, routing.utterance, ids, rank) for t in (a, b))

    def spans(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        real = table >= 0
        pick = table.clamp_min(0)
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        return torch.where(real, routing.start[pick].double(), nan), torch.where(real, routing.end[pick].double(), nan)

    (start_a, end_a), (start_b, end_b) = spans(table_a), spans(table_b)
    overlap = torch.minimum(end_a[:, :, None], end_b[:, None, :]) - torch.maximum(
        start_a[:, :, None], start_b[:, None, :]
    )
    overlap = overlap.nan_to_num(0.0).clamp_min(0.0)  # [U, L1, L2] seconds; 0 for padding
    pairs = overlap.nonzero()
    if not len(pairs):
        return None
    return _Overlaps(ids, table_a, table_b, pairs, overlap[tuple(pairs.T)], rank)


def _layer_sums(routing: Routing, ov: _Overlaps, perms: torch.Tensor, num_experts: int, num_utterances: int,
                chunk_elements: int = 4_000_000) -> ConsistencySums:  # fmt: skip
    """One layer's sums for one pair (`_overlaps`), observed and under every permutation of `perms`."""
    k = routing.topk.shape[1]
    hot = _multi_hot(routing.topk, num_experts).double()  # [N, E]
    sets = [torch.where((t >= 0)[..., None], hot[t.clamp_min(0)], 0.0) for t in (ov.first, ov.second)]
    jaccard = _jaccard(*sets, k).flatten()  # [U * L1 * L2]
    rows, length_a, length_b = len(ov.utterances), ov.first.shape[1], ov.second.shape[1]
    u, i, j = ov.pairs.T
    token_a, token_b = ov.first[u, i], ov.second[u, j]  # [M]

    def sums(index_a: torch.Tensor, index_b: torch.Tensor) -> torch.Tensor:  # ranks [..., M] -> [..., U]
        values = jaccard[(u * length_a + index_a) * length_b + index_b] * ov.weight
        return values.new_zeros(*values.shape[:-1], rows).index_add_(-1, u, values)

    score = sums(i, j)
    null_rows = []
    step = max(1, chunk_elements // len(u))
    for p in range(0, len(perms), step):
        block = perms[p : p + step]
        null_rows.append(sums(ov.rank[block[:, token_a]], ov.rank[block[:, token_b]]))  # [chunk, U]
    null = torch.cat(null_rows) if null_rows else score.new_zeros(0, rows)

    def spread(values: torch.Tensor) -> torch.Tensor:  # per utterance row -> per utterance id
        return values.new_zeros(num_utterances).index_add_(0, ov.utterances.long(), values)

    weight = score.new_zeros(rows).index_add_(0, u, ov.weight)
    chance = null.mean(0) if len(null) else torch.full_like(score, float("nan"))
    return ConsistencySums(spread(score), spread(chance), spread(weight), null.sum(1))


def consistency(routings: list[Routing], first: int, second: int, kind: Segment, num_experts: int,
                perms: torch.Tensor) -> list[ConsistencySums] | None:  # fmt: skip
    """Per layer of `routings` (one token layout), the sums of granularities `first` and `second` on tokens of
    `kind` (module docstring) under the permutations `perms` (`within_utterance_permutations`); None when no
    two such tokens overlap in time."""
    ov = _overlaps(routings[0], first, second, kind)
    if ov is None:
        return None
    num_utterances = int(routings[0].utterance.max()) + 1
    return [_layer_sums(r, ov, perms, num_experts, num_utterances) for r in routings]


def chance_across_utterances(routing: Routing, first: int, second: int, kind: Segment, num_experts: int,
                             seed: int = 0) -> float:  # fmt: skip
    """The consistency with the second granularity's sets shuffled across every utterance (one seeded
    permutation): what uneven usage and utterance preferences give together; NaN without overlaps."""
    a = ((routing.combination == first) & (routing.segment == kind)).nonzero().squeeze(1)
    b = ((routing.combination == second) & (routing.segment == kind)).nonzero().squeeze(1)
    if not len(a) or not len(b):
        return float("nan")
    k = routing.topk.shape[1]
    sets_a = _multi_hot(routing.topk[a], num_experts)
    shuffled = _multi_hot(routing.topk[b], num_experts)[
        torch.randperm(len(b), generator=torch.Generator().manual_seed(seed))
    ]
    chance = weight = 0.0
    for u in routing.utterance[a].unique():
        in_a, in_b = routing.utterance[a] == u, routing.utterance[b] == u
        latest_start = torch.maximum(routing.start[a][in_a, None], routing.start[b][None, in_b])
        earliest_end = torch.minimum(routing.end[a][in_a, None], routing.end[b][None, in_b])
        overlap = (earliest_end - latest_start).clamp_min(0)  # [n_a, n_b] seconds
        chance += float((overlap * _jaccard(sets_a[in_a], shuffled[in_b], k)).sum())
        weight += float(overlap.sum())
    return chance / weight if weight else float("nan")


# ------------------------------------------------------------------------------------------ report
def analyse(routings: list[Routing], combos: list[Combination], num_experts: int,
            permutations: int = PERMUTATIONS, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Usage, load balance and consistency of every layer, as the JSON that `mome experts` writes."""
    keys = [combination_key(c) for c in combos]
    perms = within_utterance_permutations(routings[0], permutations, seed)  # one shuffle for every layer and pair
    layers = [_usage_entry(routing, keys, num_experts) for routing in routings]
    totals: dict[str, ConsistencySums] = {}
    across: dict[str, list[tuple[float, float]]] = {}  # (chance across utterances, weight) per layer and pair
    for (i, ci), (j, cj) in itertools.combinations(enumerate(combos), 2):
        for name, kind, rate in (("audio", Segment.AUDIO, 0), ("video", Segment.VIDEO, 1)):
            if not (ci[rate] and cj[rate] and ci[rate] != cj[rate]):  # the same stretch at two rates only
                continue
            per_layer = consistency(routings, i, j, kind, num_experts, perms)
            for layer, routing, sums in zip(layers, routings, per_layer or [None] * len(routings)):
                summary = sums.summary() if sums is not None else _NO_OVERLAP.summary()
                shuffled = chance_across_utterances(routing, i, j, kind, num_experts, seed)
                layer["consistency"].append({"first": keys[i], "second": keys[j], "modality": name, **summary,
                                             "chance_across_utterances": shuffled})  # fmt: skip
                if sums is not None:
                    totals[name] = totals[name] + sums if name in totals else sums
                    across.setdefault(name, []).append((shuffled, float(sums.weight.sum())))
    return {"combinations": keys, "num_experts": num_experts, "top_k": int(routings[0].topk.shape[1]),
            "layers": layers, "consistency_mean": _by_modality(totals, across)}  # fmt: skip


_NO_OVERLAP = ConsistencySums(*[torch.zeros(0, dtype=torch.float64)] * 4)


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


def _by_modality(totals: dict[str, ConsistencySums], across: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    """Per modality: every layer and pair pooled (module docstring), with the per-utterance sums."""
    out = {}
    for modality, sums in totals.items():
        weight = sum(w for _, w in across[modality])
        out[modality] = {**sums.summary(), "chance_across_utterances": sum(c * w for c, w in across[modality]) / weight,
                         "utterances": sums.per_utterance()}  # fmt: skip
    return out


def markdown(result: dict[str, Any], title: str) -> str:
    lines = [f"# Expert usage of {title}", "",
             f"{result['num_experts']} routed experts, top-{result['top_k']}. Consistency: overlap-weighted "
             "Jaccard of the top-k sets of tokens that cover the same speech at two granularities (1 = the same "
             "experts). Chance: the same score with each token's set moved to a random moment of its utterance "
             "(same granularity and modality), and p the share of such shuffles scoring at least as high. Across "
             "utterances: sets shuffled over every utterance, which also counts utterance preferences.", ""]  # fmt: skip
    for modality, v in result["consistency_mean"].items():
        lines.append(f"- {modality}: consistency {v['score']:.3f}, chance {v['chance']:.3f} "
                     f"(excess {v['excess']:+.3f}, p = {v['p_value']:.3g}, {v['permutations']} shuffles within "
                     f"utterances); chance across utterances {v['chance_across_utterances']:.3f}. Every layer and "
                     "pair pooled")  # fmt: skip
    lines += ["", "| layer | granularity | load balance CV | tokens |", "|---:|---|---:|---:|"]
    for layer in result["layers"]:
        for key in result["combinations"]:
            lines.append(f"| {layer['layer']} | {key} | {layer['load_balance_cv'][key]:.3f} | {layer['tokens'][key]} |")
    lines += ["", "| layer | first | second | modality | consistency | chance | p | across utterances |",
              "|---:|---|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for layer in result["layers"]:
        for p in layer["consistency"]:
            lines.append(f"| {layer['layer']} | {p['first']} | {p['second']} | {p['modality']} | {p['score']:.3f} "
                         f"| {p['chance']:.3f} | {p['p_value']:.3g} | {p['chance_across_utterances']:.3f} |")  # fmt: skip
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


def untrained_model(cfg: Any, device: str | torch.device | None = None) -> AVSRModel:
    """The model of config `cfg` as its training starts (seeded with `train.seed`, no step taken): the same
    frozen encoders and LLM, fresh projectors and routers. Its `expert_usage` is the step-0 control."""
    from mome.models.avsr import build_model

    torch.manual_seed(cfg.train.seed)
    return build_model(cfg.model, device=device).eval()


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
