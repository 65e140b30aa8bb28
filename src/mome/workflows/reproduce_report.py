"""The report of `mome reproduce`: `<out>/README.md`, `<out>/results.json` and plots.

    {"methods": [{"key", "name", "family", "adapter_kind", "runs", "seeds",      # `MethodResult`
                  "active_params", "stored_params", "paper_active_params", "paper_stored_params",
                  "seconds_per_step", "wer": {"a4_v2": {"clean": 30.1, "0": 41.2}, ...},        % over seeds
                  "wer_by_seed": {"0": {...}, ...}, "decode_seconds_per_utterance": {"a4_v2": 0.04, ...},
                  "curves": {"<run>": {"stop": {"reason": "plateau" | "cap", "step", "detail"}, "cap",
                                       "curve": [{"step", "wer", "rates": {"a4_v2": 41.0, ...}}, ...]}, ...}}, ...],
     "claims": [{"claim": "...", "verdict": "holds" | "does not hold" | "inconclusive", "evidence": "...",
                 "differences": [{"what", "estimate", "low", "high", "verdict"}, ...]}, ...],
     "consistency": {"<run>": {"audio": {"score", "chance", "excess", "p_value", ...}, "video": {...}}, ...},
     "consistency_step0": {...the same, of each routed run's config freshly initialised},
     "tokens_per_second": {"a4_v2": 25.0, ...}, "settings": {...}, "machine": "...", "timings": {...}}

Each run's validation curve is the mean greedy WER of its rate combinations on the validation split, every
`--plateau-every` steps (`train.plateau`, `<run>/curve.json`); the run ends where the curve stopped improving or
at the cap, and is evaluated there.

"Active" parameters are those of the adapters one token uses at one granularity (the paper's Table 1 column:
top-k routed + shared experts + router for MoME, the shared and/or that granularity's LoRA for the baselines);
"stored" are all trainable parameters (adapters and projectors), as `mome params` counts them.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from mome.config import load_config
from mome.evaluation import plots
from mome.evaluation.bootstrap import (
    DRAWS,
    Bootstrap,
    Interval,
    Samples,
    Side,
    Verdict,
    combine,
    read_counts,
    wer_samples,
)
from mome.evaluation.results import DecodeTimes, EvaluationResult, WerPercent
from mome.io import atomic_write_text, read_json
from mome.training.plateau import read_curve
from mome.workflows.pipeline import machine, task_overrides
from mome.workflows.reproduce_plan import NO_FLAG, PAPER_PRESET, QUICK, Job, Method, ReproduceOptions

SNR_CLEAN, SNR_NOISY = "clean", "0"
Cell = tuple[str, str, str]
"""(method key, rate combination, SNR): one WER of the bootstrap."""
FIRST, LAST = "a4_v2", "a16_v5"
"""The finest and the coarsest rate combinations the paper's claims compare."""


@dataclass
class MethodResult:
    """One method's row of the report (`results.json`'s `methods`): its runs' WER, the mean over seeds, its
    parameter counts, seconds per step, decode times and validation curves."""

    key: str
    name: str
    family: str
    adapter_kind: str = ""
    runs: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    active_params: int = 0
    stored_params: int = 0
    paper_active_params: int = 0
    paper_stored_params: int = 0
    seconds_per_step: float | None = None
    wer: WerPercent = field(default_factory=dict)
    wer_by_seed: dict[str, WerPercent] = field(default_factory=dict)
    decode_seconds_per_utterance: dict[str, float] = field(default_factory=dict)
    tokens_per_second: dict[str, float] = field(default_factory=dict)
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Run -> {"stop", "cap", "rule", "curve"} (`_curve`)."""

    def cell(self, combo: str, snr: str) -> float | None:
        return self.wer.get(combo, {}).get(snr)


@dataclass(frozen=True)
class Baseline:
    """A baseline of claim 2: the WER at FIRST is `first`'s, at LAST `last`'s (Llama-AVSR trains one model per
    rate combination; every other baseline is one method)."""

    name: str
    first: MethodResult
    last: MethodResult

    @classmethod
    def of(cls, method: MethodResult) -> Baseline:
        return cls(method.name, method, method)

    def degradation(self, snr: str = SNR_CLEAN) -> float | None:
        first, last = self.first.cell(FIRST, snr), self.last.cell(LAST, snr)
        return None if first is None or last is None else last - first


def _seconds_per_step(run_dir: Path) -> float | None:
    """Mean logged seconds per step, leaving out the first (warm-up) step."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None
    with path.open() as f:
        rows = [(int(r["step"]), float(r["s_per_step"])) for r in csv.DictReader(f) if r.get("s_per_step")]
    values = [s for step, s in rows if step > 1] or [s for _, s in rows]  # a run of a few steps: all it has
    return round(statistics.mean(values), 3) if values else None


def _mean_over_seeds(tables: list[WerPercent]) -> WerPercent:
    out: WerPercent = {}
    for combo, cells in tables[0].items():
        out[combo] = {}
        for snr in cells:
            values = [t[combo][snr] for t in tables if t.get(combo, {}).get(snr) is not None]
            out[combo][snr] = round(statistics.mean(values), 2) if len(values) == len(tables) else None
    return out


def _params(preset: str, method: Method) -> tuple[int, int]:
    from mome.analysis.params import parameter_report

    report = parameter_report(load_config(preset, [*task_overrides(method.task), *method.overrides]))
    return report.active_adapters, report.trainable


def method_results(opts: ReproduceOptions, jobs: list[Job]) -> list[MethodResult]:
    """One entry per method: its runs' WER (mean over seeds), parameters, seconds per step and decode times."""
    by_method: dict[str, list[Job]] = {}
    for job in jobs:
        by_method.setdefault(job.method.key, []).append(job)
    methods = []
    for group in by_method.values():
        method = group[0].method
        found = [read_json(opts.out / "eval" / job.run / "results.json") for job in group]
        if not all(found):
            continue
        evals = [EvaluationResult.from_json(res) for res in found]
        tables = [res.wer_percent() for res in evals]
        decode = DecodeTimes.read(opts.out / "eval" / group[0].run / "decode_times.json").seconds_per_utterance
        steps = [s for job in group if (s := _seconds_per_step(opts.out / "runs" / job.run)) is not None]
        active, stored = _params(opts.preset, method)
        paper_active, paper_stored = _params(PAPER_PRESET, method)
        methods.append(
            MethodResult(
                key=method.key,
                name=method.label,
                family=method.family,
                adapter_kind=load_config(opts.preset, list(method.overrides)).model.adapter.kind,
                runs=[job.run for job in group],
                seeds=[job.seed for job in group],
                active_params=active,
                stored_params=stored,
                paper_active_params=paper_active,
                paper_stored_params=paper_stored,
                seconds_per_step=round(statistics.mean(steps), 3) if steps else None,
                wer=_mean_over_seeds(tables),
                wer_by_seed={str(job.seed): table for job, table in zip(group, tables)},
                decode_seconds_per_utterance={k: round(v, 4) for k, v in decode.items()},
                tokens_per_second=evals[0].tokens_per_second(),
                curves={job.run: _curve(opts.out / "runs" / job.run) for job in group},
            )
        )
    return methods


def _curve(run_dir: Path) -> dict[str, Any]:
    """A run's validation curve and why it stopped (`<run>/curve.json`); empty lists for a run without one."""
    data = read_curve(run_dir)
    return {
        "stop": data.get("stop"),
        "cap": data.get("cap"),
        "rule": data.get("plateau"),
        "curve": data.get("curve", []),
    }


# ----------------------------------------------------------------------------------------------------- cells


def wer_cells(opts: ReproduceOptions, jobs: list[Job]) -> dict[Cell, Samples]:
    """(method key, rate combination, SNR) -> the per-seed, per-utterance word errors of every evaluated method,
    from its runs' hypotheses.jsonl, over the test utterances of the first one (every run decodes the same)."""
    by_method: dict[str, list[Job]] = {}
    for job in jobs:
        by_method.setdefault(job.method.key, []).append(job)
    runs = {}
    for key, group in by_method.items():
        paths = [opts.out / "eval" / job.run / "hypotheses.jsonl" for job in group]
        if all(p.is_file() for p in paths):
            runs[key] = [read_counts(p) for p in paths]
    if not runs:
        return {}
    utterances = list(next(iter(next(iter(runs.values()))[0].values())))  # file order
    cells = {}
    for key, counts in runs.items():
        for combo, snr in counts[0]:
            if (samples := wer_samples(key, counts, combo, snr, utterances)) is not None:
                cells[(key, combo, snr)] = samples
    return cells


def consistency_cells(experts: dict[str, list[dict[str, Any]]], modality: str) -> dict[str, Samples]:
    """Router kind -> its runs' consistency above chance per utterance (`analysis.experts`) at `modality`: the
    numerator is score - chance, the denominator the overlap (utterances without one in a run count 0)."""
    sums = {
        kind: [e["consistency_mean"].get(modality, {}).get("utterances") for e in runs]
        for kind, runs in experts.items()
        if runs
    }
    sums = {kind: runs for kind, runs in sums.items() if all(runs)}
    index = sorted({i for runs in sums.values() for u in runs for i in u["index"]})
    position = {i: n for n, i in enumerate(index)}
    cells = {}
    for kind, runs in sums.items():
        excess, weight = np.zeros((len(runs), len(index))), np.zeros((len(runs), len(index)))
        for r, u in enumerate(runs):
            at = [position[i] for i in u["index"]]
            excess[r, at] = np.subtract(u["score"], u["chance"])
            weight[r, at] = u["weight"]
        cells[kind] = Samples(excess, weight, kind)
    return cells


# ----------------------------------------------------------------------------------------------------- claims


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


@dataclass(frozen=True)
class Difference:
    """One difference a claim rests on (`results.json`'s `differences`): its estimate and 95% interval, None
    without the cells it needs, and its verdict."""

    what: str
    estimate: float | None
    low: float | None
    high: float | None
    verdict: Verdict

    def interval_text(self, digits: int = 1) -> str:
        if self.estimate is None or self.low is None or self.high is None:
            return "no per-utterance counts"
        return Interval(self.estimate, self.low, self.high).text(digits)


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims with its verdict, the evidence in words and the differences it rests on."""

    claim: str
    verdict: Verdict
    evidence: str
    differences: list[Difference]


def _difference(
    boot: Bootstrap | None, what: str, terms: dict[Any, float], side: Side, scale: float = 100.0
) -> Difference:
    """One difference (times `scale`: WER points by default), `inconclusive` without the cells it needs."""
    try:
        interval = boot.interval(terms).scaled(scale) if boot is not None else None
    except KeyError:
        interval = None
    if interval is None:
        return Difference(what, None, None, None, "inconclusive")
    estimate, low, high = (round(v, 4) for v in (interval.estimate, interval.low, interval.high))
    return Difference(what, estimate, low, high, interval.verdict(side))


def _claim(text: str, differences: list[Difference], evidence: list[str], premise: bool = True) -> Claim:
    """A claim holds when every difference it rests on does (and its premise is true), does not hold when one
    goes the other way (or the premise is false), and is inconclusive otherwise."""
    verdict = combine(d.verdict for d in differences) if premise else "does not hold"
    return Claim(text, verdict, "; ".join(evidence), differences)


def _below_mtsk(
    mome: MethodResult, mtsk: list[MethodResult], boot: Bootstrap | None, name: str
) -> tuple[list[Difference], list[str]]:
    """`mome`'s clean WER minus each MTSK variant's at each of its rate combinations: the differences, and one
    evidence line per combination with `mome` called `name`."""
    differences, evidence = [], []
    for combo in mome.wer:
        parts = []
        for m in mtsk:
            terms = {(mome.key, combo, SNR_CLEAN): 1.0, (m.key, combo, SNR_CLEAN): -1.0}
            d = _difference(boot, f"WER {combo} clean: {name} - {m.name}", terms, "negative")
            differences.append(d)
            parts.append(f"{m.name} {_fmt(m.cell(combo, SNR_CLEAN))} ({d.interval_text()})")
        evidence.append(f"{combo}: {name} {_fmt(mome.cell(combo, SNR_CLEAN))} vs " + ", ".join(parts))
    return differences, evidence


def claim_fewer_params_lower_wer(
    mome: MethodResult, mtsk: list[MethodResult], boot: Bootstrap | None, small: MethodResult | None = None
) -> Claim:
    """(1) MoME's WER is below every MTSK variant's at every rate combination (clean), with fewer active
    parameters: the preset's MoME has fewer at the paper's size, `small` (`mome-small`) has fewer at this width,
    so the claim is tested both where the paper states it and where this width lets it be true."""
    differences, evidence = _below_mtsk(mome, mtsk, boot, "MoME")
    # The paper's size: there (d = 3072) LoRA's rank d/32 = 96 outgrows MoME's fixed bottleneck; at a small width
    # the router (d x N_r) and the same bottleneck can make the preset's MoME the larger one.
    fewer = bool(mtsk) and all(mome.paper_active_params < m.paper_active_params for m in mtsk)
    for size, col in (("paper size", "paper_active_params"), ("this width", "active_params")):
        evidence.append(
            f"active params at {size}: MoME {getattr(mome, col):,} vs "
            + ", ".join(f"{m.name} {getattr(m, col):,}" for m in mtsk)
        )
    evidence.insert(0, f"the preset's MoME: {combine(d.verdict for d in differences) if fewer else 'does not hold'}")
    if small is None:
        differences.append(_difference(None, "WER clean: mome-small - Llama-MTSK (not run)", {}, "negative"))
        evidence.append("mome-small (fewer active params at this width): not run")
    else:
        more, lines = _below_mtsk(small, mtsk, boot, small.key)
        here = bool(mtsk) and all(small.active_params < m.active_params for m in mtsk)
        verdict = combine(d.verdict for d in more) if here else "does not hold"
        differences += more
        fewer = fewer and here
        evidence.append(
            f"at this width {small.key} ({small.active_params:,} active params vs "
            + ", ".join(f"{m.name} {m.active_params:,}" for m in mtsk)
            + f"): {verdict}, "
            + "; ".join(lines)
        )
    return _claim(
        "MoME's WER is below Llama-MTSK's at every rate combination (clean), with fewer active "
        "parameters (the preset's MoME at the paper's size, mome-small at this width)",
        differences,
        evidence,
        premise=fewer,
    )


def claim_degrades_less(mome: MethodResult, baselines: list[Baseline], boot: Bootstrap | None) -> Claim:
    """(2) MoME loses less WER than each baseline from (4,2) to (16,5), clean (Llama-AVSR: its two models)."""
    ours = {(mome.key, LAST, SNR_CLEAN): 1.0, (mome.key, FIRST, SNR_CLEAN): -1.0}
    differences, evidence = [], [f"WER({LAST}) - WER({FIRST}), clean: MoME {_fmt(Baseline.of(mome).degradation())}"]
    for b in baselines:
        terms = {**ours, (b.last.key, LAST, SNR_CLEAN): -1.0, (b.first.key, FIRST, SNR_CLEAN): 1.0}
        d = _difference(boot, f"degradation: MoME - {b.name}", terms, "negative")
        differences.append(d)
        evidence.append(f"{b.name} {_fmt(b.degradation())} (MoME minus it: {d.interval_text()})")
    return _claim(f"MoME degrades less than the baselines from {FIRST} to {LAST}", differences, evidence)


def claim_avsr_beats_asr_in_noise(mome: MethodResult, asr: MethodResult | None, boot: Bootstrap | None) -> Claim:
    """(3) At 0 dB, MoME AVSR's WER is below the audio-only model's at the same audio rate, at every combination."""
    differences, evidence = [], []
    for combo in mome.wer:
        audio = combo.split("_")[0]
        terms = {(mome.key, combo, SNR_NOISY): 1.0, (asr.key if asr else "asr", audio, SNR_NOISY): -1.0}
        d = _difference(boot, f"WER {combo} at 0 dB: AVSR - ASR {audio}", terms, "negative")
        differences.append(d)
        evidence.append(
            f"{combo}: AVSR {_fmt(mome.cell(combo, SNR_NOISY))} vs ASR "
            f"{_fmt(asr.cell(audio, SNR_NOISY) if asr else None)} ({d.interval_text()})"
        )
    return _claim("AVSR beats ASR in babble at 0 dB (same steps, same audio rate)", differences, evidence)


def _excess_text(experts: list[dict[str, Any]], modality: str) -> str:
    """Each run's consistency above chance and p-value at `modality`: `+0.021 (p 0.003), +0.004 (p 0.31)`."""
    values = [e["consistency_mean"].get(modality) for e in experts]
    return ", ".join(f"{v['excess']:+.3f} (p {v['p_value']:.2g})" if v else "n/a" for v in values) or "n/a"


def claim_shared_router_consistent(
    shared: list[dict[str, Any]],
    per_granularity: list[dict[str, Any]],
    controls: list[dict[str, Any]] | None = None,
    draws: int = DRAWS,
    seed: int = 0,
) -> Claim:
    """(4) Per modality, the shared router's consistency above (within-utterance) chance exceeds that of routers
    of their own per granularity: the difference's interval over seeds and utterances lies above zero."""
    differences, evidence = [], []
    for modality in ("audio", "video"):
        cells = consistency_cells({"shared": shared, "per-granularity": per_granularity}, modality)
        boot = Bootstrap(cells, draws, seed) if len(cells) == 2 else None
        terms = {"shared": 1.0, "per-granularity": -1.0}
        what = f"{modality}: consistency above chance, shared - per-granularity"
        d = _difference(boot, what, terms, "positive", scale=1.0)
        differences.append(d)
        evidence.append(
            f"{modality}: shared {_excess_text(shared, modality)}; per-granularity "
            f"{_excess_text(per_granularity, modality)}; difference {d.interval_text(3)}"
        )
    if controls:
        evidence.append(
            "untrained routers (step 0): " + ", ".join(f"{m} {_excess_text(controls, m)}" for m in ("audio", "video"))
        )
    return _claim(
        "One shared router activates experts more consistently across granularities than "
        "per-granularity routers (above chance, per modality)",
        differences,
        evidence,
    )


def claims(
    methods: list[MethodResult],
    experts: dict[str, dict[str, Any] | None],
    cells: dict[Cell, Samples] | None = None,
    controls: dict[str, dict[str, Any] | None] | None = None,
    draws: int = DRAWS,
    seed: int = 0,
) -> list[Claim]:
    """The paper's four claims, each with its verdict (holds / does not hold / inconclusive), the differences it
    rests on with their intervals, and the numbers. `cells`: per-utterance errors (`wer_cells`)."""
    by_key = {m.key: m for m in methods}
    mome = by_key.get("mome-mhsa")
    if mome is None:
        return []
    boot = Bootstrap(cells, draws, seed) if cells else None
    mtsk = [m for m in methods if m.family == "mtsk"]
    llama = [by_key[k] for k in ("llama-avsr-a4-v2", "llama-avsr-a16-v5") if k in by_key]
    baselines = [Baseline.of(m) for m in mtsk]
    if len(llama) == 2:  # one model per rate: its degradation is the coarse model's WER minus the fine one's
        baselines.append(Baseline("Llama-AVSR", *llama))
    shared = [e for run, e in experts.items() if e and run.startswith("mome-mhsa-s")]
    per_granularity = [e for run, e in experts.items() if e and run.startswith("mome-mhsa-pergran-")]
    return [
        claim_fewer_params_lower_wer(mome, mtsk, boot, by_key.get("mome-small")),
        claim_degrades_less(mome, baselines, boot),
        claim_avsr_beats_asr_in_noise(mome, by_key.get("asr"), boot),
        claim_shared_router_consistent(
            shared, per_granularity, [e for e in (controls or {}).values() if e], draws, seed
        ),
    ]


# ------------------------------------------------------------------------------------------------ markdown


def _combos(methods: list[MethodResult]) -> list[str]:
    """Every audio-visual rate combination in the table, finest first."""
    seen: dict[str, float] = {}
    for m in methods:
        if m.family != "asr":
            seen.update(m.tokens_per_second)
    return sorted(seen, key=lambda k: -seen[k])


def _spread(method: MethodResult, combo: str, snr: str) -> str:
    values = [t.get(combo, {}).get(snr) for t in method.wer_by_seed.values()]
    values = [v for v in values if v is not None]
    return f" ±{(max(values) - min(values)) / 2:.1f}" if len(values) > 1 else ""


def wer_table(methods: list[MethodResult], combos: list[str], keep: Callable[[MethodResult], bool]) -> list[str]:
    snrs = [SNR_CLEAN, SNR_NOISY]
    head = " | ".join(f"{c} {'clean' if s == SNR_CLEAN else s + ' dB'}" for s in snrs for c in combos)
    lines = [
        f"| method | active | stored | paper active | paper stored | s/step | {head} |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * (len(snrs) * len(combos)),
    ]
    for m in filter(keep, methods):
        cells = [
            f"{_fmt(m.cell(c, s))}{_spread(m, c, s)}" if m.cell(c, s) is not None else "-" for s in snrs for c in combos
        ]
        seeds = f" (seeds {', '.join(map(str, m.seeds))})" if len(m.seeds) > 1 else ""
        lines.append(
            f"| {m.name}{seeds} | {_k(m.active_params)} | {_k(m.stored_params)} | "
            f"{_m(m.paper_active_params)} | {_m(m.paper_stored_params)} | "
            f"{m.seconds_per_step or '-'} | " + " | ".join(cells) + " |"
        )
    return lines


def _k(n: int) -> str:
    return f"{n / 1e3:.1f}k" if n < 1e6 else f"{n / 1e6:.2f}M"


def _m(n: int) -> str:
    return f"{n / 1e6:.1f}M"


def decode_table(methods: list[MethodResult], combos: list[str]) -> list[str]:
    lines = ["| method | " + " | ".join(combos) + " |", "|---|" + "---:|" * len(combos)]
    for m in methods:
        times = m.decode_seconds_per_utterance
        if m.family in ("mome", "mtsk") and times:
            lines.append(
                f"| {m.name} | " + " | ".join(f"{1000 * times[c]:.0f}" if c in times else "-" for c in combos) + " |"
            )
    return lines


def plot(methods: list[MethodResult], path: Path) -> None:
    """WER against LLM input tokens per second of speech, clean and at 0 dB, one line per method."""
    styles = {"mome": "-", "mtsk": "--", "llama-avsr": "-"}
    panels = []
    for snr in (SNR_CLEAN, SNR_NOISY):
        series = []
        for i, m in enumerate(x for x in methods if x.family != "asr"):
            points = sorted(
                (m.tokens_per_second[c], w) for c, cells in m.wer.items() if (w := cells.get(snr)) is not None
            )
            if points:
                width = 2.5 if m.key == "mome-mhsa" else 1
                series.append(plots.Series(points, m.name, styles[m.family], plots.tab20(i), width=width))
        panels.append(plots.Panel(series, "clean" if snr == SNR_CLEAN else f"babble {snr} dB"))
    plots.plot(
        panels,
        path,
        size=(11, 6),
        title="mome reproduce: WER against compression",
        legend={"ncol": 3, "fontsize": 8, "frameon": False},
    )


def _stopped(curve: dict[str, Any]) -> str:
    stop = curve.get("stop")
    if not stop:
        return "not finished"
    return f"plateau at step {stop['step']}" if stop["reason"] == "plateau" else f"cap ({stop['step']} steps)"


def curve_table(methods: list[MethodResult]) -> list[str]:
    """One row per run: where and why it stopped, its best validation WER and the whole curve."""
    lines = ["| run | stopped | best val WER (step) | val WER at each check (step: WER) |", "|---|---|---:|---|"]
    for m in methods:
        for run, curve in m.curves.items():
            points = curve["curve"]
            best = min(points, key=lambda p: p["wer"]) if points else None
            best_text = f"{best['wer']:.1f} ({best['step']})" if best else "-"
            sequence = ", ".join(f"{p['step']}: {p['wer']:.1f}" for p in points) or "-"
            lines.append(f"| {run} | {_stopped(curve)} | {best_text} | {sequence} |")
    return lines


def rule_text(methods: list[MethodResult]) -> str:
    """The stop rule the runs trained under, from the first run that recorded one."""
    curve = next((c for m in methods for c in m.curves.values() if c.get("rule")), None)
    if curve is None:
        return "No run recorded a validation curve."
    rule = curve["rule"]
    return (
        f"Each run decodes the validation split greedily every {rule['every_steps']} steps (the mean WER of "
        f"its rate combinations) and stops at the first check, from step {rule['min_steps']} on, where the best "
        f"WER of the last {rule['window']:.0%} of its steps is not at least {rule['min_gain']:g} point(s) below "
        f"the best before them, or at the cap of {curve['cap']} steps; the learning-rate schedule (cosine) spans "
        "the cap. Each run is evaluated at the step it stopped at."
    )


def curve_plot(methods: list[MethodResult], path: Path) -> None:
    """Validation WER against steps, one line per run; a star where a run stopped on a plateau, a square at the cap."""
    series = []
    for i, m in enumerate(methods):
        for j, (run, curve) in enumerate(m.curves.items()):
            points = [(p["step"], p["wer"]) for p in curve["curve"]]
            if not points:
                continue
            style = ("-", "--", ":")[j % 3]  # the seeds of one method: one colour
            series.append(plots.Series(points, run, style, plots.tab20(i), marker=None, width=1.2))
            stop = curve.get("stop") or {}
            if stop:
                marker = "*" if stop["reason"] == "plateau" else "s"
                series.append(plots.Series(points[-1:], None, "", plots.tab20(i), marker, marker_size=9))
    panel = plots.Panel(
        series, "mome reproduce: validation curves (star: plateau, square: cap)", xlabel="training step"
    )
    plots.plot(
        [panel],
        path,
        size=(10, 6),
        ylabel="validation WER (%), mean of the rate combinations",
        legend={"fontsize": 7, "ncol": 2},
    )


def _consistency(experts: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """Per run and modality the consistency summary, without the per-utterance sums (in experts/<run>)."""
    return {
        run: {m: {k: v for k, v in c.items() if k != "utterances"} for m, c in e["consistency_mean"].items()}
        for run, e in experts.items()
        if e
    }


def command_line(opts: ReproduceOptions) -> str:
    """The `mome reproduce` command that gives `opts` (output folder aside): the flags that differ from their
    defaults (under `--quick`, from QUICK's), then the overrides."""
    flags = [f.name for f in fields(ReproduceOptions) if f.name not in (*NO_FLAG, "out", "quick", "overrides")]
    defaults = {**{f: getattr(ReproduceOptions(), f) for f in flags}, **(QUICK if opts.quick else {})}
    parts = ["mome reproduce", *(["--quick"] if opts.quick else [])]
    for name in flags:
        value = getattr(opts, name)
        if value != defaults[name]:
            shown = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            parts.append(f"--{name.replace('_', '-')} {shown}")
    return " ".join([*parts, *opts.overrides])


REPORT_STAGE = "report"
"""The stage that writes the report, in `<out>/timings.json`."""


def write_report(
    opts: ReproduceOptions,
    jobs: list[Job],
    experts: dict[str, dict[str, Any] | None],
    times: dict[str, float],
    controls: dict[str, dict[str, Any] | None] | None = None,
) -> Path:
    """Write `<out>/results.json`, `<out>/wer_vs_tokens.png` and `<out>/README.md`; returns the README path.
    `controls`: the step-0 analyses of the routed runs (keyed by run). `times`: the stages' seconds, less the
    report's own (`REPORT_STAGE`: on a rerun, the earlier reports' time; this one's is not known yet)."""
    out = Path(opts.out)
    times = {stage: seconds for stage, seconds in times.items() if stage != REPORT_STAGE}
    methods = method_results(opts, jobs)
    claim_list = claims(methods, experts, wer_cells(opts, jobs), controls)
    settings = {
        "preset": opts.preset,
        "steps": opts.steps,
        "plateau_every": opts.plateau_every,
        "min_steps": opts.min_steps,
        "seeds": opts.seeds,
        "methods": opts.methods,
        "quick": opts.quick,
        "utterances": opts.utterances,
        "lip_steps": opts.lip_steps,
        "eval_limit": opts.eval_limit,
        "overrides": opts.overrides,
        "bootstrap": {"draws": DRAWS, "seed": 0, "level": 0.95},
    }
    summary = {
        "methods": [asdict(m) for m in methods],
        "claims": [asdict(c) for c in claim_list],
        "consistency": _consistency(experts),
        "consistency_step0": _consistency(controls or {}),
        "settings": settings,
        "machine": machine(),
        "timings": dict(times),
    }
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    plot(methods, out / "wer_vs_tokens.png")
    curve_plot(methods, out / "val_curves.png")
    combos = _combos(methods)
    total = sum(times.values())
    lines = [
        "# mome reproduce: the paper's claims at CPU scale",
        "",
        f"Command: `{command_line(opts)}`"
        f" (each run until its validation WER stops improving, at most {opts.steps} steps). Machine: {machine()}. "
        f"Wall time: {total / 60:.0f} min.",
        "",
        f"Every run: preset `{opts.preset}` (frozen Whisper tiny.en, SmolLM2-135M truncated, a lip encoder pretrained "
        "on the train split), the same stop rule, cap, batches, learning-rate schedule and cached features; only the "
        "adapter differs (validation curves below). Test split: unseen speakers and sentences, clean and babble at "
        "0 dB. WER in %, the mean over seeds (± half the spread where there are several).",
        "",
        "## Claims",
        "",
    ]
    lines += [
        f"Verdicts: **holds** when every difference the claim rests on has its 95% interval on the claimed "
        f"side of zero, **does not hold** when one lies on the other side, **inconclusive** when an interval "
        f"contains zero. Differences in WER points: estimate [interval], from {DRAWS} bootstrap draws over "
        "seeds and test utterances (one utterance resample per draw, shared by every method and rate; each "
        "method's seeds resampled; WER = total errors / total words per draw).",
        "",
    ]
    for i, c in enumerate(claim_list, 1):
        lines.append(f"{i}. **{c.verdict}**: {c.claim}. {c.evidence}.")
    lines += [
        "",
        "## WER, parameters and time",
        "",
        "active: adapter parameters one token uses at one granularity (the paper's Table 1 column); stored: every "
        "trainable parameter (adapters and projectors); paper: the same method counted at the paper's size "
        "(Llama 3.2-3B, Whisper medium, AV-HuBERT Large). s/step: mean seconds per training step here.",
        "",
        *wer_table(methods, combos, lambda m: m.family != "asr"),
        "",
        "Audio only (the noise baseline, the same stop rule):",
        "",
        *wer_table(methods, ["a4", "a16"], lambda m: m.family == "asr"),
        "",
        "![WER against tokens per second](wer_vs_tokens.png)",
        "",
        "## Validation curves",
        "",
        rule_text(methods),
        "",
        *curve_table(methods),
        "",
        "![validation curves](val_curves.png)",
        "",
        "## Decode time per utterance (ms, greedy, batched, on cached encoder features)",
        "",
        *decode_table(methods, combos),
        "",
    ]
    if summary["consistency"]:
        lines += [
            "## Expert consistency across granularities",
            "",
            "Overlap-weighted Jaccard of the top-k sets of tokens that cover the same speech at two rates, every "
            "layer and pair pooled; chance: the sets shuffled in time within each utterance (p: the share of "
            "shuffles scoring as high); step 0: the run's config freshly initialised.",
            "",
            "| run | audio: score (chance, p) | video: score (chance, p) |",
            "|---|---|---|",
        ]
        rows = [
            *summary["consistency"].items(),
            *((f"{r} (step 0)", c) for r, c in summary["consistency_step0"].items()),
        ]
        for run, c in rows:
            cols = [
                f"{c[k]['score']:.3f} ({c[k]['chance']:.3f}, p {c[k]['p_value']:.2g})" if k in c else "-"
                for k in ("audio", "video")
            ]
            lines.append(f"| {run} | " + " | ".join(cols) + " |")
        lines += ["", "Heatmaps per layer: `experts/<run>/layer_<i>.png`.", ""]
    lines += [
        "## Time per stage (s)",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *[f"| {k} | {v:.0f} |" for k, v in times.items()],
        f"| **total** | **{total:.0f}** |",
        "",
    ]
    return atomic_write_text(out / "README.md", "\n".join(lines))
