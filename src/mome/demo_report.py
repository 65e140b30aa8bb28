"""The demo's report: `<out>/README.md` (what ran, WER per rate and SNR, cost per rate, examples, timings) and
`<out>/results.json`, the same numbers for programs:

    {"avsr": {"a4_v2": {"clean": 2.5, "5": 3.1, "0": 9.0, "-5": 30.2}, ...},   corpus WER in %, group `all`
     "asr":  {"a4": {...}, "a16": {...}},
     "vsr":  {"v2": {"clean": 21.0}, "v5": {...}},                              video only: clean
     "tokens_per_second": {"avsr": {"a4_v2": 25.0, ...}, ...},                 LLM input tokens per s of speech
     "decode_seconds_per_utterance": {"avsr": {"a4_v2": 0.05, ...}, ...},      `model.generate`, greedy
     "timings": {"corpus": 95.1, ...}}                                          seconds per stage
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mome.evaluation.evaluate import markdown, wer_percent
from mome.evaluation.wer import marked_errors
from mome.io import atomic_write_text
from mome.pipeline import machine

EXAMPLES = 5
"""Example transcripts per rate combination in the report."""


def demo_results(
    results: dict[str, dict[str, Any]], decode_times: dict[str, dict[str, Any]], times: dict[str, float]
) -> dict[str, Any]:
    """The numbers of `<out>/results.json` (schema in the module docstring) from each task's eval results."""
    out: dict[str, Any] = {}
    for task, res in results.items():
        out[task] = wer_percent(res)
    out["tokens_per_second"] = {
        task: {c["key"]: c["tokens_per_second"] for c in res["combinations"]} for task, res in results.items()
    }
    out["decode_seconds_per_utterance"] = {
        task: {k: round(v, 4) for k, v in times_.get("seconds_per_utterance", {}).items()}
        for task, times_ in decode_times.items()
    }
    out["timings"] = dict(times)
    return out


def noise_comparison(summary: dict[str, Any], snrs: list[str]) -> list[str]:
    """AVSR vs the audio-only model trained with the same budget, at the same audio rate, per noisy SNR."""
    if "asr" not in summary or "avsr" not in summary:
        return []
    lines = ["| SNR | AVSR rates | ASR WER | AVSR WER | AVSR / ASR |", "|---:|---|---:|---:|---:|"]
    for snr in snrs:
        for key, cells in summary["avsr"].items():
            asr = summary["asr"].get(key.split("_")[0], {}).get(snr)
            avsr = cells.get(snr)
            if asr is None or avsr is None:
                continue
            ratio = f"{avsr / asr:.2f}" if asr > 0 else "-"
            lines.append(f"| {snr} dB | {key} | {asr:.2f} | {avsr:.2f} | {ratio} |")
    return lines


def wer_table(summary: dict[str, Any], snrs: list[str]) -> list[str]:
    """One row per task and rate combination: its cost (tokens/s, decode time) and WER at every SNR."""
    head = "| task | rates | tokens/s | decode ms/utt | " + " | ".join(s if s == "clean" else f"{s} dB" for s in snrs)
    lines = [head + " |", "|---|---|---:|---:|" + "---:|" * len(snrs)]
    for task in ("avsr", "asr", "vsr"):
        for key, cells in summary.get(task, {}).items():
            tps = summary["tokens_per_second"][task][key]
            ms = summary["decode_seconds_per_utterance"].get(task, {}).get(key)
            wers = ["-" if cells.get(s) is None else f"{cells[s]:.2f}" for s in snrs]
            lines.append(f"| {task.upper()} | {key} | {tps:.3g} | {'-' if ms is None else f'{1000 * ms:.0f}'} | "
                         + " | ".join(wers) + " |")  # fmt: skip
    return lines


def examples(hypotheses: Path, snr: str = "clean", per_combo: int = EXAMPLES) -> list[str]:
    """The first `per_combo` test utterances at each rate combination: reference and marked hypothesis."""
    if not hypotheses.is_file():
        return []
    shown: dict[str, list[dict]] = {}
    for line in hypotheses.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec["snr"] == snr and len(shown.setdefault(rec["rates"], [])) < per_combo:
            shown[rec["rates"]].append(rec)
    lines = []
    for combo, recs in shown.items():
        lines += [f"**{combo}**", "", "| reference | hypothesis |", "|---|---|"]
        lines += [f"| {r['ref_norm']} | {marked_errors(r['ref'], r['hyp'])} |" for r in recs]
        lines.append("")
    return lines


def plot(summary: dict[str, Any], snrs: list[str], path: Path) -> None:
    """WER (%) against LLM input tokens per second for every task, one line per task and SNR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"clean": "-", "5": "--", "0": ":", "-5": "-."}
    for task, colour in (("avsr", "tab:blue"), ("asr", "tab:orange"), ("vsr", "tab:green")):
        combos = sorted(summary.get(task, {}), key=lambda k: summary["tokens_per_second"][task][k])
        for snr in snrs:
            points = [(summary["tokens_per_second"][task][k], summary[task][k].get(snr)) for k in combos]
            points = [(x, y) for x, y in points if y is not None]
            if points:
                label = f"{task.upper()} {snr if snr == 'clean' else snr + ' dB'}"
                ax.plot(*zip(*points), styles.get(snr, "-"), marker="o", color=colour, label=label)
        for k in combos:
            y = summary[task][k].get(snrs[0])
            if y is not None:
                ax.annotate(k, (summary["tokens_per_second"][task][k], y), textcoords="offset points",
                            xytext=(3, 3), fontsize=7)  # fmt: skip
    ax.set_xlabel("LLM input tokens per second of speech")
    ax.set_ylabel("WER (%)")
    ax.set_title("mome demo: WER against compression rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def _expert_lines(experts: dict[str, Any]) -> list[str]:
    """The router's consistency across granularities, and the heatmap of the last layer."""
    lines = [f"{experts['num_experts']} routed experts, top-{experts['top_k']}, one router for every granularity. "
             "Consistency: how often tokens that cover the same speech at two granularities pick the same "
             "experts (overlap-weighted Jaccard of the top-k sets; 1 = always the same), against chance.", ""]  # fmt: skip
    for modality, v in experts["consistency_mean"].items():
        lines.append(f"- {modality}: {v['score']:.3f} (chance {v['chance']:.3f})")
    last = experts["layers"][-1]["layer"]
    lines += ["", f"![expert usage, layer {last}](experts/layer_{last}.png)", "",
              "Every layer: `experts/experts.md` and `experts/layer_<i>.png`."]  # fmt: skip
    return lines


def write_report(
    opts: Any, results: dict[str, dict[str, Any]], decode_times: dict[str, dict[str, Any]], times: dict[str, float],
    experts: dict[str, Any] | None = None,
) -> Path:  # fmt: skip
    """Write `<out>/results.json`, `<out>/wer_vs_tokens.png` and `<out>/README.md`; returns the README path."""
    out = Path(opts.out)
    summary = demo_results(results, decode_times, times)
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    snrs = max((res["snrs"] for res in results.values()), key=len)
    plot(summary, snrs, out / "wer_vs_tokens.png")
    lines = [
        "# mome demo report",
        "",
        "What ran: `mome demo` (stages in `mome/demo.py`). Frozen pretrained Whisper tiny.en and SmolLM2-135M "
        "(truncated to the layers the `demo` preset keeps), a frozen lip encoder pretrained on the train split, "
        "trainable projectors and MoME adapters, audio {4,16} x video {2,5} trained together "
        f"({opts.avsr_steps} steps); an audio-only model with the same steps (ASR, the noise baseline) and a "
        f"video-only model (VSR, {opts.vsr_steps} steps). Test split: unseen speakers and sentences; babble "
        "noise from unseen talkers, mixed at a seeded offset per utterance.",
        "",
        f"Options: `{json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()})}`",
        "",
        f"Machine: {machine()}. The same numbers: `results.json`.",
        "",
        "## WER (%) per rate and SNR, with the cost of each rate",
        "",
        "tokens/s: audio and video tokens that one second of speech puts into the LLM. decode ms/utt: measured "
        "time of greedy decoding per test utterance (batched, on cached encoder features).",
        "",
        *wer_table(summary, snrs),
        "",
        "![WER against tokens per second](wer_vs_tokens.png)",
        "",
    ]
    comparison = noise_comparison(summary, [s for s in snrs if s != "clean"])
    if len(comparison) > 2:
        lines += ["## Babble noise: AVSR vs ASR trained with the same budget", "", *comparison, ""]
    if experts:
        lines += ["## Expert usage (MoME, test split, clean)", "", *_expert_lines(experts), ""]
    lines += ["## Examples (clean; ~~said~~ **heard**)", ""]
    for task in results:
        lines += [f"### {task.upper()}", "", *examples(out / "eval" / task / "hypotheses.jsonl")]
    lines += ["## Time per stage (s)", "", "| stage | seconds |", "|---|---:|",
              *[f"| {k} | {v:.0f} |" for k, v in times.items()], f"| **total** | **{sum(times.values()):.0f}** |", ""]  # fmt: skip
    lip = out / "lip_encoder.json"
    if lip.is_file():
        metrics = {k: v for k, v in json.loads(lip.read_text()).items() if k != "loss_history"}
        lines += ["## Lip encoder pretraining", "", "```json", json.dumps(metrics, indent=2), "```", ""]
    lines += ["## Details per task", ""]
    for task, res in results.items():
        body = markdown(res).replace("# WER", "### WER", 1).replace("\n## ", "\n#### ")
        lines += [body, "", f"![WER vs tokens per second, {task}](eval/{task}/wer_vs_tokens.png)", ""]
    lines += [
        "Per-utterance hypotheses: `eval/<task>/hypotheses.jsonl`; training curves: `runs/<task>/metrics.csv` "
        "and `runs/<task>/tensorboard`.",
        "",
    ]
    return atomic_write_text(out / "README.md", "\n".join(lines))
