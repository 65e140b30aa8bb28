"""How fast the demo's models learn to read: validation WER after N steps, per training option and seed.

    .venv/bin/python benchmarks/learning_curve.py --out study --variants unified three --steps 100 200 400 800
    .venv/bin/python benchmarks/learning_curve.py --out study --variants unified clean-first --steps 400 --seeds 0 1

On one workspace (the demo's corpus, lip encoder and feature cache, built by `mome.workflows.pipeline` as `mome demo`
does, or reused from `--out`), every (variant, seed, steps) point is its own run of the `demo` preset with the
variant's overrides, trained for exactly that many steps (the cosine schedule spans them, as a demo of that
length would), then decoded greedily on the validation split (never the test split) at every rate
combination, clean and at the --snr values. The variant `three` trains the demo's former three task-specific
models (AVSR, ASR, VSR) with the steps split as they were (250 : 250 : 400); every other variant is one
unified model (`task=any`). Points already in `<out>/learning_curve.json` are kept, so a stopped study
continues. Prints one table (WER per combination, training seconds) and writes `learning_curve.png`: WER at
the finest AVSR rates against steps and against training seconds. Results and commands: docs/experiments.md.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from mome.config import load_config
from mome.evaluation.evaluate import evaluate, snr_label
from mome.io import atomic_write_text, read_json
from mome.runs.load import model_from_checkpoint, resolve_checkpoint
from mome.workflows import pipeline
from mome.workflows.demo_report import grid_word_hits, word_class_errors

# the paper's one learning rate, no clean-audio curriculum and plain CE, whatever the demo preset sets; variants
# add theirs
UNIFIED = [
    "model.compression.task=any",
    "train.projector_lr_scale=1",
    "data.clean_epochs=0",
    "data.clean_steps_share=0",
    "model.label_smoothing=0",
]
# the demo's recipe as section 17 measured it (5 clean epochs: a fixed curriculum whatever the steps)
DEMO_RECIPE = [*UNIFIED, "train.projector_lr_scale=5", "data.clean_epochs=5"]
# the demo preset's recipe of sections 18-20 (60% of the steps clean), without the label smoothing section 21 added
DEMO_NOW = [*UNIFIED, "train.projector_lr_scale=5", "data.clean_steps_share=0.6"]
VARIANTS: dict[str, list[str]] = {
    "unified": UNIFIED,
    "three": [],  # three task-specific models, steps split as the earlier demo did
    "unified-lr3e-3": [*UNIFIED, "train.lr=3e-3"],
    "unified-proj-lr5x": [*UNIFIED, "train.projector_lr_scale=5"],
    "unified-proj-lr5x-ctc0.3": [*UNIFIED, "train.projector_lr_scale=5", "model.projector.ctc_weight=0.3"],
    "unified-proj-lr5x-ctc1": [*UNIFIED, "train.projector_lr_scale=5", "model.projector.ctc_weight=1"],
    "unified-clean": [*UNIFIED, "data.train_snrs=[null]"],
    "unified-clean-first": [*UNIFIED, "data.clean_epochs=1"],
    "unified-frames450": [*UNIFIED, "data.max_frames=450"],
    "unified-layers2": [*UNIFIED, "model.llm.num_layers=2"],
    "unified-layers8": [*UNIFIED, "model.llm.num_layers=8"],
    "unified-proj-lr5x-layers2": [*UNIFIED, "train.projector_lr_scale=5", "model.llm.num_layers=2"],
    "unified-proj-lr5x-clean": [*UNIFIED, "train.projector_lr_scale=5", "data.train_snrs=[null]"],
    "unified-proj-lr5x-clean-first3": [*UNIFIED, "train.projector_lr_scale=5", "data.clean_epochs=3"],
    "unified-proj-lr5x-clean-first5": DEMO_RECIPE,
    "unified-proj-lr5x-clean-share0.6": [
        *UNIFIED,
        "train.projector_lr_scale=5",
        "data.clean_steps_share=0.6",
    ],
    "unified-proj-lr5x-clean-first5-pooled": [
        *UNIFIED,
        "train.projector_lr_scale=5",
        "data.clean_epochs=5",
        "data.feature_cache_store=pooled",
    ],
    # fifth round (docs/experiments.md, section 19): what might carry the letters to unseen voices
    "unified-proj-lr5x-clean-first5-tmask": [*DEMO_RECIPE, "data.time_mask=true"],
    "unified-proj-lr5x-clean-first5-stack": [*DEMO_RECIPE, "model.compression.mode=stack"],
    "unified-proj-lr5x-clean-first5-whisper-base": [*DEMO_RECIPE, "model.encoders.audio.path=embedded:whisper-base"],
    # sixth round (section 21): regularisers for the letters' generalisation gap, on the demo's recipe now
    "demo-now": DEMO_NOW,
    "demo-now-pdrop0.1": [*DEMO_NOW, "model.projector.dropout=0.1"],
    "demo-now-ls0.1": [*DEMO_NOW, "model.label_smoothing=0.1"],
    "unified-proj-lr5x-lr2e-3": [*UNIFIED, "train.projector_lr_scale=5", "train.lr=2e-3"],
    "unified-proj-lr5x-half-clean": [
        *UNIFIED,
        "train.projector_lr_scale=5",
        "data.train_snrs=[-5,0,5,10,15,20,null,null,null,null,null,null]",
    ],
}
THREE_SPLIT = {"avsr": 250, "asr": 250, "vsr": 400}  # the demo's step shares before it trained one model


def point_key(variant: str, seed: int, steps: int) -> str:
    return f"{variant}-s{seed}-n{steps}"


def hypotheses_path(out: Path, key: str) -> Path:
    """Where `evaluate` writes a point's (or one of its runs') hypotheses."""
    return out / "eval" / key / "hypotheses.jsonl"


def train_and_score(
    ws: pipeline.Workspace,
    corpus: Path,
    lip: Path,
    variant: str,
    extra: list[str],
    seed: int,
    steps: int,
    snrs: list[float | None],
) -> dict:
    """Train one point's run(s) and decode the validation split; returns WER % per combination and SNR."""
    key = point_key(variant, seed, steps)
    if variant == "three":
        total = sum(THREE_SPLIT.values())
        runs = [(task, max(1, round(steps * n / total))) for task, n in THREE_SPLIT.items()]
    else:
        runs = [("avsr", steps)]
    wer: dict[str, dict[str, float | None]] = {}
    classes: dict[str, dict[str, float]] = {}
    seconds = 0.0
    for task, n in runs:
        name = f"{key}-{task}" if variant == "three" else key
        overrides = [f"train.seed={seed}", "train.save_every_steps=100000", *VARIANTS[variant], *extra]
        cfg = pipeline.run_config(ws, corpus, lip, task, n, name, overrides)
        t0 = time.perf_counter()
        pipeline.train(cfg)
        seconds += time.perf_counter() - t0
        model, cfg = model_from_checkpoint(resolve_checkpoint(Path(cfg.train.output_dir)))
        task_snrs = [None] if cfg.model.compression.task == "vsr" else snrs
        results = evaluate(
            model,
            cfg,
            cfg.data.val_labels,
            cfg.data.root,
            model.combinations,
            task_snrs,
            out_dir=ws.out / "eval" / name,
            progress=False,
        )
        wer.update(results.wer_percent())
        classes.update(word_class_errors(hypotheses_path(ws.out, name)))
    return {
        "variant": variant,
        "seed": seed,
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "wer": wer,
        "word_classes": classes,
    }


def table(points: list[dict], snr: str = "clean") -> str:
    keys = list(dict.fromkeys(k for p in points for k in p["wer"]))
    lines = [
        "| variant | seed | steps | train s | " + " | ".join(keys) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(keys),
    ]
    for p in sorted(points, key=lambda p: (p["variant"], p["steps"], p["seed"])):
        cells = [p["wer"].get(k, {}).get(snr) for k in keys]
        text = " | ".join("" if c is None else f"{c:.1f}" for c in cells)
        lines.append(f"| {p['variant']} | {p['seed']} | {p['steps']} | {p['train_seconds']:.0f} | {text} |")
    return "\n".join(lines)


def word_table(points: list[dict], classes: tuple[str, ...] = ("letter", "digit")) -> str:
    """Letters and digits lost per point and rate: whether a model reads, or only knows the grammar."""
    keys = list(dict.fromkeys(k for p in points for k in p.get("word_classes", {})))
    head = " | ".join(f"{k} {c}" for k in keys for c in classes)
    lines = [f"| variant | seed | steps | {head} |", "|---|---:|---:|" + "---:|" * len(keys) * len(classes)]
    for p in sorted(points, key=lambda p: (p["variant"], p["steps"], p["seed"])):
        cells = [p.get("word_classes", {}).get(k, {}).get(c) for k in keys for c in classes]
        text = " | ".join("" if v is None else f"{v:.0f}" for v in cells)
        lines.append(f"| {p['variant']} | {p['seed']} | {p['steps']} | {text} |")
    return "\n".join(lines)


def misread_letters(out: Path, points: list[dict], combo: str = "a4_v2") -> str:
    """The clean clips whose letter any point lost at `combo`, with each point's hypothesis ("-": read): whether
    different models fail on the same clips (the clip's fault) or on different ones (the model's)."""
    keys = [point_key(p["variant"], p["seed"], p["steps"]) for p in points]
    hyps: dict[str, dict[str, str]] = {}  # clip id -> point key -> hypothesis, where the letter was lost
    refs: dict[str, str] = {}
    for key in keys:
        for rec, hits, classes in grid_word_hits(hypotheses_path(out, key)):
            if rec["rates"] == combo and any(cls == "letter" and not hit for (_, hit), cls in zip(hits, classes)):
                hyps.setdefault(rec["id"], {})[key] = rec["hyp"]
                refs[rec["id"]] = rec["ref"]
    lines = ["| clip | reference | lost by | " + " | ".join(keys) + " |", "|---|---|---:|" + "---|" * len(keys)]
    for clip in sorted(hyps, key=lambda c: (-len(hyps[c]), c)):
        cells = " | ".join(hyps[clip].get(k, "-") for k in keys)
        lines.append(f"| {clip} | {refs[clip]} | {len(hyps[clip])} | {cells} |")
    return "\n".join(lines)


VOWEL_LETTERS = frozenset("aefhilmnorsx")  # letters whose spoken name starts with a vowel ("ef", "aitch", ...)


def letters_by_context(out: Path, points: list[dict], combos: tuple[str, ...] = ("a4_v2", "a4_v5", "a4")) -> str:
    """% of the letters lost (clean, pooled over the points and `combos`) by the preposition before them and
    whether the letter's name starts with a vowel: does a consonant at the end of "at" / "with" run into it?"""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])  # (preposition, start) -> lost, all
    for p in points:
        for rec, hits, classes in grid_word_hits(hypotheses_path(out, point_key(p["variant"], p["seed"], p["steps"]))):
            if rec["rates"] not in combos:
                continue
            for i, ((word, hit), cls) in enumerate(zip(hits, classes)):
                if cls == "letter":
                    cell = counts[(hits[i - 1][0], "vowel" if word in VOWEL_LETTERS else "consonant")]
                    cell[0] += not hit
                    cell[1] += 1
    lines = ["| preposition | letter starts with | letters | lost | % lost |", "|---|---|---:|---:|---:|"]
    for (prep, start), (lost, n) in sorted(counts.items()):
        lines.append(f"| {prep} | {start} | {n} | {lost} | {100 * lost / n:.1f} |")
    return "\n".join(lines)


def plot(points: list[dict], path: Path, combos: tuple[str, ...] = ("a4_v2", "a16_v5")) -> None:
    """Clean WER per variant against steps and training seconds: the mean over seeds, bars from min to max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(combos), 2, figsize=(10, 4 * len(combos)), squeeze=False)
    for variant in sorted({p["variant"] for p in points}):
        for row, combo in enumerate(combos):
            by_steps: dict[int, list[dict]] = {}
            for p in points:
                if p["variant"] == variant and p["wer"].get(combo, {}).get("clean") is not None:
                    by_steps.setdefault(p["steps"], []).append(p)
            steps = sorted(by_steps)
            wers = [[p["wer"][combo]["clean"] for p in by_steps[n]] for n in steps]
            mean = [sum(w) / len(w) for w in wers]
            spread = [[m - min(w) for m, w in zip(mean, wers)], [max(w) - m for m, w in zip(mean, wers)]]
            seconds = [sum(p["train_seconds"] for p in by_steps[n]) / len(by_steps[n]) for n in steps]
            for col, xs in enumerate((steps, seconds)):
                axes[row][col].errorbar(xs, mean, yerr=spread, fmt="o-", capsize=3, label=variant)
    for row, combo in enumerate(combos):
        for col, x in enumerate(("steps", "training seconds")):
            axes[row][col].set(xlabel=x, ylabel=f"val WER % {combo} clean", yscale="log")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("learning_curve_out"), help="workspace and results")
    parser.add_argument("--variants", nargs="+", default=["unified", "three"], choices=sorted(VARIANTS))
    parser.add_argument("--steps", nargs="+", type=int, default=[100, 200, 400, 800])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--snr", nargs="*", type=float, default=[0.0], help="babble SNRs besides clean")
    parser.add_argument("--workspace-seed", type=int, default=0, help="seed of the corpus and lip encoder")
    parser.add_argument("--lip-steps", type=int, default=pipeline.Workspace.lip_steps)
    parser.add_argument("--train-speakers", type=int, default=pipeline.Workspace.train_speakers)
    parser.add_argument("--utterances", type=int, default=pipeline.Workspace.utterances, help="corpus size")
    parser.add_argument(
        "--misread",
        action="store_true",
        help="also list the clips whose letter each point lost, and the letters lost by context",
    )
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides for every run")
    args = parser.parse_args()

    ws = pipeline.Workspace(
        out=args.out,
        seed=args.workspace_seed,
        lip_steps=args.lip_steps,
        train_speakers=args.train_speakers,
        utterances=args.utterances,
        snrs=[None, *args.snr],
    )
    ws.out.mkdir(parents=True, exist_ok=True)
    stages = pipeline.Stages(ws.out / "timings.json", "learning_curve")
    corpus, lip = pipeline.prepare(ws, stages, load_config(ws.preset))
    results_path = ws.out / "learning_curve.json"
    points: dict[str, dict] = read_json(results_path)
    for variant in args.variants:
        for seed in args.seeds:
            for steps in args.steps:
                key = point_key(variant, seed, steps)
                if key in points:
                    continue
                print(f"\n=== {key} ===", flush=True)
                points[key] = train_and_score(ws, corpus, lip, variant, args.overrides, seed, steps, ws.snrs)
                atomic_write_text(results_path, json.dumps(points, indent=2))
    chosen = [p for p in points.values() if p["variant"] in args.variants]
    print("\nvalidation WER % (clean), greedy\n" + table(chosen))
    print("\n% of the letters / digits lost (clean)\n" + word_table(chosen))
    for snr in args.snr:
        print(f"\nvalidation WER % ({snr:g} dB)\n" + table(chosen, snr_label(snr)))
    if args.misread:
        print("\nclips whose letter was lost at a4_v2 (clean)\n" + misread_letters(ws.out, chosen))
        print("\nletters lost by context, a4_v2 / a4_v5 / a4 pooled (clean)\n" + letters_by_context(ws.out, chosen))
    plot(chosen, ws.out / "learning_curve.png")
    print(f"\n{results_path}, {ws.out / 'learning_curve.png'}")


if __name__ == "__main__":
    main()
