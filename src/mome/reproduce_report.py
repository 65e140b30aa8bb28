"""The report of `mome reproduce`: `<out>/README.md`, `<out>/results.json` and plots.

    {"methods": [{"key", "name", "family", "adapter_kind", "runs", "seeds",
                  "active_params", "stored_params", "paper_active_params", "paper_stored_params",
                  "seconds_per_step", "wer": {"a4_v2": {"clean": 30.1, "0": 41.2}, ...},        % over seeds
                  "wer_by_seed": {"0": {...}, ...}, "decode_seconds_per_utterance": {"a4_v2": 0.04, ...}}, ...],
     "claims": [{"claim": "...", "holds": true, "evidence": "..."}, ...],
     "consistency": {"<run>": {"audio": {"score", "chance"}, "video": {...}}, ...},
     "tokens_per_second": {"a4_v2": 25.0, ...}, "settings": {...}, "machine": "...", "timings": {...}}

"Active" parameters are those of the adapters one token uses at one granularity (the paper's Table 1 column:
top-k routed + shared experts + router for MoME, the shared and/or that granularity's LoRA for the baselines);
"stored" are all trainable parameters (adapters and projectors), as `mome params` counts them.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mome.config import load_config
from mome.evaluation.evaluate import wer_percent
from mome.io import atomic_write_text, read_json
from mome.pipeline import machine, task_overrides

SNR_CLEAN, SNR_NOISY = "clean", "0"
FIRST, LAST = "a4_v2", "a16_v5"
"""The finest and the coarsest rate combinations the paper's claims compare."""


def _seconds_per_step(run_dir: Path) -> float | None:
    """Mean logged seconds per step, leaving out the first (warm-up) step."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None
    with path.open() as f:
        rows = [(int(r["step"]), float(r["s_per_step"])) for r in csv.DictReader(f) if r.get("s_per_step")]
    values = [s for step, s in rows if step > 1] or [s for _, s in rows]  # a run of a few steps: all it has
    return round(statistics.mean(values), 3) if values else None


def _mean_over_seeds(tables: list[dict[str, dict[str, float | None]]]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for combo, cells in tables[0].items():
        out[combo] = {}
        for snr in cells:
            values = [t[combo][snr] for t in tables if t.get(combo, {}).get(snr) is not None]
            out[combo][snr] = round(statistics.mean(values), 2) if len(values) == len(tables) else None
    return out


def _params(preset: str, method: Any) -> tuple[int, int]:
    from mome.analysis.params import parameter_report

    report = parameter_report(load_config(preset, [*task_overrides(method.task), *method.overrides]))
    return report.active_adapters, report.trainable


def method_results(opts: Any, jobs: list[Any]) -> list[dict[str, Any]]:
    """One entry per method: its runs' WER (mean over seeds), parameters, seconds per step and decode times."""
    from mome.reproduce import PAPER_PRESET

    by_method: dict[str, list[Any]] = {}
    for job in jobs:
        by_method.setdefault(job.method.key, []).append(job)
    methods = []
    for group in by_method.values():
        method = group[0].method
        evals = [read_json(opts.out / "eval" / job.run / "results.json") for job in group]
        if not all(evals):
            continue
        tables = [wer_percent(res) for res in evals]
        decode = read_json(opts.out / "eval" / group[0].run / "decode_times.json").get("seconds_per_utterance", {})
        steps = [s for job in group if (s := _seconds_per_step(opts.out / "runs" / job.run)) is not None]
        active, stored = _params(opts.preset, method)
        paper_active, paper_stored = _params(PAPER_PRESET, method)
        methods.append({
            "key": method.key, "name": method.label, "family": method.family,
            "adapter_kind": load_config(opts.preset, list(method.overrides)).model.adapter.kind,
            "runs": [job.run for job in group], "seeds": [job.seed for job in group],
            "active_params": active, "stored_params": stored,
            "paper_active_params": paper_active, "paper_stored_params": paper_stored,
            "seconds_per_step": round(statistics.mean(steps), 3) if steps else None,
            "wer": _mean_over_seeds(tables),
            "wer_by_seed": {str(job.seed): table for job, table in zip(group, tables)},
            "decode_seconds_per_utterance": {k: round(v, 4) for k, v in decode.items()},
            "tokens_per_second": {c["key"]: c["tokens_per_second"] for c in evals[0]["combinations"]},
        })  # fmt: skip
    return methods


# ----------------------------------------------------------------------------------------------------- claims


def _cell(method: dict[str, Any], combo: str, snr: str) -> float | None:
    return method["wer"].get(combo, {}).get(snr)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _claim(text: str, holds: bool, evidence: list[str]) -> dict[str, Any]:
    return {"claim": text, "holds": bool(holds), "evidence": "; ".join(evidence)}


def claim_fewer_params_lower_wer(mome: dict[str, Any], mtsk: list[dict[str, Any]]) -> dict[str, Any]:
    """(1) MoME's WER <= every MTSK variant's at every rate combination (clean), with fewer active parameters."""
    holds, evidence = bool(mtsk), []
    for combo in mome["wer"]:
        ours = _cell(mome, combo, SNR_CLEAN)
        theirs = {m["name"]: _cell(m, combo, SNR_CLEAN) for m in mtsk}
        holds &= ours is not None and all(v is not None and ours <= v for v in theirs.values())
        evidence.append(f"{combo}: MoME {_fmt(ours)} vs " + ", ".join(f"{k} {_fmt(v)}" for k, v in theirs.items()))
    # The parameter half is the paper's: at its size (d = 3072) LoRA's rank d/32 = 96 outgrows MoME's fixed
    # bottleneck; at a small width the router (d x N_r) and the same bottleneck can make MoME the larger one.
    fewer = all(mome["paper_active_params"] < m["paper_active_params"] for m in mtsk)
    for size, col in (("paper size", "paper_active_params"), ("this width", "active_params")):
        evidence.append(f"active params at {size}: MoME {mome[col]:,} vs "
                        + ", ".join(f"{m['name']} {m[col]:,}" for m in mtsk))  # fmt: skip
    return _claim("MoME's WER is at most Llama-MTSK's at every rate combination (clean), with fewer active "
                  "parameters at the paper's size", holds and fewer, evidence)  # fmt: skip


def _degradation(method: dict[str, Any], snr: str = SNR_CLEAN) -> float | None:
    first, last = _cell(method, FIRST, snr), _cell(method, LAST, snr)
    return None if first is None or last is None else last - first


def claim_degrades_less(mome: dict[str, Any], baselines: list[dict[str, Any]]) -> dict[str, Any]:
    """(2) MoME loses less WER than each baseline from (4,2) to (16,5), clean (Llama-AVSR: its two models)."""
    ours = _degradation(mome)
    theirs = {m["name"]: _degradation(m) for m in baselines}
    holds = bool(theirs) and ours is not None and all(v is not None and ours < v for v in theirs.values())
    evidence = [f"WER({LAST}) - WER({FIRST}), clean: MoME {_fmt(ours)}"]
    evidence += [f"{k} {_fmt(v)}" for k, v in theirs.items()]
    return _claim(f"MoME degrades less than the baselines from {FIRST} to {LAST}", holds, evidence)


def claim_avsr_beats_asr_in_noise(mome: dict[str, Any], asr: dict[str, Any] | None) -> dict[str, Any]:
    """(3) At 0 dB, MoME AVSR's WER is below the audio-only model's at the same audio rate, at every combination."""
    holds, evidence = asr is not None, []
    for combo in mome["wer"]:
        ours = _cell(mome, combo, SNR_NOISY)
        audio = _cell(asr, combo.split("_")[0], SNR_NOISY) if asr else None
        holds &= ours is not None and audio is not None and ours < audio
        evidence.append(f"{combo}: AVSR {_fmt(ours)} vs ASR {_fmt(audio)}")
    return _claim("AVSR beats ASR in babble at 0 dB (same steps, same audio rate)", holds, evidence)


def consistency_gain(experts: dict[str, Any]) -> float:
    """Consistency above its chance level, averaged over the modalities."""
    values = experts["consistency_mean"].values()
    return statistics.mean(v["score"] - v["chance"] for v in values)


def claim_shared_router_consistent(
    shared: list[dict[str, Any]], per_granularity: list[dict[str, Any]]
) -> dict[str, Any]:
    """(4) The shared router picks the same experts for the same speech at different granularities more often
    (above chance) than routers of their own per granularity."""
    ours = [consistency_gain(e) for e in shared]
    theirs = [consistency_gain(e) for e in per_granularity]
    holds = bool(ours and theirs) and statistics.mean(ours) > statistics.mean(theirs)
    evidence = [
        "consistency above chance (overlap-weighted Jaccard of top-k sets, mean of audio and video): shared "
        + ", ".join(f"{g:+.3f}" for g in ours) + "; per-granularity " + ", ".join(f"{g:+.3f}" for g in theirs)
    ]  # fmt: skip
    return _claim("One shared router activates experts more consistently across granularities than "
                  "per-granularity routers", holds, evidence)  # fmt: skip


def claims(methods: list[dict[str, Any]], experts: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The paper's four claims, each with whether it holds here and the numbers that decide it."""
    by_key = {m["key"]: m for m in methods}
    mome = by_key.get("mome-mhsa")
    if mome is None:
        return []
    mtsk = [m for m in methods if m["family"] == "mtsk"]
    llama = [by_key[k] for k in ("llama-avsr-a4-v2", "llama-avsr-a16-v5") if k in by_key]
    baselines = list(mtsk)
    if len(llama) == 2:  # one model per rate: its degradation is the coarse model's WER minus the fine one's
        merged = {FIRST: llama[0]["wer"].get(FIRST, {}), LAST: llama[1]["wer"].get(LAST, {})}
        baselines.append({"name": "Llama-AVSR", "wer": merged})
    shared = [e for run, e in experts.items() if e and run.startswith("mome-mhsa-s")]
    per_granularity = [e for run, e in experts.items() if e and run.startswith("mome-mhsa-pergran-")]
    return [
        claim_fewer_params_lower_wer(mome, mtsk),
        claim_degrades_less(mome, baselines),
        claim_avsr_beats_asr_in_noise(mome, by_key.get("asr")),
        claim_shared_router_consistent(shared, per_granularity),
    ]


# ------------------------------------------------------------------------------------------------ markdown


def _combos(methods: list[dict[str, Any]]) -> list[str]:
    """Every audio-visual rate combination in the table, finest first."""
    seen: dict[str, float] = {}
    for m in methods:
        if m["family"] != "asr":
            seen.update(m["tokens_per_second"])
    return sorted(seen, key=lambda k: -seen[k])


def _spread(method: dict[str, Any], combo: str, snr: str) -> str:
    values = [t.get(combo, {}).get(snr) for t in method["wer_by_seed"].values()]
    values = [v for v in values if v is not None]
    return f" ±{(max(values) - min(values)) / 2:.1f}" if len(values) > 1 else ""


def wer_table(methods: list[dict[str, Any]], combos: list[str], keep: Callable[[dict[str, Any]], bool]) -> list[str]:
    snrs = [SNR_CLEAN, SNR_NOISY]
    head = " | ".join(f"{c} {'clean' if s == SNR_CLEAN else s + ' dB'}" for s in snrs for c in combos)
    lines = [f"| method | active | stored | paper active | paper stored | s/step | {head} |",
             "|---|---:|---:|---:|---:|---:|" + "---:|" * (len(snrs) * len(combos))]  # fmt: skip
    for m in filter(keep, methods):
        cells = [f"{_fmt(_cell(m, c, s))}{_spread(m, c, s)}" if _cell(m, c, s) is not None else "-"
                 for s in snrs for c in combos]  # fmt: skip
        seeds = f" (seeds {', '.join(map(str, m['seeds']))})" if len(m["seeds"]) > 1 else ""
        lines.append(f"| {m['name']}{seeds} | {_k(m['active_params'])} | {_k(m['stored_params'])} | "
                     f"{_m(m['paper_active_params'])} | {_m(m['paper_stored_params'])} | "
                     f"{m['seconds_per_step'] or '-'} | " + " | ".join(cells) + " |")  # fmt: skip
    return lines


def _k(n: int) -> str:
    return f"{n / 1e3:.1f}k" if n < 1e6 else f"{n / 1e6:.2f}M"


def _m(n: int) -> str:
    return f"{n / 1e6:.1f}M"


def decode_table(methods: list[dict[str, Any]], combos: list[str]) -> list[str]:
    lines = ["| method | " + " | ".join(combos) + " |", "|---|" + "---:|" * len(combos)]
    for m in methods:
        times = m["decode_seconds_per_utterance"]
        if m["family"] in ("mome", "mtsk") and times:
            lines.append(f"| {m['name']} | " + " | ".join(f"{1000 * times[c]:.0f}" if c in times else "-"
                                                         for c in combos) + " |")  # fmt: skip
    return lines


def plot(methods: list[dict[str, Any]], path: Path) -> None:
    """WER against LLM input tokens per second of speech, clean and at 0 dB, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 6), sharey=True)
    colours = plt.get_cmap("tab20").colors
    for ax, snr in zip(axes, (SNR_CLEAN, SNR_NOISY)):
        for i, m in enumerate(x for x in methods if x["family"] != "asr"):
            points = sorted((m["tokens_per_second"][c], w) for c, cells in m["wer"].items()
                            if (w := cells.get(snr)) is not None)  # fmt: skip
            style = {"mome": "-", "mtsk": "--", "llama-avsr": ""}[m["family"]]
            if points:
                width = 2.5 if m["key"] == "mome-mhsa" else 1
                ax.plot(*zip(*points), style, marker="o", label=m["name"], color=colours[i % 20], linewidth=width)
        ax.set_title("clean" if snr == SNR_CLEAN else f"babble {snr} dB")
        ax.set_xlabel("LLM input tokens per second of speech")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("WER (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.subplots_adjust(bottom=0.28)
    fig.suptitle("mome reproduce: WER against compression")
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def write_report(
    opts: Any, jobs: list[Any], experts: dict[str, dict[str, Any] | None], times: dict[str, float]
) -> Path:
    """Write `<out>/results.json`, `<out>/wer_vs_tokens.png` and `<out>/README.md`; returns the README path."""
    out = Path(opts.out)
    methods = method_results(opts, jobs)
    claim_list = claims(methods, experts)
    settings = {"preset": opts.preset, "steps": opts.steps, "seeds": opts.seeds, "quick": opts.quick,
                "utterances": opts.utterances, "lip_steps": opts.lip_steps, "eval_limit": opts.eval_limit,
                "overrides": opts.overrides}  # fmt: skip
    summary = {
        "methods": methods, "claims": claim_list,
        "consistency": {run: e["consistency_mean"] for run, e in experts.items() if e},
        "settings": settings, "machine": machine(), "timings": dict(times),
    }  # fmt: skip
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    plot(methods, out / "wer_vs_tokens.png")
    combos = _combos(methods)
    total = sum(times.values())
    lines = [
        "# mome reproduce: the paper's claims at CPU scale",
        "",
        f"Command: `mome reproduce{' --quick' if opts.quick else ''} --seeds {','.join(map(str, opts.seeds))}`"
        f" ({opts.steps} steps per run). Machine: {machine()}. Wall time: {total / 60:.0f} min.",
        "",
        f"Every run: preset `{opts.preset}` (frozen Whisper tiny.en, SmolLM2-135M truncated, a lip encoder pretrained "
        "on the train split), the same steps, batches, learning-rate schedule and cached features; only the "
        "adapter differs. Test split: unseen speakers and sentences, clean and babble at 0 dB. WER in %, the "
        "mean over seeds (± half the spread where there are two).",
        "",
        "## Claims",
        "",
    ]
    for i, c in enumerate(claim_list, 1):
        lines.append(f"{i}. **{'holds' if c['holds'] else 'does not hold'}**: {c['claim']}. {c['evidence']}.")
    lines += [
        "",
        "## WER, parameters and time",
        "",
        "active: adapter parameters one token uses at one granularity (the paper's Table 1 column); stored: every "
        "trainable parameter (adapters and projectors); paper: the same method counted at the paper's size "
        "(Llama 3.2-3B, Whisper medium, AV-HuBERT Large). s/step: mean seconds per training step here.",
        "",
        *wer_table(methods, combos, lambda m: m["family"] != "asr"),
        "",
        "Audio only (the noise baseline, the same steps):",
        "",
        *wer_table(methods, ["a4", "a16"], lambda m: m["family"] == "asr"),
        "",
        "![WER against tokens per second](wer_vs_tokens.png)",
        "",
        "## Decode time per utterance (ms, greedy, batched, on cached encoder features)",
        "",
        *decode_table(methods, combos),
        "",
    ]
    if summary["consistency"]:
        lines += ["## Expert consistency across granularities", "",
                  "| run | audio (chance) | video (chance) |", "|---|---|---|"]  # fmt: skip
        for run, c in summary["consistency"].items():
            cols = [f"{c[k]['score']:.3f} ({c[k]['chance']:.3f})" if k in c else "-" for k in ("audio", "video")]
            lines.append(f"| {run} | " + " | ".join(cols) + " |")
        lines += ["", "Heatmaps per layer: `experts/<run>/layer_<i>.png`.", ""]
    lines += ["## Time per stage (s)", "", "| stage | seconds |", "|---|---:|",
              *[f"| {k} | {v:.0f} |" for k, v in times.items()], f"| **total** | **{total:.0f}** |", ""]  # fmt: skip
    return atomic_write_text(out / "README.md", "\n".join(lines))
