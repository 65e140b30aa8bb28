"""The demo's report: `<out>/README.md` (what ran, WER per task, rate and SNR, per word class, cost per rate,
examples, timings) and `<out>/results.json`, the same numbers for programs. The demo's one model serves every
task; its results are split by the task each rate combination reads:

    {"avsr": {"a4_v2": {"clean": 2.5, "0": 9.0, "-5": 30.2}, ...},              corpus WER in %, group `all`
     "asr":  {"a4": {...}, "a16": {...}},                                        the same model, audio only
     "vsr":  {"v2": {"clean": 21.0, "0": null, "-5": null}, "v5": {...}},      video only: clean
     "word_classes": {"avsr": {"a4_v2": {"command": 0.0, ..., "letter": 3.8, "digit": 1.2, ...}}, ...},
                                                                                 clean, % of those words wrong
     "tokens_per_second": {"avsr": {"a4_v2": 25.0, ...}, ...},                 LLM input tokens per s of speech
     "decode_seconds_per_utterance": {"avsr": {"a4_v2": 0.05, ...}, ...},      `model.generate`, greedy
     "steps": 1050, "precision": "bf16", "machine": "...",                      what trained, and where
     "step_plan": {"steps": 1050, "chosen": "budget", "step_seconds": 0.41, ...},  why that many steps
     "timings": {"corpus": 95.1, ...}}                                          seconds per stage
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TypeVar

from mome.config import combination_task
from mome.evaluation import plots
from mome.evaluation.evaluate import markdown
from mome.evaluation.results import DecodeTimes, EvaluationResult
from mome.evaluation.wer import marked_errors, reference_hits
from mome.io import JsonObject, atomic_write_text, read_json
from mome.synthetic.grammar import GRID_WORDS, grid_word_classes
from mome.workflows.pipeline import Workspace, machine

V = TypeVar("V")
TASKS = ("avsr", "asr", "vsr")
EXAMPLES = 3
"""Example transcripts per rate combination in the report."""


def demo_results(
    results: EvaluationResult, decode_times: DecodeTimes, times: dict[str, float], hypotheses: Path
) -> JsonObject:
    """The numbers of `<out>/results.json` (schema in the module docstring) from the model's eval results."""
    task_of = {c.key: combination_task(c.rates) for c in results.combinations}
    by_task: dict[str, dict[str, dict[str, float | None]]] = {task: {} for task in TASKS}
    for key, cells in results.wer_percent().items():
        by_task[task_of[key]][key] = cells
    out: JsonObject = {task: cells for task, cells in by_task.items() if cells}
    out["word_classes"] = _split(word_class_errors(hypotheses), out)
    seconds = {k: round(v, 4) for k, v in decode_times.seconds_per_utterance.items()}
    out["tokens_per_second"] = _split(results.tokens_per_second(), out)
    out["decode_seconds_per_utterance"] = _split(seconds, out)
    out["timings"] = dict(times)
    return out


def _split(per_key: Mapping[str, V], tasks: Mapping[str, Mapping[str, object]]) -> dict[str, dict[str, V]]:
    """{key: value} -> {task: {key: value}} for the tasks in `tasks`."""
    return {task: {k: v for k, v in per_key.items() if k in tasks[task]} for task in TASKS if task in tasks}


def grid_word_hits(
    hypotheses: Path, snr: str = "clean"
) -> Iterator[tuple[JsonObject, list[tuple[str, bool]], list[str]]]:
    """Each GRID sentence of a `hypotheses.jsonl` at `snr`: its record, its reference words each with whether the
    hypothesis kept it, and their GRID word classes. Nothing when the file is absent."""
    if not hypotheses.is_file():
        return
    for line in hypotheses.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec["snr"] != snr:
            continue
        hits = reference_hits(rec["ref"], rec["hyp"])
        classes = grid_word_classes(" ".join(w for w, _ in hits))
        if classes is not None:
            yield rec, hits, classes


def word_class_errors(hypotheses: Path, snr: str = "clean") -> dict[str, dict[str, float]]:
    """% of the reference words of each GRID word class (command, colour, preposition, letter, digit, adverb)
    that the hypothesis lost (substituted or deleted), per rate combination, on GRID sentences at `snr`: whether
    the model reads the letters and digits or only knows the grammar. Insertions are in the WER, not here."""
    wrong: dict[str, dict[str, list[int]]] = defaultdict(lambda: {c: [0, 0] for c in GRID_WORDS})
    for rec, hits, classes in grid_word_hits(hypotheses, snr):
        for (_, hit), cls in zip(hits, classes):
            wrong[rec["rates"]][cls][0] += not hit
            wrong[rec["rates"]][cls][1] += 1
    return {
        combo: {cls: round(100 * e / n, 2) for cls, (e, n) in counts.items() if n} for combo, counts in wrong.items()
    }


def noise_comparison(summary: JsonObject, snrs: list[str]) -> list[str]:
    """The model's AVSR rows against its own audio-only rows at the same audio rate, per noisy SNR: the same
    weights, with and without the video."""
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


def word_class_table(summary: JsonObject) -> list[str]:
    """One row per rate combination: % of each word class's words lost (clean)."""
    classes = list(GRID_WORDS)
    lines = ["| task | rates | " + " | ".join(classes) + " |", "|---|---|" + "---:|" * len(classes)]
    for task, combos in summary.get("word_classes", {}).items():
        for key, cells in combos.items():
            row = " | ".join("-" if cells.get(c) is None else f"{cells[c]:.1f}" for c in classes)
            lines.append(f"| {task.upper()} | {key} | {row} |")
    return lines


def wer_table(summary: JsonObject, snrs: list[str]) -> list[str]:
    """One row per task and rate combination: its cost (tokens/s, decode time) and WER at every SNR."""
    head = "| task | rates | tokens/s | decode ms/utt | " + " | ".join(s if s == "clean" else f"{s} dB" for s in snrs)
    lines = [head + " |", "|---|---|---:|---:|" + "---:|" * len(snrs)]
    for task in ("avsr", "asr", "vsr"):
        for key, cells in summary.get(task, {}).items():
            tps = summary["tokens_per_second"][task][key]
            ms = summary["decode_seconds_per_utterance"].get(task, {}).get(key)
            wers = ["-" if cells.get(s) is None else f"{cells[s]:.2f}" for s in snrs]
            lines.append(
                f"| {task.upper()} | {key} | {tps:.3g} | {'-' if ms is None else f'{1000 * ms:.0f}'} | "
                + " | ".join(wers)
                + " |"
            )
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


def plot(summary: JsonObject, snrs: list[str], path: Path) -> None:
    """WER (%) against LLM input tokens per second for every task, one line per task and SNR."""
    styles = {"clean": "-", "5": "--", "0": ":", "-5": "-."}
    series, notes = [], []
    for task, colour in (("avsr", "tab:blue"), ("asr", "tab:orange"), ("vsr", "tab:green")):
        tokens = summary["tokens_per_second"].get(task, {})
        combos = sorted(summary.get(task, {}), key=lambda k: tokens[k])
        for snr in snrs:
            points = [(tokens[k], y) for k in combos if (y := summary[task][k].get(snr)) is not None]
            if points:
                label = f"{task.upper()} {snr if snr == 'clean' else snr + ' dB'}"
                series.append(plots.Series(points, label, styles.get(snr, "-"), colour))
        notes += [(k, (tokens[k], y)) for k in combos if (y := summary[task][k].get(snrs[0])) is not None]
    panel = plots.Panel(series, "mome demo: WER against compression rate", notes)
    plots.plot([panel], path, size=(7, 4.5), legend={"fontsize": 7, "ncol": 2})


def _expert_lines(experts: JsonObject) -> list[str]:
    """The router's consistency across granularities, and the heatmap of the last layer."""
    lines = [
        f"{experts['num_experts']} routed experts, top-{experts['top_k']}, one router for every granularity. "
        "Consistency: how often tokens that cover the same speech at two granularities pick the same "
        "experts (overlap-weighted Jaccard of the top-k sets; 1 = always the same), against chance (the sets "
        "shuffled in time within each utterance; p: the share of shuffles scoring as high).",
        "",
    ]
    for modality, v in experts["consistency_mean"].items():
        lines.append(f"- {modality}: {v['score']:.3f} (chance {v['chance']:.3f}, p = {v['p_value']:.3g})")
    last = experts["layers"][-1]["layer"]
    lines += [
        "",
        f"![expert usage, layer {last}](experts/layer_{last}.png)",
        "",
        "Every layer: `experts/experts.md` and `experts/layer_<i>.png`.",
    ]
    return lines


def step_plan_line(plan: JsonObject) -> str:
    """Why the model trained the steps it did, in one sentence (`demo.plan_steps`)."""
    if plan.get("chosen") != "budget":
        return f"Steps: {plan['steps']:,}, as asked (`--steps`)."
    return (
        f"Steps: {plan['steps']:,}, what the {plan['budget_minutes']:g}-minute budget left after "
        f"{plan['seconds_before_training']:.0f} s of earlier stages holds at {plan['step_seconds']:.2f} s per "
        "step, measured on this machine before training (`--steps N` fixes the count)."
    )


def write_report(
    opts: Workspace,
    run: str,
    plan: JsonObject,
    results: EvaluationResult,
    decode_times: DecodeTimes,
    times: dict[str, float],
    experts: JsonObject | None = None,
) -> Path:
    """Write `<out>/results.json`, `<out>/wer_vs_tokens.png` and `<out>/README.md` for the demo's run `run`,
    trained for `plan["steps"]` (`demo.plan_steps`); returns the README path."""
    out = Path(opts.out)
    eval_dir = out / "eval" / run
    summary = demo_results(results, decode_times, times, eval_dir / "hypotheses.jsonl")
    trained = read_json(out / "runs" / run / "precision.json")
    precision = trained.get("precision")
    steps = plan["steps"]
    summary.update(steps=steps, step_plan=plan, precision=precision, machine=machine())
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    snrs = list(results.snrs)
    plot(summary, snrs, out / "wer_vs_tokens.png")
    lines = [
        "# mome demo report",
        "",
        "What ran: `mome demo` (stages in `mome/workflows/demo.py`). Frozen pretrained Whisper tiny.en and "
        "SmolLM2-135M (truncated to the layers the `demo` preset keeps), a frozen lip encoder pretrained on the "
        "train split, trainable projectors and MoME adapters with one router shared by every granularity. "
        "One model for every task (`model.compression.task=any`), trained for "
        f"{steps} steps in {precision} ({trained.get('reason', '')}): AVSR at audio {{4,16}} x video {{2,5}}, ASR "
        "at audio {4,16} and VSR at "
        "video {2,5}, each training sample drawing one task. Test split: unseen speakers and sentences; babble "
        "noise from unseen talkers, mixed at a seeded offset per utterance.",
        "",
        f"Options: `{json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()})}`",
        "",
        f"Machine: {summary['machine']}. {step_plan_line(plan)} The same numbers: `results.json`.",
        "",
        "## WER (%) per task, rate and SNR, with the cost of each rate",
        "",
        "tokens/s: audio and video tokens that one second of speech puts into the LLM. decode ms/utt: measured "
        "time of greedy decoding per test utterance (batched, on cached encoder features). Video-only rates "
        "are decoded clean only (the babble is in the audio).",
        "",
        *wer_table(summary, snrs),
        "",
        "![WER against tokens per second](wer_vs_tokens.png)",
        "",
        "## Where the errors are: % of each word class lost (clean)",
        "",
        "GRID sentences are `command colour preposition letter digit adverb`; a model that knows the grammar but "
        "does not read loses the letters and digits first. Substitutions and deletions of the reference words "
        "of each class, over the words of that class (insertions count in the WER only).",
        "",
        *word_class_table(summary),
        "",
    ]
    comparison = noise_comparison(summary, [s for s in snrs if s != "clean"])
    if len(comparison) > 2:
        lines += [
            "## Babble noise: the same model with and without the video",
            "",
            "Each AVSR row against the same model's audio-only row at the same audio rate.",
            "",
            *comparison,
            "",
        ]
    if experts:
        lines += ["## Expert usage (MoME, test split, clean)", "", *_expert_lines(experts), ""]
    lines += ["## Examples (clean; ~~said~~ **heard**)", "", *examples(eval_dir / "hypotheses.jsonl")]
    lines += [
        "## Time per stage (s)",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *[f"| {k} | {v:.0f} |" for k, v in times.items()],
        f"| **total** | **{sum(times.values()):.0f}** |",
        "",
    ]
    lip = out / "lip_encoder.json"
    if lip.is_file():
        metrics = {k: v for k, v in json.loads(lip.read_text()).items() if k != "loss_history"}
        lines += ["## Lip encoder pretraining", "", "```json", json.dumps(metrics, indent=2), "```", ""]
    body = markdown(results).replace("# WER", "## WER", 1).replace("\n## ", "\n### ")
    lines += [body, "", f"![WER vs tokens per second](eval/{run}/wer_vs_tokens.png)", ""]
    lines += [
        f"Per-utterance hypotheses: `eval/{run}/hypotheses.jsonl`; training curves: `runs/{run}/metrics.csv` "
        f"and `runs/{run}/tensorboard`.",
        "",
    ]
    return atomic_write_text(out / "README.md", "\n".join(lines))
