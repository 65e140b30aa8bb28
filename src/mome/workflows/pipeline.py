"""The stages that `mome demo` and `mome reproduce` share: one synthetic corpus, the shipped models, one lip
encoder and one feature cache in a workspace folder, then runs trained, evaluated and analysed by name.

Every stage is skipped when its output exists, so a stopped command continues where it stopped; SIGINT and
SIGTERM stop it at the running stage (a training stage saves its checkpoint first) with exit code 130 / 143
and a line saying to rerun the same command. An evaluation is reused only while it names the checkpoint it
was computed from (step and sha256): a run trained further is evaluated again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mome.config import Config, Override, Precision, absolute_path, load_config, saved_config
from mome.errors import Interrupted, UserError
from mome.io import read_json
from mome.stopping import exit_code

if TYPE_CHECKING:
    from mome.evaluation.results import EvaluationResult

T = TypeVar("T")


@dataclass
class Workspace:
    """Where a command's corpus, lip encoder, features and runs live, and how they are made."""

    out: Path = Path("workspace")
    """Output folder: corpus, lip encoder, features, runs and report."""
    preset: str = "demo"
    """Training preset of every run."""
    seed: int = 0
    """Seed of the corpus, the lip encoder and (unless a run overrides `train.seed`) every run."""
    utterances: int = 800
    """Corpus size (80% train)."""
    grid_fraction: float = 1.0
    """Share of GRID-like sentences in the corpus (the rest: open grammar). The open grammar needs far more
    steps than a CPU budget of minutes gives (docs/experiments.md), so the commands spend their data on the
    grammar of GRID, the classic AVSR benchmark. `mome synth` defaults to 0.5."""
    train_speakers: int = 128
    """Distinct speakers of the training split, five utterances each (`mome synth` defaults to 32): more voices
    and faces generalise better to the unseen test speakers (docs/experiments.md, section 18). The validation,
    test and babble speakers do not depend on it."""
    lip_steps: int = 220
    """Lip-encoder pretraining steps."""
    snrs: list[float | None] = field(default_factory=lambda: [None, 5.0, 0.0, -5.0])
    """Test conditions: clean and babble at these SNRs (dB)."""
    eval_limit: int | None = None
    """Evaluate on the first N test utterances only (None: all)."""
    overrides: list[str] = field(default_factory=list)
    """KEY=VALUE overrides for every run (e.g. model.llm.num_layers=6)."""

    def __post_init__(self) -> None:
        self.out = Path(absolute_path(str(self.out)))  # the stages below pass it on; none depends on the cwd


class Stages:
    """Runs named stages, adding each one's seconds to `<out>/timings.json`; a stop names the stage."""

    def __init__(self, path: Path, command: str) -> None:
        self.path = path
        self.command = command
        self.times: dict[str, float] = read_json(path)

    def run(self, name: str, fn: Callable[[], T]) -> T:
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        try:
            result = fn()
        except Interrupted as err:  # a training stage: saved
            raise self._stopped(name, err.code, f" ({err})") from None
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM inside `stopping.stoppable`
            raise self._stopped(name, exit_code(stop)) from None
        finally:
            self.times[name] = round(self.times.get(name, 0.0) + time.perf_counter() - t0, 1)
            self.path.write_text(json.dumps(self.times, indent=2))
        print(f"=== {name}: {self.times[name]:.0f} s", flush=True)
        return result

    def _stopped(self, stage: str, code: int, detail: str = "") -> Interrupted:
        return Interrupted(
            f"{self.command} stopped at stage {stage!r}{detail}; the finished stages are kept: rerun the same "
            f"`mome {self.command}` command to continue",
            code,
        )

    def summary(self) -> str:
        """The stage split, one line: `corpus 95 s, models 30 s, ... = 880 s (14.7 min)`."""
        total = sum(self.times.values())
        parts = ", ".join(f"{k} {v:.0f} s" for k, v in self.times.items())
        return f"time per stage: {parts} = {total:.0f} s ({total / 60:.1f} min)"


def prepare(ws: Workspace, stages: Stages, preset: Config) -> tuple[Path, Path]:
    """The stages every command of this kind starts with: the corpus, the shipped models, the lip encoder and
    the feature cache of every split; returns (corpus root, lip encoder)."""
    corpus_root = stages.run("corpus", lambda: corpus(ws))
    stages.run("models", lambda: models(preset))
    lip = stages.run("lip encoder", lambda: lip_encoder(ws, corpus_root, preset))
    avsr = run_config(ws, corpus_root, lip, "avsr", 1)  # its encoders are those of every run (same stores)
    stages.run("features", lambda: features(avsr, ws.snrs))
    return corpus_root, lip


def corpus(ws: Workspace) -> Path:
    from mome.synthetic.corpus import synthesize_corpus

    root = ws.out / "corpus"
    if (root / "labels" / "test.csv").is_file():
        check_corpus(root, ws)
    else:
        synthesize_corpus(
            root,
            ws.utterances,
            seed=ws.seed,
            grid_fraction=ws.grid_fraction,
            speakers_per_split={"train": ws.train_speakers},
        )
    return root


def check_corpus(root: Path, ws: Workspace) -> None:
    """Refuse a workspace corpus written by another corpus version or with other options than this command's:
    reusing it would silently train and test on another corpus than the one asked for."""
    from mome.synthetic.corpus import CORPUS_VERSION

    report = read_json(root / "meta" / "report.json")
    if not report:  # killed between its labels and its report: nothing to compare
        return
    version = report.get("version", 1)
    if version != CORPUS_VERSION:
        raise UserError(
            f"{root} was written by an older mome (corpus version {version}, now {CORPUS_VERSION}): "
            "delete it, or pass another --out for a new workspace"
        )
    built = {
        "--seed": report["seed"],
        "--utterances": report["requested"],
        "--grid-fraction": report["grid_fraction"],
        "--train-speakers": report["speakers"]["train"],
    }
    asked = {
        "--seed": ws.seed,
        "--utterances": ws.utterances,
        "--grid-fraction": ws.grid_fraction,
        "--train-speakers": ws.train_speakers,
    }
    differ = [f"{k} {built[k]} (now {asked[k]})" for k in asked if built[k] != asked[k]]
    if differ:
        raise UserError(
            f"{root} was built with {', '.join(differ)}: pass the same options, or another --out for a new workspace"
        )


def models(cfg: Config) -> None:
    """Convert the shipped models that the preset names (`embedded:<name>`), once; later runs reuse the cache."""
    from mome.convert.embedded import ensure_embedded

    for path in (cfg.model.llm.path, cfg.model.encoders.audio.path):
        if path and path.startswith("embedded:"):
            name = path.split(":", 1)[1]
            print(f"{name}: {ensure_embedded(name)}")


def lip_encoder(ws: Workspace, corpus_root: Path, preset: Config) -> Path:
    from mome.training.pretrain_video import pretrain_video

    path = ws.out / "lip_encoder.pt"
    if not path.is_file():
        arch = preset.model.encoders.video.arch or {}
        metrics = pretrain_video(corpus_root, path, steps=ws.lip_steps, seed=ws.seed, arch=arch.get("name", "compact"))
        (ws.out / "lip_encoder.json").write_text(json.dumps(metrics, indent=2, default=str))
    return path


def run_config(
    ws: Workspace,
    corpus_root: Path,
    lip: Path,
    task: str,
    steps: int,
    name: str | None = None,
    overrides: Sequence[Override] = (),
) -> Config:
    """The config of run `name` (default: the task) in `<out>/runs/<name>`: the preset on the workspace's data,
    with the task's encoders, then the workspace's and this run's overrides."""
    name = name or task
    base: list[Override] = [
        ("name", f"{ws.preset}-{name}"),
        ("data.root", corpus_root),
        ("model.encoders.video.path", lip),
        ("train.max_steps", steps),
        ("train.output_dir", ws.out / "runs" / name),
        ("train.seed", ws.seed),
        ("data.feature_cache", ws.out / "features"),
    ]
    return load_config(ws.preset, base + task_overrides(task) + ws.overrides + list(overrides))


def task_overrides(task: str) -> list[Override]:
    """A preset's AVSR model turned into the task's: audio only (`asr`), video only (`vsr`) or one model for
    every task (`any`)."""
    if task == "any":
        return [("model.compression.task", "any")]
    if task == "asr":
        return [("model.compression.task", "asr"), ("model.encoders.video.kind", "none")]
    if task == "vsr":
        return [("model.compression.task", "vsr"), ("model.encoders.audio.kind", "none")]
    return []


def features(cfg: Config, snrs: list[float | None]) -> None:
    """The frozen encoders' outputs for every split, once: the runs and their evaluations read them."""
    from mome.features.fill import fill_splits

    if cfg.data.feature_cache is not None:  # `data.feature_cache=null`: the runs encode at every step
        fill_splits(cfg, snrs=snrs)


def train(cfg: Config) -> None:
    from mome.training.recipe import train as train_recipe

    train_recipe(cfg)


def seconds_per_step(cfg: Config, steps: int = 16, warmup: int = 2) -> tuple[float, Precision]:
    """Wall seconds per training step of `cfg` (batch loading included), the mean of `steps` steps after `warmup`
    untimed ones, in a throwaway run folder, and the precision they ran in: what turns a time budget into a step
    count."""
    import itertools
    import tempfile

    from mome.training.recipe import Trainer

    with tempfile.TemporaryDirectory(prefix="mome-step-time-") as tmp:
        cfg = saved_config(cfg.to_dict(), [("train.output_dir", tmp)])
        trainer = Trainer(cfg, resume=False).setup()
        try:
            batches = (m["batch"] for m in trainer.epoch_batches() if m["batch"] is not None)
            for batch in itertools.islice(batches, warmup):
                trainer.train_step(batch)
            start = time.perf_counter()
            for batch in itertools.islice(batches, steps):
                trainer.train_step(batch)
            return (time.perf_counter() - start) / steps, trainer.precision.precision
        finally:
            trainer.logger.close()


def evaluate_run(ws: Workspace, name: str) -> EvaluationResult:
    """Run `name` on the test split at every rate combination and SNR, in `<out>/eval/<name>` (reused while its
    checkpoint is). Video-only runs are evaluated clean only: babble is added to the audio, which they never hear."""
    from mome.evaluation.evaluate import evaluate as evaluate_model
    from mome.evaluation.results import EvaluationResult
    from mome.runs.load import model_from_checkpoint

    out_dir = ws.out / "eval" / name
    source, found = _current(ws, name, out_dir / "results.json")
    cached = EvaluationResult.from_json(found) if found is not None else None
    if cached is not None and cached.info.get("limit") == ws.eval_limit and cached.snrs == _snr_labels(ws, cached):
        return cached  # the same checkpoint, utterances and conditions
    model, cfg = model_from_checkpoint(source["checkpoint"])
    snrs = [None] if cfg.model.compression.task == "vsr" else ws.snrs
    return evaluate_model(
        model,
        cfg,
        cfg.data.test_labels,
        cfg.data.root,
        model.combinations,
        snrs,
        out_dir=out_dir,
        limit=ws.eval_limit,
        info={"source": source, "limit": ws.eval_limit},
    )


def _snr_labels(ws: Workspace, results: EvaluationResult) -> tuple[str, ...]:
    """The SNR columns that `results` must have to be reused."""
    from mome.evaluation.evaluate import snr_label

    return ("clean",) if results.task == "vsr" else tuple(snr_label(s) for s in ws.snrs)


def experts(ws: Workspace, name: str, out_dir: Path, title: str, untrained: bool = False) -> dict[str, Any] | None:
    """Expert usage of run `name` on the test split (`mome experts`) in `out_dir`, reused while its checkpoint
    is; None for a run without routers. `untrained`: the step-0 control, the same analysis of the run's config
    freshly initialised (`analysis.experts.untrained_model`)."""
    from mome.analysis.experts import expert_usage, has_router, untrained_model, write_outputs
    from mome.runs.load import model_from_checkpoint

    source, cached = _current(ws, name, out_dir / "experts.json")
    if cached is not None:
        return cached
    model, cfg = model_from_checkpoint(source["checkpoint"])
    if not has_router(cfg.model):
        return None
    if untrained:
        model = untrained_model(cfg)
    avsr = [c for c in model.combinations if all(c)]  # a unified model: its AVSR rates, as the paper analyses
    result = expert_usage(
        model, cfg, Path(cfg.data.test_labels), Path(cfg.data.root), avsr or model.combinations, ws.eval_limit
    )
    result["source"], result["untrained"] = source, untrained
    write_outputs(result, out_dir, title)
    return result


def _current(ws: Workspace, name: str, results: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the source of run `name`'s newest checkpoint, the results in `results` if computed from it)."""
    from mome.runs.checkpoint import checkpoint_source
    from mome.runs.load import resolve_checkpoint

    source = checkpoint_source(resolve_checkpoint(ws.out / "runs" / name))
    return source, _cached(results, source)


def _cached(path: Path, source: dict[str, Any]) -> dict[str, Any] | None:
    """The results in `path` if they were computed from the same checkpoint (step and file hash)."""
    results = read_json(path)
    if not results:
        return None
    old = results.get("source") or {}
    same = all(old.get(k) == source[k] for k in ("step", "sha256"))
    if not same:
        print(f"{path}: computed from another checkpoint (step {old.get('step', '?')}); evaluating again")
    return results if same else None


def machine() -> str:
    """The CPU model, threads and library versions: what a reader of a report needs to compare seconds."""
    import platform

    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, transformers {transformers.__version__}"
    )
