"""`mome reproduce`: the paper's comparison at CPU scale, in one command.

On one workspace (the demo's kind of corpus, lip encoder and feature cache: `pipeline`), every method of
`reproduce_plan` is trained with the same LLM, encoders, projectors, batches and schedule until its validation
WER stops improving or it reaches the cap (`train.plateau`: a greedy decode of the validation split every
`plateau_every` steps; the schedule spans the cap), then evaluated at every rate combination it supports, clean
and in babble at 0 dB. `reproduce_report` turns the runs into
the WER table, the parameter and time columns and one line per claim of the paper (docs/results.md is a full run).

    1 corpus, models, lip encoder, features     as `mome demo` (`<out>/corpus`, `<out>/features`, ...)
    2 train + eval, per method and seed          `<out>/runs/<run>`, `<out>/eval/<run>`
    3 experts                                    shared vs per-granularity routers, `<out>/experts/<run>`, and
                                                 each one's step-0 control, `<out>/experts/<run>-step0`
    4 report                                     `<out>/README.md`, `<out>/results.json`, plots

Stages are skipped when their output exists, so a stopped reproduction continues where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

from mome.config import Config, Override, load_config
from mome.stopping import stoppable
from mome.training.plateau import read_curve
from mome.workflows import pipeline
from mome.workflows.pipeline import Stages
from mome.workflows.reproduce_plan import Job, ReproduceOptions, jobs
from mome.workflows.reproduce_report import REPORT_STAGE, write_report

# The first time estimate, before any run is measured: seconds per training step and rate combination, and
# per decoded utterance, of the `demo` preset on a 2-core x86 CPU without native bf16 (docs/experiments.md).
# After each run the estimate uses what this machine measured.
REFERENCE_SECONDS_PER_COMBINATION_STEP = 0.19
REFERENCE_SECONDS_PER_DECODE = 0.05
REFERENCE_SECONDS_PER_UTTERANCE_PREPARED = 0.5


class Estimate:
    """Seconds left, from reference costs until this machine has measured a run, then from its own."""

    def __init__(self, opts: ReproduceOptions, combinations: int, test_utterances: int) -> None:
        self.opts = opts
        self.combinations = combinations
        self.decodes = test_utterances * len(opts.snrs)
        self.per_step = REFERENCE_SECONDS_PER_COMBINATION_STEP
        self.per_decode = REFERENCE_SECONDS_PER_DECODE
        self.measured: list[tuple[float, float, float, float]] = []  # (combination-steps, decodes, train s, eval s)

    def _work(self, job: Job, steps: int) -> tuple[int, int]:
        """(rate-combination steps of training, decoded utterances of evaluation) of a run of `steps` steps."""
        g = job.method.granularities(self.combinations)
        return steps * g, self.decodes * g

    def job_seconds(self, job: Job, steps: int | None = None) -> tuple[float, float]:
        """(training, evaluation) seconds of a run of `steps` steps (default: the cap)."""
        work, decodes = self._work(job, self.opts.steps if steps is None else steps)
        return work * self.per_step, decodes * self.per_decode

    def record(self, job: Job, steps: int, train_seconds: float, eval_seconds: float) -> None:
        """A run trained for `steps` steps (its validation checks included in the seconds) and evaluated."""
        self.measured.append((*self._work(job, steps), train_seconds, eval_seconds))
        self.per_step = sum(m[2] for m in self.measured) / max(1, sum(m[0] for m in self.measured))
        self.per_decode = sum(m[3] for m in self.measured) / max(1.0, sum(m[1] for m in self.measured))

    def remaining(self, todo: list[Job], steps: int | None = None) -> float:
        """Seconds of the runs in `todo` if each trains `steps` steps (default: the cap)."""
        return sum(sum(self.job_seconds(job, steps)) for job in todo)


def curriculum_overrides(opts: ReproduceOptions, preset: Config) -> list[Override]:
    """The preset's clean-audio share of the steps (`data.clean_steps_share`) taken of `--min-steps`, not of the
    cap: a run that stops at its first plateau check has then trained on the babble too."""
    share = preset.data.clean_steps_share
    if not share or opts.steps <= opts.min_steps:
        return []
    return [("data.clean_steps_share", share * opts.min_steps / opts.steps)]


def plan(opts: ReproduceOptions, todo: list[Job], estimate: Estimate, prepare_seconds: float) -> str:
    """What will run and the estimated time, printed before anything starts."""
    lines = [
        f"mome reproduce: {len(todo)} runs on preset {opts.preset!r}, each until its validation WER stops "
        f"improving (checked every {opts.plateau_every} steps, from step {opts.min_steps}) or {opts.steps} steps, "
        f"evaluated at SNR {', '.join('clean' if s is None else f'{s:g} dB' for s in opts.snrs)}; "
        f"output {opts.out}"
    ]
    shortest = min(opts.min_steps, opts.steps)
    for job in todo:
        low, high = sum(estimate.job_seconds(job, shortest)), sum(estimate.job_seconds(job))
        lines.append(f"  {job.run:<24} {job.method.label:<42} ~{low / 60:4.1f}-{high / 60:.1f} min")
    low, high = (prepare_seconds + estimate.remaining(todo, s) for s in (shortest, None))
    lines.append(
        f"estimated {low / 60:.0f}-{high / 60:.0f} min: every run stopping at step {shortest} or at the cap "
        f"(corpus, lip encoder and features ~{prepare_seconds / 60:.0f} min; the estimate is refined after "
        "each run)"
    )
    return "\n".join(lines)


def _steps_done(opts: ReproduceOptions, job: Job) -> tuple[int, bool]:
    """(steps of the run's newest checkpoint, whether it is finished: stopped on a plateau or at the cap)."""
    checkpoints = sorted((opts.out / "runs" / job.run / "checkpoints").glob("step-*.pt"))
    step = int(checkpoints[-1].stem.split("-")[1]) if checkpoints else 0
    stop = read_curve(opts.out / "runs" / job.run).get("stop")
    return step, step >= opts.steps or (stop is not None and stop.get("step") == step)


def run_reproduce(opts: ReproduceOptions) -> Path:
    """Run every stage; returns the report path. A stop signal raises `Interrupted` naming the stage."""
    return stoppable(lambda: _run_stages(opts))


def _run_stages(opts: ReproduceOptions) -> Path:
    opts.out.mkdir(parents=True, exist_ok=True)
    preset = load_config(opts.preset, [("train.max_steps", opts.steps), *opts.plateau_overrides()])  # bad: one line now
    combinations = len(preset.model.compression.audio_rates) * len(preset.model.compression.video_rates)
    test_utterances = min(opts.eval_limit or opts.utterances // 10, opts.utterances // 10)
    estimate = Estimate(opts, combinations, test_utterances)
    todo = jobs(opts)
    prepared = (opts.out / "features").is_dir()
    prepare_seconds = 0.0 if prepared else opts.utterances * REFERENCE_SECONDS_PER_UTTERANCE_PREPARED
    print(plan(opts, todo, estimate, prepare_seconds), flush=True)

    started = time.perf_counter()
    stages = Stages(opts.out / "timings.json", "reproduce")
    corpus, lip = pipeline.prepare(opts, stages, preset)
    curriculum = curriculum_overrides(opts, preset)
    for i, job in enumerate(todo):
        overrides = [*opts.plateau_overrides(), *curriculum, *job.method.overrides, ("train.seed", job.seed)]
        cfg = pipeline.run_config(opts, corpus, lip, job.method.task, opts.steps, job.run, overrides)
        start_step, was_trained = _steps_done(opts, job)
        t0 = time.perf_counter()
        stages.run(f"train {job.run}", lambda cfg=cfg: pipeline.train(cfg))
        t1 = time.perf_counter()
        stages.run(f"eval {job.run}", lambda job=job: pipeline.evaluate_run(opts, job.run))
        if not was_trained:  # a run found finished measures nothing
            estimate.record(job, _steps_done(opts, job)[0] - start_step, t1 - t0, time.perf_counter() - t1)
        rest = todo[i + 1 :]
        low, high = estimate.remaining(rest, min(opts.min_steps, opts.steps)), estimate.remaining(rest)
        print(
            f"[{i + 1}/{len(todo)}] {job.run} done; {(time.perf_counter() - started) / 60:.1f} min so far, "
            f"~{low / 60:.0f}-{high / 60:.0f} min left",
            flush=True,
        )
    experts, controls = {}, {}
    for job in todo:
        if job.method.key in ("mome-mhsa", "mome-mhsa-pergran"):
            title = f"{job.method.label} (seed {job.seed}) on the test split"
            out_dir = opts.out / "experts" / job.run
            experts[job.run] = stages.run(
                f"experts {job.run}", lambda j=job, o=out_dir, t=title: pipeline.experts(opts, j.run, o, t)
            )
            control_dir, control_title = out_dir.with_name(f"{job.run}-step0"), f"{title}, untrained (step 0)"
            controls[job.run] = stages.run(
                f"experts {job.run} step 0",
                lambda j=job, o=control_dir, t=control_title: pipeline.experts(opts, j.run, o, t, untrained=True),
            )
    report = stages.run(REPORT_STAGE, lambda: write_report(opts, todo, experts, stages.times, controls))
    print(f"\n{stages.summary()} (saved in {stages.path})")
    return report
