"""Pretrain the compact lip encoder (AV-HuBERT's architecture, `ARCHS["compact"]`) from scratch.

No pretrained lip encoder exists offline, so the CPU demo trains its own on the TRAIN split of the synthetic
corpus, then freezes it, as AV-HuBERT is frozen in the paper. The validation split gives the score; the test
split is never read.

    video [B,T,1,88,88] (random crop 88, time masks) ─> AVHubertEncoder ─> [B,T,D]
        ├─ viseme head  Linear(D→12): cross-entropy against `frame_visemes`     (objective visemes | both)
        └─ CTC head     Linear(D→1+28): CTC on the lowercase characters         (objective ctc-chars | both)

The heads are thrown away; `save_lip_encoder` writes only the (frozen) encoder, which
`avhubert_checkpoint.build_video_encoder` loads from `model.encoders.video.path`.

Why `both` is the default: CTC on characters alone, from scratch and in a CPU budget, barely gets past
emitting blanks. Per-frame viseme labels give every frame a target, so the front end learns mouth shapes
within a few hundred steps; adding the CTC term costs nothing per step, keeps most of that, and gives the best
linear character probe, which is closest to what the LLM has to read off (the comparison and the speed:
docs/experiments.md, section 3).

The run is a `LipPretrainer` on the training loop of `mome train` (`mome.training.engine`), its settings a
`Config` (`lip_config`: steps, optimiser and seed in `train`, corpus and batches in `data`, the rest in `lip`).
Faults as in `mome train` (`mome.training.faults`): SIGINT / SIGTERM save the run so far as a checkpoint of
the run directory `<out>.partial/` and exit with 130 / 143 (rerunning the same command continues from it;
the encoder file is written only at the end); non-finite steps are skipped (5 in a row stop it); an epoch
without a single batch stops it.
"""

from __future__ import annotations

import shutil
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from mome.config import Config, DataConfig, LipConfig, LipObjective, TrainConfig, validate
from mome.data.bucketing import FrameBudgetBatchSampler
from mome.data.collate import collate
from mome.data.dataset import AVDataset
from mome.errors import UserError
from mome.evaluation.wer import character_errors
from mome.models.avhubert import AVHubertEncoder, FrameCTCHead, build_avhubert
from mome.models.avhubert_checkpoint import lip_encoder_file
from mome.runs.checkpoint import save_torch
from mome.synthetic.visemes import VISEMES
from mome.training.engine import Engine

OBJECTIVES: tuple[str, ...] = typing.get_args(LipObjective)
CHARS = " abcdefghijklmnopqrstuvwxyz'"
"""CTC vocabulary after the blank (index 0); other characters of a transcript are dropped."""
IGNORE = -100
LOSS_TERMS = ("loss", "ce", "ctc")
RESUMABLE = ("data.num_workers", "train.num_threads", "train.output_dir", "lip.max_val")
"""Config fields that an interrupted run may change when it continues: they do not change what a step computes."""


def lip_config(
    corpus_root: str | Path,
    steps: int = 200,
    seed: int = 0,
    out_path: str | Path | None = None,
    *,
    arch: str = "compact",
    objective: str = "both",
    max_frames: int = 320,
    lr: float = 2e-3,
    warmup: float = 0.1,
    weight_decay: float = 0.01,
    ctc_weight: float = 1.0,
    num_workers: int = 1,
    threads: int | None = None,
    max_val: int | None = None,
    time_mask: bool = False,
) -> Config:
    """A pretraining run in the config tree; the defaults fit the demo's ~2 minute budget on 2 CPU cores.

    `steps` optimiser steps (the cosine schedule spans them; epochs repeat with fresh augmentation) in batches
    of `max_frames` padded frames; AdamW (default betas) at peak `lr` after a linear warmup over `warmup` of the
    steps (at least one), gradients clipped at 5; `num_workers` DataLoader workers (mp4 decoding overlaps the
    step), `threads` torch intra-op threads (None: torch's default). `time_mask`: auto_avsr's video time masks
    (off: in the demo's budget they cost val viseme accuracy and VSR WER, docs/experiments.md, section 3.2).
    `out_path`: the encoder file; its run directory is `partial_path(out_path)`."""
    if objective not in OBJECTIVES:
        raise UserError(f"--objective {objective!r}: choose from {', '.join(OBJECTIVES)}")
    if steps < 1:
        raise UserError("--steps must be at least 1")
    data = DataConfig(root=str(corpus_root), time_mask=time_mask, max_frames=max_frames, num_workers=num_workers)
    train = TrainConfig(
        seed=seed,
        lr=lr,
        weight_decay=weight_decay,
        betas=[0.9, 0.999],
        warmup_steps=max(1, int(warmup * steps)),
        max_steps=steps,
        grad_clip=5.0,
        max_bad_fraction=1.0,
        num_threads=threads or None,
    )
    if out_path is not None:
        train.output_dir = str(partial_path(out_path))
    lip = LipConfig(arch=arch, objective=objective, ctc_weight=ctc_weight, max_val=max_val)  # type: ignore[arg-type]
    for name, section in (("data", data), ("train", train), ("lip", lip)):  # `model` is not used
        validate(section, name)
    return Config(name="pretrain-video", data=data, train=train, lip=lip)


# ------------------------------------------------------------------------------------------ targets
def char_targets(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated CTC targets and their lengths ([sum L], [B]); index 0 is the blank."""
    ids = [[CHARS.index(c) + 1 for c in " ".join(t.lower().split()) if c in CHARS] for t in texts]
    return torch.tensor([i for seq in ids for i in seq], dtype=torch.long), torch.tensor([len(s) for s in ids])


def viseme_targets(metas: list[dict], lengths: torch.Tensor, t_max: int) -> torch.Tensor:
    """[B, T] viseme class per frame (from the metadata's `frame_visemes`); IGNORE on padding."""
    out = torch.full((len(metas), t_max), IGNORE, dtype=torch.long)
    for b, (meta, n) in enumerate(zip(metas, lengths.tolist())):
        labels = meta.get("frame_visemes")
        if labels is None:
            raise UserError(f"{meta.get('rel_path', '?')}: no frame_visemes in meta/*.jsonl (not a synthetic corpus?)")
        labels = torch.tensor(labels[:n], dtype=torch.long)
        out[b, : len(labels)] = labels
    return out


def greedy_ctc(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """[T, B, V] log-probabilities -> best-path strings (repeats merged, blanks dropped)."""
    best = log_probs.argmax(-1).T  # [B, T]
    out = []
    for seq, n in zip(best.tolist(), lengths.tolist()):
        chars, prev = [], 0
        for i in seq[:n]:
            if i != prev and i != 0:
                chars.append(CHARS[i - 1])
            prev = i
        out.append("".join(chars))
    return out


# ------------------------------------------------------------------------------------------ model
class LipPretrainModel(nn.Module):
    """The encoder plus the objective's heads; `losses(batch)` gives the named loss terms."""

    def __init__(self, arch: str, objective: str, ctc_weight: float = 1.0) -> None:
        super().__init__()
        self.encoder = build_avhubert({"name": arch, "frozen": False})
        d = self.encoder.output_dim
        self.viseme_head = nn.Linear(d, len(VISEMES)) if objective in ("visemes", "both") else None
        self.ctc_head = FrameCTCHead(d, len(CHARS) + 1) if objective in ("ctc-chars", "both") else None
        self.ctc_weight = ctc_weight

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Loss terms (`loss` is their weighted sum) and the heads' outputs for scoring."""
        feats, lengths = self.encoder(batch["video"], batch["video_lengths"])  # [B, T, D]
        out: dict[str, torch.Tensor] = {"loss": feats.new_zeros(())}
        if self.viseme_head is not None:
            logits = self.viseme_head(feats)  # [B, T, 12]
            target = viseme_targets(batch["metas"], lengths, feats.shape[1])
            out["viseme_logits"], out["viseme_target"] = logits, target
            out["ce"] = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=IGNORE)
            out["loss"] = out["loss"] + out["ce"]
        if self.ctc_head is not None:
            log_probs = self.ctc_head(feats)  # [T, B, V]
            targets, target_lengths = char_targets(batch["texts"])
            out["ctc_log_probs"] = log_probs
            out["ctc"] = F.ctc_loss(log_probs, targets, lengths, target_lengths, zero_infinity=True)
            out["loss"] = out["loss"] + self.ctc_weight * out["ctc"]
        return out


# ------------------------------------------------------------------------------------------ recipe
def partial_path(out_path: str | Path) -> Path:
    """The run directory of an unfinished run: `<out>.partial/` (never mistaken for a finished encoder)."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".partial")


class LipPretrainer(Engine):
    """Lip pretraining on the shared loop (`engine.Engine`): one CPU process in fp32 (`engine.LocalRuntime`),
    the encoder with the objective's heads, the train split's video. It checkpoints only when a stop signal
    ends it (`resume=False`: never), since the run is short and its product is the encoder file."""

    what = "pretrain-video"
    resumable = RESUMABLE

    def __init__(self, cfg: Config, resume: bool = True, progress: bool = True) -> None:
        super().__init__(cfg, resume)
        self.progress = progress
        self.history: list[float] = []  # the loss of every step
        self.last: dict[str, float] = {}  # the loss terms of the last step
        self.resumed_rng: torch.Tensor | None = None  # a checkpoint's random state, until the loader is made

    def _where(self) -> str:
        return self.what

    def _setup_runtime(self) -> None:
        legacy = self.run_dir if self.resume and self.run_dir.is_file() else None
        if legacy is not None:
            raise UserError(
                f"{legacy}: an interrupted run of an older mome (not a run directory); delete it to start over"
            )
        torch.manual_seed(self.cfg.train.seed)

    def _setup_model(self) -> None:
        lip = self.cfg.lip
        self.model: LipPretrainModel = LipPretrainModel(lip.arch, lip.objective, lip.ctc_weight)
        self.model.train()

    def _setup_data(self) -> None:
        data, seed = self.cfg.data, self.cfg.train.seed
        if not Path(data.train_labels).is_file():
            raise UserError(f"{data.train_labels}: no training labels (make a corpus with `mome synth`)")
        self.train_set = AVDataset(
            data.train_labels, str(data.root), data, train=True, modalities=("video",), augment_seed=seed
        )
        self.sampler = FrameBudgetBatchSampler(
            self.train_set.lengths, data.max_frames, shuffle=True, seed=seed, num_buckets=data.num_buckets
        )
        self.total_steps = self.cfg.train.max_steps or 1

    def _extra_state(self) -> dict[str, Any]:
        """The loss history, and the random state (dropout draws from it)."""
        return {"history": self.history, "rng": torch.get_rng_state()}

    def _restore(self, train_state: dict[str, Any]) -> None:
        super()._restore(train_state)
        self.history = list(train_state["history"])
        self.resumed_rng = train_state["rng"]

    def epoch_batches(self) -> Iterator[dict]:
        """As the engine's; a resumed run takes the checkpoint's random state once the loader has drawn its seed
        from the global generator, as the uninterrupted run's loader did at the epoch's start, before the save:
        the dropout of the steps that follow then draws what it would have drawn."""
        batches = super().epoch_batches()
        if self.resumed_rng is not None:
            torch.set_rng_state(self.resumed_rng)
            self.resumed_rng = None
        return batches

    def _backward(self, batch: dict) -> tuple[tuple[torch.Tensor, ...], Any]:
        out = self.model(batch)
        out["loss"].backward()
        return (out["loss"].detach(),), out

    def _step_values(self, out: Any) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in out.items() if k in LOSS_TERMS}

    def _after_step(self, values: dict[str, float]) -> None:
        self.last = {k: v for k, v in values.items() if k in LOSS_TERMS}
        self.history.append(self.last["loss"])

    def _progress_bar(self) -> tqdm:
        return tqdm(
            total=self.total_steps,
            initial=self.state.step,
            desc=self.what,
            disable=not self.progress,
            dynamic_ncols=True,
        )

    def _show(self, bar: tqdm, values: dict[str, float]) -> None:
        bar.set_postfix({k: f"{v:.3f}" for k, v in values.items() if k in LOSS_TERMS}, refresh=False)

    def _finish(self) -> Path | None:
        """A stopped run is saved, to continue from; a finished one leaves the encoder to `pretrain_video`."""
        return self.save() if self.signals.stop and self.resume else None


@torch.no_grad()
def validation_metrics(model: LipPretrainModel, cfg: Config) -> dict[str, float]:
    """Validation-split scores: frame viseme accuracy (held-out speakers) and greedy-CTC CER, per head."""
    data = cfg.data
    dataset = AVDataset(data.val_labels, str(data.root), data, train=False, modalities=("video",))
    if cfg.lip.max_val is not None:
        dataset.rows = dataset.rows[: cfg.lip.max_val]
    budget = max(data.max_frames, max(dataset.lengths, default=1))
    sampler = FrameBudgetBatchSampler(dataset.lengths, budget, shuffle=False, seed=0, num_buckets=data.num_buckets)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=data.loader_workers)
    was_training = model.training
    model.eval()
    correct = frames = errors = chars = 0
    for batch in loader:
        if batch is None:
            continue
        out = model(batch)
        if "viseme_logits" in out:
            keep = out["viseme_target"] != IGNORE
            correct += int((out["viseme_logits"].argmax(-1)[keep] == out["viseme_target"][keep]).sum())
            frames += int(keep.sum())
        if "ctc_log_probs" in out:
            for hyp, ref in zip(greedy_ctc(out["ctc_log_probs"], batch["video_lengths"]), batch["texts"]):
                ref = " ".join(ref.lower().split())
                errors += character_errors(ref, hyp)
                chars += len(ref)
    model.train(was_training)
    metrics = {"val_utterances": len(dataset)}
    if frames:
        metrics["val_viseme_acc"] = correct / frames
    if chars:
        metrics["val_cer"] = errors / chars
    return metrics


def save_lip_encoder(encoder: AVHubertEncoder, out_path: str | Path) -> Path:
    """Write the encoder file that `load_avhubert` reads, with the checkpoint writer (atomic, flushed)."""
    return save_torch(out_path, lip_encoder_file(encoder))


def run_options(cfg: Config, progress: bool) -> dict[str, Any]:
    """A run's settings under the names of `lip_config`'s options, for its metrics."""
    lip, data, train = cfg.lip, cfg.data, cfg.train
    return {
        "arch": lip.arch,
        "objective": lip.objective,
        "steps": train.max_steps,
        "max_frames": data.max_frames,
        "lr": train.lr,
        "warmup_steps": train.warmup_steps,
        "weight_decay": train.weight_decay,
        "ctc_weight": lip.ctc_weight,
        "num_workers": data.num_workers,
        "threads": train.num_threads,
        "max_val": lip.max_val,
        "time_mask": data.time_mask,
        "progress": progress,
    }


def train_lip_encoder(
    corpus_root: str | Path,
    steps: int = 200,
    seed: int = 0,
    partial: Path | None = None,
    progress: bool = True,
    **options: Any,
) -> tuple[AVHubertEncoder, dict[str, Any]]:
    """Train on the corpus's train split and score on its val split; returns the frozen encoder and metrics.

    Args: as `pretrain_video`; `partial`: the run directory where a stop signal saves the run (and where it
    continues from); None: nothing is saved.
    """
    cfg = lip_config(corpus_root, steps, seed, **options)
    if partial is not None:
        cfg.train.output_dir = str(partial)
    threads = torch.get_num_threads()
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    try:
        return _train(cfg, partial is not None, progress)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: Config, resume: bool, progress: bool) -> tuple[AVHubertEncoder, dict[str, Any]]:
    start = time.perf_counter()
    run = LipPretrainer(cfg, resume=resume, progress=progress).setup()
    train_start = time.perf_counter()
    run.fit()
    train_seconds = time.perf_counter() - train_start
    model, step = run.model, run.state.step
    metrics: dict[str, Any] = {f"train_{k}": v for k, v in run.last.items()}
    metrics.update(validation_metrics(model, cfg))
    model.encoder.freeze()
    metrics.update(run_options(cfg, progress))
    metrics.update(
        steps=step,
        epochs=run.state.epoch + (run.state.batch_in_epoch > 0),  # epochs begun
        seed=cfg.train.seed,
        s_per_step=train_seconds / max(1, step),
        seconds=time.perf_counter() - start,
        loss_history=run.history,
    )
    return model.encoder, metrics


def pretrain_video(
    corpus_root: str | Path, out_path: str | Path, steps: int = 200, seed: int = 0, **options: Any
) -> dict[str, Any]:
    """Train the lip encoder on the corpus's train split, freeze it, write it to `out_path`, return metrics.

    Args:
        corpus_root: a corpus in the auto_avsr layout with `meta/*.jsonl` (`mome synth`); `labels/train.csv`
            trains, `labels/val.csv` scores; the test split is never read.
        out_path: the encoder file (written atomically with `save_lip_encoder`); `model.encoders.video.path`.
            A stop signal saves the run to the run directory `partial_path(out_path)` instead, which the same
            call continues from.
        steps: optimiser steps.
        seed: fixes initialisation, batch order and augmentation.
        **options: `progress`, and the options of `lip_config` (objective, arch, max_frames, lr, ...).

    Returns:
        metrics: final train loss terms, `val_viseme_acc` and/or `val_cer`, `s_per_step`, `seconds`,
        `loss_history` (per step) and the settings used.
    """
    partial = partial_path(out_path)
    encoder, metrics = train_lip_encoder(corpus_root, steps, seed, partial=partial, **options)
    save_lip_encoder(encoder, out_path)
    shutil.rmtree(partial, ignore_errors=True)
    metrics["out"] = str(out_path)
    return metrics
