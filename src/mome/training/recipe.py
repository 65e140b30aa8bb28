"""`mome train`: the training recipe, top to bottom (torchtune style), on Hugging Face Accelerate.

    setup: seed -> model (frozen encoders + LLM, trainable projectors + adapters) -> data -> optimiser
    loop:  batch -> encode (frozen) -> all granularities in one (packed) LLM forward -> loss -> step -> log / save
    end:   final checkpoint + validation

The same command runs on a CPU, on a GPU and data-parallel: `torchrun --nproc-per-node N $(which mome) train
CONFIG ...` (DDP: gloo on CPUs, NCCL on GPUs). `train.precision: auto` picks bf16 autocast where the device
multiplies bf16 natively and fp32 elsewhere (`mome.precision`); the choice is printed and kept in
`<output_dir>/precision.json`, the request (`auto`) in config.yaml. In bf16 the frozen LLM is stored in bf16
(`AVSRModel.prepare_training`); projectors, adapters and their optimiser state stay fp32.

Resuming is exact: a run directory with a checkpoint resumes from it (weights, optimiser, schedule, epoch and
position inside the epoch); batches are a function of (seed, epoch) and augmentation of (seed, epoch,
utterance), so the resumed run sees the same data as an uninterrupted one. A resume compares the
checkpoint's config with the new one: the fields in `RESUMABLE` may change (and are listed), any other change
is refused unless `restart_optimizer` (`mome train --restart-optimizer`: the weights, a fresh optimiser and
schedule). Faults (signals, non-finite steps, unreadable data): `mome.training.faults`. One process trains
into a run directory at a time (`mome.training.lock`); metrics.csv rows are keyed by step (`metrics`).
With `train.plateau` the run also stops once its validation WER has stopped improving (`mome.training.plateau`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from mome.config import Config, SingleTask, combination_key, config_from_dict, save_config
from mome.data.bucketing import FrameBudgetBatchSampler, SkipFirst
from mome.data.collate import to_device
from mome.data.dataset import AVDataset
from mome.errors import ConfigError, UserError
from mome.evaluation.evaluate import dataset_errors
from mome.features.cache import FeatureCache
from mome.features.dataset import make_dataset
from mome.io import atomic_write_text
from mome.models.avsr import AVSRModel, AVSROutput, build_model
from mome.precision import Resolved, resolve_precision
from mome.runs.base_models import fingerprints
from mome.runs.checkpoint import save_checkpoint
from mome.runs.load import load_checkpoint
from mome.stopping import StopSignals
from mome.training.faults import (
    Marked,
    NonFiniteGuard,
    SkipLog,
    check_finite,
    collate_marked,
    grad_norm,
    quiet_dataset,
)
from mome.training.lock import run_lock
from mome.training.metrics import MetricsLogger
from mome.training.optim import build_optimizer, build_scheduler
from mome.training.plateau import curve_value, plateau_reached, write_curve

RESUMABLE = (
    "train.max_steps", "train.epochs", "train.log_every_steps", "train.save_every_steps", "train.val_every_steps",
    "train.val_max_batches", "train.keep_checkpoints", "train.max_nonfinite_steps", "train.max_bad_fraction",
    "train.output_dir",
    "train.num_threads", "train.pack_sequences", "train.plateau.", "data.num_workers", "data.feature_cache",
    "decode.",
)  # fmt: skip
"""Config fields (or `section.` prefixes) that a resumed run may change: lengths, periods, places and speed,
nothing that changes what a step computes (packing changes only the layout of the same rows; the plateau rule
only where the run ends, as `max_steps` does). `train.precision`
is not one of them; `resume_precision` says when a change of it is let through."""
ACCELERATE_MIXED = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
"""`config.Precision` -> Accelerate's `mixed_precision`."""


@dataclass
class TrainState:
    step: int = 0  # optimiser steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already consumed
    curve: list[dict[str, Any]] = field(default_factory=list)
    """The validation-WER curve (`train.plateau`), one point per check: {"step", "wer" (the mean, %), "rates"
    ({key: WER %})}."""
    stop: dict[str, Any] | None = None
    """Why the run ended: {"reason": "plateau" | "cap", "step", "detail"}; None while it goes on."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _data_root(cfg: Config) -> Path:
    if cfg.data.root is None:
        raise UserError("data.root: not set; point it at a corpus (e.g. data.root=corpus from `mome synth corpus`)")
    root = Path(cfg.data.root).expanduser()
    if not root.is_dir():
        raise UserError(f"data.root: no such directory: {root}")
    return root


def _dataset(cfg: Config, labels: str, train: bool, cache: FeatureCache | None = None) -> AVDataset:
    """The utterances of a label file: media decoded and encoded at every step, or features from `cache`."""
    root = _data_root(cfg)
    path = Path(labels)  # absolute: DataConfig resolved it against the root
    if not path.is_file():
        raise UserError(f"label file not found: {path}")
    ds = make_dataset(cfg, path, root, train, cache, augment_seed=cfg.train.seed)
    if len(ds) == 0:
        first = f"; first: {ds.label_problems[0]}" if ds.label_problems else ""
        raise UserError(f"{path}: no usable rows ({len(ds.label_problems)} malformed{first})")
    return ds


def _loader(ds: AVDataset, sampler: Sampler, cfg: Config) -> DataLoader:
    """Batches as {"batch": collated or None, "failed": {id: reason}} (`faults.Marked`)."""
    workers = cfg.data.loader_workers
    return DataLoader(Marked(ds), batch_sampler=sampler, collate_fn=collate_marked, num_workers=workers,
                      persistent_workers=False)  # fmt: skip


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        out.update(_flat(value, f"{path}.") if isinstance(value, dict) else {path: value})
    return out


def config_changes(saved: dict[str, Any], new: Config) -> tuple[list[str], list[str]]:
    """(changes a resume may apply, changes it must refuse), each as `field: old -> new`."""
    try:
        saved = config_from_dict(saved).to_dict()  # the same normal form (old dtype names ...)
    except ConfigError:
        pass
    old, cur = _flat(saved), _flat(new.to_dict())
    changed = sorted(k for k in old.keys() | cur.keys() if old.get(k, "<unset>") != cur.get(k, "<unset>"))
    lines = {k: f"{k}: {old.get(k, '<unset>')} -> {cur.get(k, '<unset>')}" for k in changed}
    allowed = [lines[k] for k in changed if k.startswith(RESUMABLE)]
    return allowed, [lines[k] for k in changed if not k.startswith(RESUMABLE)]


def trained_precision(payload: dict[str, Any]) -> str | None:
    """The autocast precision a checkpoint's steps ran in: recorded in its training state since `auto` exists;
    older runs name it in their config (always explicit then). None if unknown."""
    recorded = payload.get("train_state", {}).get("precision")
    if recorded is None:
        recorded = (payload.get("config", {}).get("train") or {}).get("precision", "fp32")  # the old default
    return None if recorded == "auto" else recorded


def resume_precision(
    trained: str | None, now: Resolved, applied: list[str], refused: list[str]
) -> tuple[list[str], list[str], str]:
    """How a resume treats precision; returns (applied, refused, a note to print or "").

    - `train.precision` written differently but resolving to what the checkpoint trained in (an fp32 run of an
      older version resumed under the `auto` default on a CPU): the same steps, so applied.
    - written the same (`auto`) but resolving differently (the run moved to other hardware): applied, with a
      note, and precision.json keeps the earlier precision. Weights and optimiser state are fp32 either way;
      only the rounding inside a step changes, as fp32 rounding also changes from one machine to another.
    - written differently and resolving differently: refused, like any change of what a step computes."""
    changed = [c for c in refused if c.startswith("train.precision:")]
    if trained is None or trained == now.precision:
        return applied + changed, [c for c in refused if c not in changed], ""
    if not changed:
        note = (f"precision: the checkpoint's steps ran in {trained}, this run continues in {now.precision} "
                f"({now.reason}); weights and optimiser state are fp32 in both")  # fmt: skip
        return applied, refused, note
    hint = f" (resolves to {now.precision} here, but the run trained in {trained}: pass train.precision={trained})"
    return applied, [c + hint if c in changed else c for c in refused], ""


def record_precision(path: Path, resolved: Resolved, step: int) -> dict[str, Any]:
    """Write precision.json: this start's resolution, `from_step` the first step of the run in this precision,
    and under `earlier` the records of precisions the run used before (a resume on other hardware)."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):  # absent, or unreadable: start the record afresh
        old = {}
    old = old if isinstance(old, dict) else {}
    earlier = old.pop("earlier", None)
    earlier = earlier if isinstance(earlier, list) else []
    same = old.get("precision") == resolved.precision
    if old and not same:
        earlier.append(old)
    record = {**resolved.to_dict(), "from_step": old.get("from_step", step) if same else step, "earlier": earlier}
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return record


def _train_device() -> torch.device:
    """The device Accelerate trains on below (`cpu=` follows the same test)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _logged(point: dict[str, Any]) -> dict[str, float]:
    """A curve point as metrics.csv logs it: the mean `val/wer` and one `val/wer/<rates>` per combination."""
    return {"val/wer": point["wer"], **{f"val/wer/{k}": v for k, v in point["rates"].items()}}


def _all_sum(x: torch.Tensor, world: int) -> torch.Tensor:
    x = x.detach().float().clone()
    if world > 1:
        dist.all_reduce(x)
    return x


def _window_means(window: dict[str, list[float]]) -> dict[str, float]:
    """A logged row: the mean of each value over the steps since the previous row, so that no step's loss is
    dropped from the curve (single-step losses swing widely late in a long demo run; docs/experiments.md);
    lr and the count of skipped steps are the latest."""
    latest = ("lr", "skipped_steps")
    return {key: values[-1] if key in latest else sum(values) / len(values) for key, values in window.items()}


def _distributed_lm_loss(out: AVSROutput, world: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss to back-propagate, global LM loss, global CE per granularity: NaN for one without rows).

    Token CE is normalised by the *global* token count of each granularity, so that DDP's gradient averaging
    gives exactly the gradient of the loss over the global batch, and the logged loss is the global one."""
    counts = _all_sum(out.ce_counts, world)
    present = counts > 0  # granularities with rows on some rank (all but those a unified model's draw left out)
    local = (out.weights * out.ce_sums / counts.clamp_min(1)).sum() / present.sum().clamp_min(1)
    ce = torch.where(present, _all_sum(out.ce_sums, world) / counts.clamp_min(1), torch.nan)  # NaN: no rows
    return local * world, _all_sum(local, world), ce


class Trainer:
    """The training recipe in torchtune's shape: the constructor stores, `setup` builds (`_setup_*`), `fit`
    runs one loop of epochs, and `_after_step` does the periodic work (log, validate, save)."""

    def __init__(self, cfg: Config, resume: bool = True, restart_optimizer: bool = False) -> None:
        self.cfg, self.resume, self.restart_optimizer = cfg, resume, restart_optimizer
        self.run_dir = Path(cfg.train.output_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.state = TrainState()
        self.cache: FeatureCache | None = None  # data.feature_cache, opened in setup
        self.val_set: AVDataset | None = None  # built at the first validation
        self.window: dict[str, list[float]] = {}  # values of the steps since the last logged row
        self.signals = StopSignals()
        self.nonfinite = NonFiniteGuard(cfg.train.max_nonfinite_steps, f"train {self.run_dir}")
        self.skips = SkipLog(cfg.data.train_labels)
        self.val_skips = SkipLog(cfg.data.val_labels)

    def setup(self) -> Trainer:
        """Build everything a run needs, in order; the random state is seeded first."""
        self._setup_runtime()
        self._setup_model()
        self._setup_data()
        self._setup_optimizer()
        if self.resume:
            self._maybe_resume()
        if self.cache is not None:  # after the resume check: a refused resume costs no encoding
            self._fill_feature_cache()
        self.ddp_model = self.accel.prepare_model(self.model)
        self.logger = MetricsLogger(self.run_dir, enabled=self.main, resume_step=self.state.step)
        return self

    def _setup_runtime(self) -> None:
        cfg = self.cfg
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        device = _train_device()
        self.precision = resolve_precision(cfg.train.precision, device)
        if self.precision.precision == "fp16" and device.type != "cuda":
            raise UserError("train.precision: fp16 needs a CUDA GPU (Accelerate has no fp16 autocast on CPUs); "
                            "use auto, bf16 or fp32")  # fmt: skip
        mixed = ACCELERATE_MIXED[self.precision.precision]
        # a unified model's step may leave a projector unused (no sample drew its modality): DDP must not wait for it
        unused = (
            [DistributedDataParallelKwargs(find_unused_parameters=True)] if cfg.model.compression.task == "any" else []
        )
        self.accel = Accelerator(mixed_precision=mixed, cpu=device.type == "cpu", kwargs_handlers=unused)
        self.main = self.accel.is_main_process
        if self.main:
            print(f"train: {self.precision.describe()}", flush=True)
        set_seed(cfg.train.seed)

    def _setup_model(self) -> None:
        self.model: AVSRModel = build_model(self.cfg.model)
        # bf16 steps: bf16 frozen weights (no autocast re-cast), eager attention on CPUs
        self.model.prepare_training(self.precision.precision, self.precision.device)
        self.base_models = fingerprints(self.cfg.model) if self.main else {}  # saved with every checkpoint

    def _setup_data(self) -> None:
        cfg = self.cfg
        if cfg.data.feature_cache:
            _data_root(cfg)
            self.cache = FeatureCache.for_model(cfg, self.model)
        self.train_set = _dataset(cfg, cfg.data.train_labels, train=True, cache=self.cache)
        self.sampler = FrameBudgetBatchSampler(
            self.train_set.lengths, cfg.data.max_frames, shuffle=True, seed=cfg.train.seed,
            num_buckets=cfg.data.num_buckets, rank=self.accel.process_index, world_size=self.accel.num_processes,
        )  # fmt: skip
        self.total_steps = cfg.train.max_steps or cfg.train.epochs * len(self.sampler)
        self.train_set.clean_epochs = cfg.data.clean_epochs_for(self.total_steps, len(self.sampler))
        if self.main and cfg.data.curriculum:
            epochs = self.train_set.clean_epochs
            print(f"train: clean audio for the first {epochs} epochs (~{epochs * len(self.sampler)} of "
                  f"{self.total_steps} steps), then data.train_snrs", flush=True)  # fmt: skip
        labels = cfg.data.val_labels
        if cfg.train.plateau.enabled and not (labels and Path(labels).is_file()):
            raise UserError(
                f"train.plateau: needs a validation split to decode; data.val_labels: no such file: {labels}"
            )

    def _fill_feature_cache(self) -> None:
        """Compute the train and validation features the cache lacks: each rank its share, on its device, then
        every rank reads them all. A rank's error or stop signal stops every rank (none waits at the barrier)."""
        cfg, accel, cache = self.cfg, self.accel, self.cache
        for encoder in cache.encoders.values():
            encoder.to(accel.device)
        shard, failure = (accel.process_index, accel.num_processes), None
        splits = (("train", cfg.data.train_labels), ("val", cfg.data.val_labels))
        files = {split: Path(labels) for split, labels in splits if labels and Path(labels).is_file()}
        with self.signals:
            try:
                for split, stats in cache.fill_files(files, (), shard, self.main, self.signals).items():
                    if stats.utterances and self.main:
                        print(f"features {files[split].name}: {stats.line()}")
            except UserError as err:
                failure = err
        if accel.num_processes > 1:
            flags = torch.tensor([failure is not None, self.signals.signum or 0], device=accel.device)
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            if failure is None and flags[0]:
                failure = UserError("data.feature_cache: another rank failed to encode its share (see its error)")
            self.signals.signum = int(flags[1]) or None
        if failure is not None:
            raise failure
        if self.signals.stop:  # what is done is kept; the same command continues
            raise self.signals.interrupted(f"features for {self.run_dir}", None, "rerun the same command")
        accel.wait_for_everyone()
        cache.refresh()
        if self.main:
            print(cache.summary())

    def _setup_optimizer(self) -> None:
        self.optimizer = build_optimizer(self.model, self.cfg.train)
        self.scheduler = build_scheduler(self.optimizer, self.cfg.train, self.total_steps)

    # -------------------------------------------------------------------------------------- state
    def _maybe_resume(self) -> None:
        if not list(self.ckpt_dir.glob("step-*.pt")):
            return
        payload = load_checkpoint(self.ckpt_dir)  # the newest intact one (a damaged one is reported)
        path = payload["path"]
        applied, refused = config_changes(payload["config"], self.cfg)
        applied, refused, note = resume_precision(trained_precision(payload), self.precision, applied, refused)
        if refused and not self.restart_optimizer:
            raise UserError(
                f"{path}: the config differs from the run's in {'; '.join(refused)}; these cannot change on resume: "
                "pass --restart-optimizer (keep the weights, fresh optimiser and schedule) or choose a fresh "
                "train.output_dir"
            )
        try:
            self.model.load_trainable_state_dict(payload["model"])
        except KeyError as err:
            raise UserError(f"{path}: weights do not fit the config ({err}); choose a fresh train.output_dir") from None
        ts = payload["train_state"]
        self.state = TrainState(**ts["progress"])
        self.state.stop = self._stop_after_resume(self.state.stop)
        if self.restart_optimizer:  # a schedule of its own over the steps that remain
            self.optimizer = build_optimizer(self.model, self.cfg.train)
            self.scheduler = build_scheduler(self.optimizer, self.cfg.train, max(1, self.total_steps - self.state.step))
        else:
            self.optimizer.load_state_dict(ts["optimizer"])
            self.scheduler.load_state_dict(ts["scheduler"])
        if self.main:
            fresh = "; fresh optimiser and schedule" if self.restart_optimizer else ""
            changes = f"; applied {', '.join(sorted(applied + refused))}" if applied or refused else ""
            print(f"resuming from {path} (step {self.state.step}, epoch {self.state.epoch}){fresh}{changes}")
            if note:
                print(note)

    def save(self) -> Path | None:
        """Write a checkpoint (main process); never one of non-finite weights. Returns its path."""
        path = None
        if self.main:
            weights = self.model.trainable_state_dict()
            if not check_finite(weights.values()):
                raise UserError(f"{self.ckpt_dir}: non-finite weights at step {self.state.step}: no checkpoint written")
            train_state: dict[str, Any] = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "progress": self.state.to_dict(),
                "precision": self.precision.precision,  # what the steps ran in (`auto` resolves per machine)
            }
            path = save_checkpoint(self.ckpt_dir, self.state.step, weights, self.cfg, train_state,
                                   keep=self.cfg.train.keep_checkpoints, base_models=self.base_models)  # fmt: skip
            plateau = self.cfg.train.plateau
            if plateau.enabled:  # the curve of this checkpoint, for readers that do not load it
                write_curve(self.run_dir, self.state.curve, self.state.stop, self.state.step, self.total_steps,
                            asdict(plateau))  # fmt: skip
        self.accel.wait_for_everyone()
        return path

    # -------------------------------------------------------------------------------------- steps
    def train_step(self, batch: dict) -> dict[str, float] | None:
        """One optimiser step; None when the loss or the gradient is not finite (skipped, `NonFiniteGuard`)."""
        self.model.train()
        batch = to_device(batch, self.accel.device)
        world = self.accel.num_processes
        self.optimizer.zero_grad(set_to_none=True)
        if self.cfg.train.granularity_loop:
            lm_loss, ce, aux_loss, keys, aux = self._looped_backward(batch)
        else:
            with self.accel.autocast():
                features = self.model.encode(batch)
                out: AVSROutput = self.ddp_model(features, batch["texts"], packed=self.cfg.train.pack_sequences,
                                                 tasks=self._draw_tasks(len(batch["texts"])))  # fmt: skip
                loss, lm_loss, ce = _distributed_lm_loss(out, world)
                # MoME router terms (and CTC), weighted already (per rank, averaged by DDP)
                aux_loss = out.loss - out.lm_loss
                loss = loss + aux_loss
            self.accel.backward(loss)
            keys, aux = list(out.ce), out.aux
        aux_mean = _all_sum(aux_loss, world) / world  # the same on every rank, like the gradients
        norm = grad_norm(self.model.trainable_parameters())
        if not self.nonfinite.ok(lm_loss, aux_mean, norm, step=self.state.step + 1):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        if self.cfg.train.grad_clip:
            self.accel.clip_grad_norm_(self.model.trainable_parameters(), self.cfg.train.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        values = {"loss": (lm_loss + aux_mean).item(), "lm_loss": lm_loss.item(), "lr": self.scheduler.get_last_lr()[0]}
        if self.nonfinite.total:
            values["skipped_steps"] = float(self.nonfinite.total)
        values.update({f"ce/{k}": ce[i].item() for i, k in enumerate(keys) if not torch.isnan(ce[i])})
        prefix = {"ctc": ""}  # the projectors' CTC is not a router term
        values.update({f"{prefix.get(k, 'router/')}{k}": (_all_sum(v, world) / world).item() for k, v in aux.items()})
        return values

    def _draw_tasks(self, batch_size: int) -> list[SingleTask] | None:
        """A unified (`any`) model's task of each sample at this step (`train.task_mix`): a function of the
        seed, step and rank only, so that a resumed run draws what an unbroken one would."""
        if self.cfg.model.compression.task != "any":
            return None
        mix = self.cfg.task_mix
        seed = (self.cfg.train.seed * 1_000_003 + self.state.step) * 64 + self.accel.process_index
        drawn = torch.multinomial(torch.tensor(list(mix.values())), batch_size, replacement=True,
                                  generator=torch.Generator().manual_seed(seed))  # fmt: skip
        names = list(mix)
        return [names[i] for i in drawn.tolist()]  # type: ignore[misc]

    def _looped_backward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str], dict]:
        """`train.granularity_loop`: one forward + backward per granularity on the plain model, then one
        all-reduce of the gradients (DDP's hooks would wait for the projectors a granularity does not use).
        Each term is the batched loss's term for that granularity, so the gradient is the same."""
        world, model = self.accel.num_processes, self.model
        n = len(model.combinations)
        with self.accel.autocast(), torch.no_grad():
            features = model.encode(batch)
        lm_losses, ces, auxes, router = [], [], [], []
        for combo in model.combinations:
            with self.accel.autocast():
                out: AVSROutput = model(features, batch["texts"], [combo], packed=self.cfg.train.pack_sequences)
                loss, lm_loss, ce = _distributed_lm_loss(out, world)
                aux = out.loss - out.lm_loss
            self.accel.backward((loss + aux) / n)
            lm_losses.append(lm_loss)
            ces.append(ce)
            auxes.append(aux.detach())
            router.append(out.aux)
        if world > 1:
            for p in model.trainable_parameters():
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)
                p.grad /= world
        keys = [combination_key(c) for c in model.combinations]
        router_mean = {k: torch.stack([r[k].detach() for r in router]).mean() for k in (router[0] if router else {})}
        return torch.stack(lm_losses).mean(), torch.cat(ces), torch.stack(auxes).mean(), keys, router_mean

    def check_replicas(self) -> str:
        """Fail loudly if data-parallel replicas drifted apart; returns this rank's weight checksum."""
        flat = torch.cat([p.detach().float().reshape(-1) for p in self.model.trainable_parameters()])
        checksum = torch.stack([flat.sum(), (flat * torch.arange(flat.numel(), dtype=flat.dtype) % 7919).sum()])
        if self.accel.num_processes > 1:
            gathered = [torch.zeros_like(checksum) for _ in range(self.accel.num_processes)]
            dist.all_gather(gathered, checksum)
            if any(not torch.equal(g, gathered[0]) for g in gathered):
                raise RuntimeError(f"data-parallel replicas differ after training: {[g.tolist() for g in gathered]}")
        return f"{checksum[0].item():.10e}/{checksum[1].item():.10e}"

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Teacher-forced loss per granularity on the validation split (never the test split)."""
        cfg = self.cfg
        if not cfg.data.val_labels:
            return {}
        ds = self._val_dataset()
        sampler = FrameBudgetBatchSampler(ds.lengths, cfg.data.max_frames, shuffle=False,
                                          rank=self.accel.process_index, world_size=self.accel.num_processes)  # fmt: skip
        self.model.eval()
        sums: dict[str, float] = {}
        n = 0
        for i, marked in enumerate(_loader(ds, sampler, cfg)):
            self.val_skips.add(marked["failed"])
            batch = marked["batch"]
            if batch is None:
                continue
            if cfg.train.val_max_batches is not None and i >= cfg.train.val_max_batches:
                break
            batch = to_device(batch, self.accel.device)
            with self.accel.autocast():
                out = self.model(self.model.encode(batch), batch["texts"], packed=cfg.train.pack_sequences)
            for k, v in out.ce.items():
                sums[f"val/ce/{k}"] = sums.get(f"val/ce/{k}", 0.0) + v.item()
            sums["val/lm_loss"] = sums.get("val/lm_loss", 0.0) + out.lm_loss.item()
            n += 1
        return {k: v / max(1, n) for k, v in sums.items()}

    def _val_dataset(self) -> AVDataset:
        """The validation split, read (label file and corpus metadata) once, not at every validation."""
        if self.val_set is None:
            self.val_set = _dataset(self.cfg, self.cfg.data.val_labels, train=False, cache=self.cache)
        return self.val_set

    # -------------------------------------------------------------------------------------- plateau
    @torch.no_grad()
    def validation_wers(self) -> dict[str, float]:
        """WER (%) per decoded combination (`train.plateau.rates`) of the validation split, decoded greedily at
        the training precision by the main process (the others wait for its numbers, so every rank decides the
        same stop)."""
        cfg, plateau = self.cfg, self.cfg.train.plateau
        combos = [c for c in self.model.combinations if plateau.rates is None or combination_key(c) in plateau.rates]
        values = torch.zeros(len(combos), dtype=torch.float64, device=self.accel.device)
        if self.main:
            counts, failed = dataset_errors(self.model, cfg, self._val_dataset(), combos,
                                            replace(cfg.decode, num_beams=1), self.precision,
                                            plateau.max_utterances)  # fmt: skip
            self.val_skips.add(failed)
            values = torch.tensor([100 * counts[combination_key(c)].wer for c in combos], dtype=torch.float64,
                                  device=self.accel.device)  # fmt: skip
        if self.accel.num_processes > 1:
            dist.broadcast(values, src=0)
        return {combination_key(c): round(v, 4) for c, v in zip(combos, values.tolist())}

    def _plateau_check(self) -> dict[str, float]:
        """Add this step's point to the curve and stop the run if the rule says so; returns the values to log."""
        plateau, step = self.cfg.train.plateau, self.state.step
        wers = self.validation_wers()
        point = {"step": step, "wer": curve_value(wers), "rates": wers}
        self.state.curve = [p for p in self.state.curve if p["step"] < step] + [point]
        reason = plateau_reached([(p["step"], p["wer"]) for p in self.state.curve], plateau.min_gain, plateau.window,
                                 plateau.min_steps)  # fmt: skip
        if reason is not None:
            self.state.stop = {"reason": "plateau", "step": step, "detail": reason}
            if self.main:
                print(f"\ntrain: {reason}; stopping (cap {self.total_steps})", flush=True)
        return _logged(point)

    def _curve_row(self) -> dict[str, float]:
        """The logged values of the curve's point at the current step, if it has one (a validation row logged
        again at that step replaces the earlier row, so it carries them too)."""
        point = next((p for p in self.state.curve if p["step"] == self.state.step), None)
        return {} if point is None else _logged(point)

    def _stop_after_resume(self, stop: dict[str, Any] | None) -> dict[str, Any] | None:
        """A checkpoint's stop, as the config of this start sees it: the cap only while `max_steps` is not
        raised, a plateau only while the rule (perhaps changed) still finds one on the same curve."""
        if stop is None:
            return None
        if stop["reason"] == "cap":
            return stop if self.state.step >= self.total_steps else None
        plateau = self.cfg.train.plateau
        curve = [(p["step"], p["wer"]) for p in self.state.curve if p["step"] <= stop["step"]]
        found = plateau.enabled and plateau_reached(curve, plateau.min_gain, plateau.window, plateau.min_steps)
        return stop if found else None

    def finished(self) -> bool:
        """True when the run has nothing left to do: at the cap, or stopped on a plateau."""
        return self.state.step >= self.total_steps or self.state.stop is not None

    # -------------------------------------------------------------------------------------- loop
    def fit(self) -> dict[str, float]:
        """Train until `total_steps` (the cap) or a plateau (`train.plateau`), then save, check replicas and close
        the logs. SIGINT / SIGTERM: finish the step, save, raise `Interrupted` (exit 130 / 143); faults stop the
        run with a UserError."""
        if self.finished():  # a finished run: leave its checkpoint and logs untouched
            if self.main:
                why = f" ({self.state.stop['detail']})" if (self.state.stop or {}).get("reason") == "plateau" else ""
                print(f"{self.run_dir}: already trained for {self.state.step} steps{why}; nothing to do")
            return {}
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.yaml")  # the request (`auto`); precision.json: the choice
            record_precision(self.run_dir / "precision.json", self.precision, self.state.step)
        try:
            last = self._fit_epochs()
            if self.state.stop is None and self.state.step >= self.total_steps:
                self.state.stop = {
                    "reason": "cap",
                    "step": self.state.step,
                    "detail": f"cap of {self.total_steps} steps",
                }
            saved = self.save()
            checksum = self.check_replicas()
        finally:
            self.logger.close()
        if self.accel.num_processes > 1:
            print(f"[rank {self.accel.process_index}] trainable weights checksum {checksum}", flush=True)
        if self.signals.stop:
            raise self.signals.interrupted(f"train {self.run_dir} (step {self.state.step})", saved)
        return last if self.main else {}

    def _fit_epochs(self) -> dict[str, float]:
        """The epochs, with stop signals caught and per-utterance warnings given once (`faults`)."""
        bar = tqdm(total=self.total_steps, initial=self.state.step, disable=not self.main, desc="train", unit="step")
        last: dict[str, float] = {}
        with quiet_dataset(), self.signals:
            try:
                while not self.finished() and not self._should_stop():
                    last = self._train_epoch(bar) or last
            except Exception:
                if not self.signals.stop:  # a loader whose workers the Ctrl-C also reached: stop as asked
                    raise
            finally:
                bar.close()
        return last

    def _check_bad_rows(self) -> None:
        """Stop every rank once the rows left out (over all ranks) exceed `train.max_bad_fraction`."""
        failed = len(self.skips.failed)
        if self.accel.num_processes > 1:  # each rank loads its own batches: the sum is the run's count
            count = torch.tensor([failed], device=self.accel.device)
            dist.all_reduce(count)
            failed = int(count.item())
        error = self.skips.too_many(failed, len(self.train_set), len(self.train_set.label_problems),
                                    self.cfg.train.max_bad_fraction)  # fmt: skip
        if error is not None:
            raise error

    def _should_stop(self) -> bool:
        """A stop signal on any rank stops every rank at the same step (else DDP would wait forever)."""
        if self.accel.num_processes > 1:
            flag = torch.tensor([self.signals.signum or 0], device=self.accel.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.signals.signum = int(flag.item()) or None
        return self.signals.stop

    def epoch_batches(self) -> Iterator[dict]:
        """The current epoch's batches not yet trained on, as {"batch", "failed"} (`faults.Marked`)."""
        self.sampler.set_epoch(self.state.epoch)
        self.train_set.set_epoch(self.state.epoch)
        return iter(_loader(self.train_set, SkipFirst(self.sampler, self.state.batch_in_epoch), self.cfg))

    def _train_epoch(self, bar: tqdm) -> dict[str, float]:
        """The rest of the current epoch (after a resume: from the next unseen batch); returns the last
        step's metrics. A finished epoch advances the state, validates (unless by steps) and saves; more rows
        left out than `train.max_bad_fraction` (`SkipLog.too_many`) or an epoch that yields no batch at all
        (`SkipLog.no_batch`) stop the run."""
        cfg = self.cfg
        whole_epoch, yielded = self.state.batch_in_epoch == 0, 0
        last: dict[str, float] = {}
        for marked in self.epoch_batches():
            self.skips.add(marked["failed"])
            self._check_bad_rows()
            yielded += marked["batch"] is not None
            t0 = time.perf_counter()
            values = self.train_step(marked["batch"]) if marked["batch"] is not None else None
            self.state.batch_in_epoch += 1  # None: every item failed to load (reported), or a non-finite step
            if values is not None:
                last = {**values, "s_per_step": time.perf_counter() - t0}
                self.state.step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{last['loss']:.3f}", lr=f"{last['lr']:.1e}")
                self._after_step(last)
            if self.finished() or self._should_stop():
                return last
        if whole_epoch and not yielded:
            raise self.skips.no_batch(len(self.train_set), self.state.epoch)
        self.state.epoch += 1
        self.state.batch_in_epoch = 0
        if not cfg.train.val_every_steps:
            self.logger.log(self.state.step, {**self.validate(), **self._curve_row()})
        self.save()
        return last

    def _after_step(self, values: dict[str, float]) -> None:
        """The periodic work: a metrics row (the mean since the last row), validation, a checkpoint."""
        train_cfg, step = self.cfg.train, self.state.step
        for key, value in values.items():
            self.window.setdefault(key, []).append(value)
        if step % train_cfg.log_every_steps == 0 or step == 1:
            self.logger.log(step, {**_window_means(self.window), "epoch": self.state.epoch})
            self.window.clear()
        row = self.validate() if train_cfg.val_every_steps and step % train_cfg.val_every_steps == 0 else None
        if train_cfg.plateau.enabled and step % train_cfg.plateau.every_steps == 0:
            row = {**(row or {}), **self._plateau_check()}  # one validation row per step (`metrics`)
        if row is not None:
            self.logger.log(step, row)
        if step % train_cfg.save_every_steps == 0:
            self.save()


def train(cfg: Config, resume: bool = True, restart_optimizer: bool = False) -> dict[str, float]:
    """Train `cfg` in its output directory (resuming if it holds a checkpoint); returns the last metrics.
    `restart_optimizer`: resume the weights only, with a fresh optimiser and schedule (any config change)."""
    if cfg.model.llm.path is None and not cfg.model.llm.allow_random_weights:
        raise UserError(
            "model.llm.path: not set; this preset describes the LLM's architecture only. Point it at a local "
            "Hugging Face directory (or `embedded:smollm2-135m`) to train, or set model.llm.allow_random_weights=true "
            "to train on random weights of that shape (for measurements only)"
        )
    if int(os.environ.get("RANK", "0")) != 0:  # data-parallel: the main process holds the run's lock
        return Trainer(cfg, resume=resume, restart_optimizer=restart_optimizer).setup().fit()
    with run_lock(Path(cfg.train.output_dir)):  # a second `mome train` into the directory stops in one line
        return Trainer(cfg, resume=resume, restart_optimizer=restart_optimizer).setup().fit()
