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
schedule). The loop, the checkpoints and the resume are `mome.training.engine`'s, shared with `mome
pretrain-video`; this module supplies the AVSR task (model, data, loss, validation) on it. Faults (signals,
non-finite steps, unreadable data): `mome.training.faults`. One process trains into a run directory at a time
(`mome.training.lock`); metrics.csv rows are keyed by step (`metrics`).
With `train.plateau` the run also stops once its validation WER has stopped improving (`mome.training.plateau`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch import nn

from mome.config import Config, SingleTask, combination_key, save_config
from mome.data.bucketing import FrameBudgetBatchSampler
from mome.data.collate import to_device
from mome.data.dataset import AVDataset
from mome.errors import UserError
from mome.evaluation.evaluate import dataset_errors
from mome.features.cache import FeatureCache
from mome.features.dataset import make_dataset
from mome.io import atomic_write_text
from mome.models.avsr import AVSRModel, AVSROutput, build_model
from mome.precision import Resolved, resolve_precision
from mome.runs.base_models import fingerprints
from mome.training import engine
from mome.training.engine import Engine, batch_loader
from mome.training.faults import SkipLog
from mome.training.lock import run_lock
from mome.training.metrics import MetricsLogger
from mome.training.optim import build_optimizer, build_scheduler
from mome.training.plateau import CurvePoint, Stop, curve_value, plateau_reached, write_curve

RESUMABLE = (
    "train.max_steps",
    "train.epochs",
    "train.log_every_steps",
    "train.save_every_steps",
    "train.val_every_steps",
    "train.val_max_batches",
    "train.keep_checkpoints",
    "train.max_nonfinite_steps",
    "train.max_bad_fraction",
    "train.output_dir",
    "train.num_threads",
    "train.pack_sequences",
    "train.plateau.",
    "data.num_workers",
    "data.feature_cache",
    "decode.",
    "lip.",
)
"""Config fields (or `section.` prefixes) that a resumed run may change: lengths, periods, places and speed,
nothing that changes what a step computes (packing changes only the layout of the same rows; the plateau rule
only where the run ends, as `max_steps` does; `lip.*` is `mome pretrain-video`'s). `train.precision`
is not one of them; `resume_precision` says when a change of it is let through."""
ACCELERATE_MIXED = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
"""`config.Precision` -> Accelerate's `mixed_precision`."""


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


def config_changes(saved: dict[str, Any], new: Config) -> tuple[list[str], list[str]]:
    """(changes a resume may apply, changes it must refuse), each as `field: old -> new` (`RESUMABLE`)."""
    return engine.config_changes(saved, new, RESUMABLE)


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
        note = (
            f"precision: the checkpoint's steps ran in {trained}, this run continues in {now.precision} "
            f"({now.reason}); weights and optimiser state are fp32 in both"
        )
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


def _logged(point: CurvePoint) -> dict[str, float]:
    """A curve point as metrics.csv logs it: the mean `val/wer` and one `val/wer/<rates>` per combination."""
    return {"val/wer": point.wer, **{f"val/wer/{k}": v for k, v in point.rates.items()}}


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


class Trainer(Engine):
    """The AVSR recipe on the shared loop (`engine.Engine`): the model (frozen encoders and LLM, trainable
    projectors and adapters), the data, the loss of every granularity, and the periodic work of `_after_step`
    (log, validate, save); on Accelerate, data-parallel."""

    what = "train"
    resumable = RESUMABLE

    def __init__(self, cfg: Config, resume: bool = True, restart_optimizer: bool = False) -> None:
        super().__init__(cfg, resume)
        self.restart_optimizer = restart_optimizer
        self.cache: FeatureCache | None = None  # data.feature_cache, opened in setup
        self.val_set: AVDataset | None = None  # built at the first validation
        self.window: dict[str, list[float]] = {}  # values of the steps since the last logged row
        self.val_skips = SkipLog(cfg.data.val_labels)
        self.resume_note = ""  # `resume_precision`'s, printed with the resume

    def _setup_after_resume(self) -> None:
        if self.cache is not None:  # after the resume check: a refused resume costs no encoding
            self._fill_feature_cache()
        self.ddp_model = self.accel.prepare_model(self.model)
        self.logger = MetricsLogger(self.run_dir, enabled=self.main, resume_step=self.state.step)

    def _setup_runtime(self) -> None:
        cfg = self.cfg
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        device = _train_device()
        self.precision = resolve_precision(cfg.train.precision, device)
        if self.precision.precision == "fp16" and device.type != "cuda":
            raise UserError(
                "train.precision: fp16 needs a CUDA GPU (Accelerate has no fp16 autocast on CPUs); "
                "use auto, bf16 or fp32"
            )
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
            self.train_set.lengths,
            cfg.data.max_frames,
            shuffle=True,
            seed=cfg.train.seed,
            num_buckets=cfg.data.num_buckets,
            rank=self.accel.process_index,
            world_size=self.accel.num_processes,
        )
        self.total_steps = cfg.train.max_steps or cfg.train.epochs * len(self.sampler)
        self.train_set.clean_epochs = cfg.data.clean_epochs_for(self.total_steps, len(self.sampler))
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

    # -------------------------------------------------------------------------------------- state
    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return self.model.trainable_parameters()

    def _weights(self) -> dict[str, torch.Tensor]:
        return self.model.trainable_state_dict()  # never the frozen LLM or encoders

    def _load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        self.model.load_trainable_state_dict(weights)

    def _extra_state(self) -> dict[str, Any]:
        return {"precision": self.precision.precision}  # what the steps ran in (`auto` resolves per machine)

    def _base_models(self) -> dict[str, Any]:
        return self.base_models

    def _fresh_start(self) -> str:
        return "choose a fresh train.output_dir"

    def _check_config(self, payload: dict[str, Any]) -> list[str]:
        """`config_changes` and `resume_precision`; with `restart_optimizer` any change is applied."""
        applied, refused = config_changes(payload["config"], self.cfg)
        applied, refused, self.resume_note = resume_precision(
            trained_precision(payload), self.precision, applied, refused
        )
        if refused and not self.restart_optimizer:
            raise UserError(
                f"{payload['path']}: the config differs from the run's in {'; '.join(refused)}; these cannot change on "
                "resume: pass --restart-optimizer (keep the weights, fresh optimiser and schedule) or choose a fresh "
                "train.output_dir"
            )
        return applied + refused

    def _restore(self, train_state: dict[str, Any]) -> None:
        self.state.stop = self._stop_after_resume(self.state.stop)
        if self.restart_optimizer:  # a schedule of its own over the steps that remain
            self.optimizer = build_optimizer(self.model, self.cfg.train)
            self.scheduler = build_scheduler(self.optimizer, self.cfg.train, max(1, self.total_steps - self.state.step))
        else:
            super()._restore(train_state)

    def _resumed(self, path: str, applied: list[str]) -> None:
        super()._resumed(path, applied)
        if self.main and self.resume_note:
            print(self.resume_note)

    def _resume_notes(self) -> list[str]:
        return ["fresh optimiser and schedule"] if self.restart_optimizer else []

    def _saved(self) -> None:
        plateau = self.cfg.train.plateau
        if plateau.enabled:  # the curve of this checkpoint, for readers that do not load it
            write_curve(
                self.run_dir, self.state.curve, self.state.stop, self.state.step, self.total_steps, asdict(plateau)
            )

    # -------------------------------------------------------------------------------------- steps
    def _backward(self, batch: dict) -> tuple[tuple[torch.Tensor, ...], Any]:
        """All granularities' loss, back-propagated (`train.granularity_loop`: one granularity at a time)."""
        world = self.accel.num_processes
        if self.cfg.train.granularity_loop:
            lm_loss, ce, aux_loss, keys, aux = self._looped_backward(batch)
        else:
            with self.accel.autocast():
                features = self.model.encode(batch)
                out: AVSROutput = self.ddp_model(
                    features,
                    batch["texts"],
                    packed=self.cfg.train.pack_sequences,
                    tasks=self._draw_tasks(len(batch["texts"])),
                )
                loss, lm_loss, ce = _distributed_lm_loss(out, world)
                # MoME router terms (and CTC), weighted already (per rank, averaged by DDP)
                aux_loss = out.loss - out.lm_loss
                loss = loss + aux_loss
            self.accel.backward(loss)
            keys, aux = list(out.ce), out.aux
        aux_mean = _all_sum(aux_loss, world) / world  # the same on every rank, like the gradients
        return (lm_loss, aux_mean), (lm_loss, ce, aux_mean, keys, aux)

    def _step_values(self, out: Any) -> dict[str, float]:
        lm_loss, ce, aux_mean, keys, aux = out
        world = self.accel.num_processes
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
        drawn = torch.multinomial(
            torch.tensor(list(mix.values())),
            batch_size,
            replacement=True,
            generator=torch.Generator().manual_seed(seed),
        )
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
        sampler = FrameBudgetBatchSampler(
            ds.lengths,
            cfg.data.max_frames,
            shuffle=False,
            rank=self.accel.process_index,
            world_size=self.accel.num_processes,
        )
        self.model.eval()
        sums: dict[str, float] = {}
        n = 0
        for i, marked in enumerate(batch_loader(ds, sampler, cfg.data.loader_workers)):
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
            counts, failed = dataset_errors(
                self.model,
                cfg,
                self._val_dataset(),
                combos,
                replace(cfg.decode, num_beams=1),
                self.precision,
                plateau.max_utterances,
            )
            self.val_skips.add(failed)
            values = torch.tensor(
                [100 * counts[combination_key(c)].wer for c in combos], dtype=torch.float64, device=self.accel.device
            )
        if self.accel.num_processes > 1:
            dist.broadcast(values, src=0)
        return {combination_key(c): round(v, 4) for c, v in zip(combos, values.tolist())}

    def _plateau_check(self) -> dict[str, float]:
        """Add this step's point to the curve and stop the run if the rule says so; returns the values to log."""
        plateau, step = self.cfg.train.plateau, self.state.step
        wers = self.validation_wers()
        point = CurvePoint(step, curve_value(wers), wers)
        self.state.curve = [p for p in self.state.curve if p.step < step] + [point]
        reason = plateau_reached(
            [(p.step, p.wer) for p in self.state.curve], plateau.min_gain, plateau.window, plateau.min_steps
        )
        if reason is not None:
            self.state.stop = Stop("plateau", step, reason)
            if self.main:
                print(f"\ntrain: {reason}; stopping (cap {self.total_steps})", flush=True)
        return _logged(point)

    def _curve_row(self) -> dict[str, float]:
        """The logged values of the curve's point at the current step, if it has one (a validation row logged
        again at that step replaces the earlier row, so it carries them too)."""
        point = next((p for p in self.state.curve if p.step == self.state.step), None)
        return {} if point is None else _logged(point)

    def _stop_after_resume(self, stop: Stop | None) -> Stop | None:
        """A checkpoint's stop, as the config of this start sees it: the cap only while `max_steps` is not
        raised, a plateau only while the rule (perhaps changed) still finds one on the same curve."""
        if stop is None:
            return None
        if stop.reason == "cap":
            return stop if self.state.step >= self.total_steps else None
        plateau = self.cfg.train.plateau
        curve = [(p.step, p.wer) for p in self.state.curve if p.step <= stop.step]
        found = plateau.enabled and plateau_reached(curve, plateau.min_gain, plateau.window, plateau.min_steps)
        return stop if found else None

    # -------------------------------------------------------------------------------------- loop
    def _already_finished(self) -> None:
        if self.main:
            stop = self.state.stop
            why = f" ({stop.detail})" if stop is not None and stop.reason == "plateau" else ""
            print(f"{self.run_dir}: already trained for {self.state.step} steps{why}; nothing to do")

    def _begin(self) -> None:
        if self.main:
            if self.cfg.data.curriculum:  # here, not in setup: the demo's step-time probe sets up a run it never fits
                epochs = self.train_set.clean_epochs
                print(
                    f"train: clean audio for the first {epochs} epochs (~{epochs * len(self.sampler)} of "
                    f"{self.total_steps} steps), then data.train_snrs",
                    flush=True,
                )
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.yaml")  # the request (`auto`); precision.json: the choice
            record_precision(self.run_dir / "precision.json", self.precision, self.state.step)

    def _finish(self) -> Path | None:
        """At the cap (or a plateau, or a stop signal): save, and check that the replicas agree."""
        if self.state.stop is None and self.state.step >= self.total_steps:
            self.state.stop = Stop("cap", self.state.step, f"cap of {self.total_steps} steps")
        saved = self.save()
        checksum = self.check_replicas()
        if self.accel.num_processes > 1:
            print(f"[rank {self.accel.process_index}] trainable weights checksum {checksum}", flush=True)
        return saved

    def _close(self) -> None:
        self.logger.close()

    def _check_bad_rows(self) -> None:
        """Stop every rank once the rows left out (over all ranks) exceed `train.max_bad_fraction`."""
        failed = len(self.skips.failed)
        if self.accel.num_processes > 1:  # each rank loads its own batches: the sum is the run's count
            count = torch.tensor([failed], device=self.accel.device)
            dist.all_reduce(count)
            failed = int(count.item())
        error = self.skips.too_many(
            failed, len(self.train_set), len(self.train_set.label_problems), self.cfg.train.max_bad_fraction
        )
        if error is not None:
            raise error

    def _should_stop(self) -> bool:
        """A stop signal on any rank stops every rank at the same step (else DDP would wait forever)."""
        if self.accel.num_processes > 1:
            flag = torch.tensor([self.signals.signum or 0], device=self.accel.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.signals.signum = int(flag.item()) or None
        return self.signals.stop

    def _after_epoch(self) -> None:
        """Validate (unless by steps) and save."""
        if not self.cfg.train.val_every_steps:
            self.logger.log(self.state.step, {**self.validate(), **self._curve_row()})
        self.save()

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
