"""The one training loop of mome, in torchtune's shape: the constructor stores, `setup` builds (`_setup_*`),
`fit` runs the epochs. A recipe subclasses `Engine` and supplies its task: the model, the data, the loss
(`_backward`), and what happens after a step, at an epoch's end and at the end of the run.

    setup: runtime (seed) -> model -> data -> optimiser + schedule -> resume from the newest checkpoint
    loop:  epoch batches (from the next unseen one) -> step (non-finite guard, clipping) -> the task's periodic work
    end:   the task's finish (save, validate, write its product)

Two recipes run on it: `mome train` (`recipe.Trainer`, the AVSR model) and `mome pretrain-video`
(`pretrain_video.LipPretrainer`, the lip encoder). Both checkpoint and resume the same way: `step-*.pt` files
of `runs.checkpoint` (format `mome-checkpoint-1`: the config, the model's weights, and a training state of
optimiser, schedule, progress and the recipe's own fields) under `<run>/checkpoints`, and a resume compares
the saved config with the new one (`config_changes`: the recipe's `resumable` fields may change). Batches are
a function of (seed, epoch) and augmentation of (seed, epoch, utterance), so a resumed run sees the data an
uninterrupted one would. Faults (signals, non-finite steps, unreadable data): `mome.training.faults`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from mome.config import Config, config_from_dict
from mome.data.bucketing import FrameBudgetBatchSampler, SkipFirst
from mome.data.collate import to_device
from mome.data.dataset import AVDataset
from mome.errors import ConfigError, UserError
from mome.runs.checkpoint import save_checkpoint
from mome.runs.load import load_checkpoint
from mome.stopping import StopSignals
from mome.training.faults import Marked, NonFiniteGuard, SkipLog, check_finite, collate_marked, grad_norm, quiet_dataset
from mome.training.optim import build_optimizer, build_scheduler
from mome.training.plateau import CurvePoint, Stop


@dataclass
class TrainState:
    step: int = 0  # optimiser steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already consumed
    curve: list[CurvePoint] = field(default_factory=list)
    """The validation-WER curve (`train.plateau`), one point per check."""
    stop: Stop | None = None
    """Why the run ended; None while it goes on."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The state a checkpoint's `progress` holds (`to_dict`)."""
        curve = [CurvePoint(**p) for p in data.get("curve", [])]
        stop = None if data.get("stop") is None else Stop(**data["stop"])
        return cls(**{**data, "curve": curve, "stop": stop})


class LocalRuntime:
    """What `Engine` asks of Accelerate, for one process on the CPU in fp32 without it (lip pretraining):
    Accelerate's state, once made in a process, refuses a later Accelerator on another device or precision,
    and the demo pretrains the lip encoder in the process that then runs `mome train`."""

    device = torch.device("cpu")
    is_main_process = True
    num_processes = 1
    process_index = 0

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip_grad_norm_(self, parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    def wait_for_everyone(self) -> None:
        pass

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        out.update(_flat(value, f"{path}.") if isinstance(value, dict) else {path: value})
    return out


def config_changes(saved: dict[str, Any], new: Config, resumable: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(changes a resume may apply: fields or `section.` prefixes in `resumable`, changes it must refuse), each
    as `field: old -> new`."""
    try:
        saved = config_from_dict(saved, checked=False).to_dict()  # the same normal form (old dtype names, new fields)
    except ConfigError:
        pass
    old, cur = _flat(saved), _flat(new.to_dict())
    changed = sorted(k for k in old.keys() | cur.keys() if old.get(k, "<unset>") != cur.get(k, "<unset>"))
    lines = {k: f"{k}: {old.get(k, '<unset>')} -> {cur.get(k, '<unset>')}" for k in changed}
    allowed = [lines[k] for k in changed if k.startswith(resumable)]
    return allowed, [lines[k] for k in changed if not k.startswith(resumable)]


def batch_loader(ds: AVDataset, sampler: Sampler, workers: int) -> DataLoader:
    """Batches as {"batch": collated or None, "failed": {id: reason}} (`faults.Marked`)."""
    return DataLoader(
        Marked(ds), batch_sampler=sampler, collate_fn=collate_marked, num_workers=workers, persistent_workers=False
    )


class Engine:
    """The loop; a recipe supplies `_setup_runtime` (sets `accel`, `main`; seeds), `_setup_model` (`model`),
    `_setup_data` (`train_set`, `sampler`, `total_steps`), `_backward` and the hooks below."""

    what = "train"
    """The command, for messages and the progress bar."""
    resumable: tuple[str, ...] = ()
    """Config fields (or `section.` prefixes) that a resumed run may change (`config_changes`)."""

    model: nn.Module
    train_set: AVDataset
    sampler: FrameBudgetBatchSampler
    total_steps: int

    def __init__(self, cfg: Config, resume: bool = True) -> None:
        self.cfg, self.resume = cfg, resume
        self.run_dir = Path(cfg.train.output_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.state = TrainState()
        self.signals = StopSignals()
        self.nonfinite = NonFiniteGuard(cfg.train.max_nonfinite_steps, self._where())
        self.skips = SkipLog(cfg.data.train_labels)
        self.accel: Any = LocalRuntime()
        self.main = True

    def _where(self) -> str:
        return f"{self.what} {self.run_dir}"

    # -------------------------------------------------------------------------------------- setup
    def setup(self) -> Self:
        """Build everything a run needs, in order; the random state is seeded first."""
        self._setup_runtime()
        self._setup_model()
        self._setup_data()
        self._setup_optimizer()
        if self.resume:
            self._maybe_resume()
        self._setup_after_resume()
        return self

    def _setup_runtime(self) -> None:
        raise NotImplementedError

    def _setup_model(self) -> None:
        raise NotImplementedError

    def _setup_data(self) -> None:
        raise NotImplementedError

    def _setup_optimizer(self) -> None:
        self.optimizer = build_optimizer(self.model, self.cfg.train)
        self.scheduler = build_scheduler(self.optimizer, self.cfg.train, self.total_steps)

    def _setup_after_resume(self) -> None:
        """What a run needs once it knows where it starts (a refused resume costs none of it)."""

    # -------------------------------------------------------------------------------------- state
    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.model.parameters() if p.requires_grad)

    def _weights(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds of the model."""
        return self.model.state_dict()

    def _load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(weights)

    def _extra_state(self) -> dict[str, Any]:
        """The recipe's own fields of a checkpoint's training state."""
        return {}

    def _base_models(self) -> dict[str, Any]:
        """The fingerprints of the frozen models the run trains on (`runs.base_models`)."""
        return {}

    def _maybe_resume(self) -> None:
        """Continue from the newest intact checkpoint of the run directory, if it has one."""
        if not list(self.ckpt_dir.glob("step-*.pt")):
            return
        payload = load_checkpoint(self.ckpt_dir)  # the newest intact one (a damaged one is reported)
        applied = self._check_config(payload)
        try:
            self._load_weights(payload["model"])
        except KeyError as err:
            raise UserError(
                f"{payload['path']}: weights do not fit the config ({err}); {self._fresh_start()}"
            ) from None
        ts = payload["train_state"]
        self.state = TrainState.from_dict(ts["progress"])
        self._restore(ts)
        self._resumed(payload["path"], applied)

    def _check_config(self, payload: dict[str, Any]) -> list[str]:
        """The config changes a resume applies (printed); a change it may not apply raises a UserError."""
        applied, refused = config_changes(payload["config"], self.cfg, self.resumable)
        if refused:
            raise UserError(
                f"{payload['path']}: the config differs from the run's in {'; '.join(refused)}; these "
                f"cannot change on resume: {self._fresh_start()}"
            )
        return applied

    def _fresh_start(self) -> str:
        """How to start over instead, in a message."""
        return f"delete {self.run_dir} to start over"

    def _restore(self, train_state: dict[str, Any]) -> None:
        """The optimiser, the schedule and the recipe's fields of a checkpoint's training state."""
        self.optimizer.load_state_dict(train_state["optimizer"])
        self.scheduler.load_state_dict(train_state["scheduler"])

    def _resumed(self, path: str, applied: list[str]) -> None:
        """The one resume message: where, the progress, then the task's `_resume_notes` and the config changes."""
        if not self.main:
            return
        notes = [*self._resume_notes(), *([f"applied {', '.join(sorted(applied))}"] if applied else [])]
        print(
            f"resuming from {path} (step {self.state.step}, epoch {self.state.epoch})"
            + "".join(f"; {n}" for n in notes)
        )

    def _resume_notes(self) -> list[str]:
        """What a task adds to the resume message (e.g. a fresh optimiser)."""
        return []

    def save(self) -> Path | None:
        """Write a checkpoint (main process); never one of non-finite weights. Returns its path."""
        path = None
        if self.main:
            weights = self._weights()
            if not check_finite(weights.values()):
                raise UserError(f"{self.ckpt_dir}: non-finite weights at step {self.state.step}: no checkpoint written")
            train_state: dict[str, Any] = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "progress": self.state.to_dict(),
                **self._extra_state(),
            }
            path = save_checkpoint(
                self.ckpt_dir,
                self.state.step,
                weights,
                self.cfg,
                train_state,
                keep=self.cfg.train.keep_checkpoints,
                base_models=self._base_models(),
            )
            self._saved()
        self.accel.wait_for_everyone()
        return path

    def _saved(self) -> None:
        """After a checkpoint is written (main process)."""

    # -------------------------------------------------------------------------------------- steps
    def _backward(self, batch: dict) -> tuple[tuple[torch.Tensor, ...], Any]:
        """Forward and backward of one batch: (the values that must be finite for the step to be taken, what
        `_step_values` turns into the step's logged values)."""
        raise NotImplementedError

    def _step_values(self, out: Any) -> dict[str, float]:
        raise NotImplementedError

    def train_step(self, batch: dict) -> dict[str, float] | None:
        """One optimiser step; None when the loss or the gradient is not finite (skipped, `NonFiniteGuard`)."""
        self.model.train()
        batch = to_device(batch, self.accel.device)
        self.optimizer.zero_grad(set_to_none=True)
        checks, out = self._backward(batch)
        norm = grad_norm(self.trainable_parameters())
        if not self.nonfinite.ok(*checks, norm, step=self.state.step + 1):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        if self.cfg.train.grad_clip:
            self.accel.clip_grad_norm_(self.trainable_parameters(), self.cfg.train.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return self._step_values(out)

    # -------------------------------------------------------------------------------------- loop
    def finished(self) -> bool:
        """True when the run has nothing left to do: at the cap, or stopped (`TrainState.stop`)."""
        return self.state.step >= self.total_steps or self.state.stop is not None

    def fit(self) -> dict[str, float]:
        """Train until `total_steps` (or the recipe's stop), then `_finish`. SIGINT / SIGTERM: finish the step,
        save, raise `Interrupted` (exit 130 / 143); faults stop the run with a UserError."""
        if self.finished():
            self._already_finished()
            return {}
        self._begin()
        try:
            last = self._fit_epochs()
            saved = self._finish()
        finally:
            self._close()
        if self.signals.stop:
            raise self.signals.interrupted(f"{self._where()} (step {self.state.step})", saved)
        return last if self.main else {}

    def _already_finished(self) -> None:
        """A finished run, started again: its checkpoint and logs are left as they are."""

    def _begin(self) -> None:
        """Before the first step of this start."""

    def _finish(self) -> Path | None:
        """After the last step (or a stop signal): save; returns the checkpoint written, if any."""
        return self.save()

    def _close(self) -> None:
        """Always, after the loop (logs)."""

    def _progress_bar(self) -> tqdm:
        return tqdm(total=self.total_steps, initial=self.state.step, disable=not self.main, desc=self.what, unit="step")

    def _show(self, bar: tqdm, values: dict[str, float]) -> None:
        bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{values['lr']:.1e}")

    def _fit_epochs(self) -> dict[str, float]:
        """The epochs, with stop signals caught and per-utterance warnings given once (`faults`)."""
        bar = self._progress_bar()
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
        """Stop once the rows left out exceed `train.max_bad_fraction` (a recipe with ranks sums theirs)."""
        error = self.skips.too_many(
            len(self.skips.failed),
            len(self.train_set),
            len(self.train_set.label_problems),
            self.cfg.train.max_bad_fraction,
        )
        if error is not None:
            raise error

    def _should_stop(self) -> bool:
        return self.signals.stop

    def epoch_batches(self) -> Iterator[dict]:
        """The current epoch's batches not yet trained on, as {"batch", "failed"} (`faults.Marked`)."""
        self.sampler.set_epoch(self.state.epoch)
        self.train_set.set_epoch(self.state.epoch)  # before iter(): workers copy the dataset when they start
        skip = SkipFirst(self.sampler, self.state.batch_in_epoch)
        return iter(batch_loader(self.train_set, skip, self.cfg.data.loader_workers))

    def _train_epoch(self, bar: tqdm) -> dict[str, float]:
        """The rest of the current epoch (after a resume: from the next unseen batch); returns the last
        step's metrics. More rows left out than `train.max_bad_fraction` (`SkipLog.too_many`) or an epoch that
        yields no batch at all (`SkipLog.no_batch`) stop the run."""
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
                self._show(bar, last)
                self._after_step(last)
            if self.finished() or self._should_stop():
                return last
        if whole_epoch and not yielded:
            raise self.skips.no_batch(len(self.train_set), self.state.epoch)
        self.state.epoch += 1
        self.state.batch_in_epoch = 0
        self._after_epoch()
        return last

    def _after_step(self, values: dict[str, float]) -> None:
        """The periodic work after a step (log, validate, save)."""

    def _after_epoch(self) -> None:
        """The work at an epoch's end."""
