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

Faults as in `mome train` (`mome.training.faults`): SIGINT / SIGTERM save the run so far to `<out>.partial`
and exit with 130 / 143 (rerunning the same command continues from it; the encoder file is written only at
the end); non-finite steps are skipped (5 in a row stop it); an epoch without a single batch stops it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from mome.config import DataConfig, TrainConfig
from mome.data.bucketing import FrameBudgetBatchSampler, SkipFirst
from mome.data.collate import collate
from mome.data.dataset import AVDataset
from mome.errors import UserError
from mome.evaluation.wer import character_errors
from mome.models.avhubert import AVHubertEncoder, FrameCTCHead, build_avhubert
from mome.models.avhubert_checkpoint import lip_encoder_file
from mome.runs.checkpoint import save_torch
from mome.stopping import StopSignals
from mome.synthetic.visemes import VISEMES
from mome.training.faults import (
    Marked,
    NonFiniteGuard,
    SkipLog,
    collate_marked,
    grad_norm,
    quiet_dataset,
)
from mome.training.optim import build_optimizer, build_scheduler

OBJECTIVES = ("visemes", "ctc-chars", "both")
CHARS = " abcdefghijklmnopqrstuvwxyz'"
"""CTC vocabulary after the blank (index 0); other characters of a transcript are dropped."""
IGNORE = -100
PARTIAL_FORMAT = "mome-lip-partial-1"
MAX_NONFINITE_STEPS = 5
RUNTIME_OPTIONS = ("num_workers", "threads", "max_val", "progress")
"""Options that an interrupted run may change when it continues: they do not change what a step computes."""


@dataclass
class PretrainVideoOptions:
    """Every knob of `pretrain_video`; the defaults fit the demo's ~2 minute budget on 2 CPU cores."""

    arch: str = "compact"
    """Named AV-HuBERT arch (`models/avhubert.py` ARCHS); `tiny` for tests."""
    objective: str = "both"
    """`visemes` (per-frame CE), `ctc-chars` (CTC on characters) or `both` (sum of the two)."""
    steps: int = 200
    """Optimiser steps (the cosine schedule spans them); epochs repeat with fresh augmentation."""
    max_frames: int = 320
    """Frame budget of a batch (padded frames, `FrameBudgetBatchSampler`)."""
    lr: float = 2e-3
    """AdamW peak learning rate, after a linear warmup over `warmup` of the steps."""
    warmup: float = 0.1
    weight_decay: float = 0.01
    ctc_weight: float = 1.0
    """Weight of the CTC term when `objective=both`."""
    num_workers: int = 1
    """DataLoader workers (mp4 decoding overlaps the step; 0 = in the main process)."""
    threads: int | None = None
    """torch intra-op threads; None leaves torch's default."""
    max_val: int | None = None
    """Validation utterances to score (None: the whole val split)."""
    time_mask: bool = False
    """auto_avsr's video time masks in training (`data.time_mask`). Off by default: in the demo's budget the
    masks cost val viseme accuracy and VSR WER on top (docs/experiments.md, section 3.2)."""
    progress: bool = True


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


# ------------------------------------------------------------------------------------------ loop
def _loader(dataset: AVDataset, max_frames: int, seed: int, shuffle: bool, workers: int) -> tuple[DataLoader, Any]:
    sampler = FrameBudgetBatchSampler(dataset.lengths, max_frames, shuffle=shuffle, seed=seed)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers)
    return loader, sampler


def partial_path(out_path: str | Path) -> Path:
    """Where an interrupted run keeps its state: `<out>.partial` (never mistaken for a finished encoder)."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".partial")


def _train_config(opts: PretrainVideoOptions) -> TrainConfig:
    """The optimiser settings in the recipe's terms, so that `build_optimizer` / `build_scheduler` serve here too
    (AdamW's default betas; at least one warmup step)."""
    return TrainConfig(
        lr=opts.lr,
        weight_decay=opts.weight_decay,
        betas=[0.9, 0.999],
        warmup_steps=max(1, int(opts.warmup * opts.steps)),
        max_steps=opts.steps,
    )


@torch.no_grad()
def evaluate(model: LipPretrainModel, root: Path, cfg: DataConfig, opts: PretrainVideoOptions) -> dict[str, float]:
    """Validation-split scores: frame viseme accuracy (held-out speakers) and greedy-CTC CER, per head."""
    dataset = AVDataset(cfg.val_labels, root, cfg, train=False, modalities=("video",))
    if opts.max_val is not None:
        dataset.rows = dataset.rows[: opts.max_val]
    loader, _ = _loader(dataset, max(opts.max_frames, max(dataset.lengths, default=1)), 0, False, opts.num_workers)
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


def train_lip_encoder(
    corpus_root: str | Path, steps: int = 200, seed: int = 0, partial: Path | None = None, **options: Any
) -> tuple[AVHubertEncoder, dict[str, Any]]:
    """Train on the corpus's train split and score on its val split; returns the frozen encoder and metrics.

    Args: as `pretrain_video`; `partial`: where a stop signal saves the run (and where it continues from).
    """
    opts = PretrainVideoOptions(steps=steps, **options)
    if opts.objective not in OBJECTIVES:
        raise UserError(f"--objective {opts.objective!r}: choose from {', '.join(OBJECTIVES)}")
    if opts.steps < 1:
        raise UserError("--steps must be at least 1")
    cfg = DataConfig(root=str(corpus_root), time_mask=opts.time_mask)  # resolves the root and label paths
    root = Path(cfg.root)
    if not Path(cfg.train_labels).is_file():
        raise UserError(f"{cfg.train_labels}: no training labels (make a corpus with `mome synth`)")
    threads = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        return _train(root, cfg, opts, seed, partial)
    finally:
        torch.set_num_threads(threads)


@dataclass
class _Run:
    """The state of a pretraining run, as `<out>.partial` saves it."""

    model: LipPretrainModel
    optimizer: torch.optim.Optimizer
    scheduler: Any
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    history: list[float] = field(default_factory=list)
    last: dict[str, float] = field(default_factory=dict)

    def payload(self, opts: PretrainVideoOptions, seed: int) -> dict[str, Any]:
        return {
            "format": PARTIAL_FORMAT, "options": _fixed_options(opts, seed), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "progress": [self.step, self.epoch, self.batch_in_epoch], "history": self.history,
            "rng": torch.get_rng_state(),
        }  # fmt: skip

    def restore(self, path: Path, opts: PretrainVideoOptions, seed: int) -> None:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise UserError(f"{path}: unreadable ({type(err).__name__}); delete it to start over") from None
        if not isinstance(payload, dict) or payload.get("format") != PARTIAL_FORMAT:
            raise UserError(f"{path}: not an interrupted pretrain-video run; delete it to start over")
        if payload["options"] != _fixed_options(opts, seed):
            changed = sorted(k for k, v in _fixed_options(opts, seed).items() if payload["options"].get(k) != v)
            raise UserError(f"{path}: written with other options ({', '.join(changed)}); delete it to start over")
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.step, self.epoch, self.batch_in_epoch = payload["progress"]
        self.history = list(payload["history"])
        torch.set_rng_state(payload["rng"])
        print(f"continuing from {path} (step {self.step})")


def _epochs(
    run: _Run, train_set: AVDataset, sampler: FrameBudgetBatchSampler, opts: PretrainVideoOptions,
    signals: StopSignals, skips: SkipLog,
) -> None:  # fmt: skip
    """Steps until `opts.steps` or a stop signal, each epoch from its next unseen batch."""
    guard = NonFiniteGuard(MAX_NONFINITE_STEPS, "pretrain-video")
    bar = tqdm(total=opts.steps, initial=run.step, desc="pretrain-video", disable=not opts.progress, dynamic_ncols=True)
    try:
        while run.step < opts.steps and not signals.stop:
            _epoch(run, train_set, sampler, opts, signals, guard, skips, bar)
    except Exception:
        if not signals.stop:  # a loader whose workers the Ctrl-C also reached: stop as asked
            raise
    finally:
        bar.close()


def _epoch(run: _Run, train_set: AVDataset, sampler: FrameBudgetBatchSampler, opts: PretrainVideoOptions,
           signals: StopSignals, guard: NonFiniteGuard, skips: SkipLog, bar: tqdm) -> None:  # fmt: skip
    """The rest of the current epoch; one that yields no batch at all stops the run (`SkipLog.no_batch`)."""
    sampler.set_epoch(run.epoch)
    train_set.set_epoch(run.epoch)  # before iter(): workers copy the dataset when they start
    whole, yielded = run.batch_in_epoch == 0, 0
    loader = DataLoader(Marked(train_set), batch_sampler=SkipFirst(sampler, run.batch_in_epoch),
                        collate_fn=collate_marked, num_workers=opts.num_workers)  # fmt: skip
    for marked in loader:
        skips.add(marked["failed"])
        run.batch_in_epoch += 1
        if marked["batch"] is None:
            continue
        yielded += 1
        if _step(run, marked["batch"], guard):
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in run.last.items()}, refresh=False)
        if run.step >= opts.steps or signals.stop:
            return
    if whole and not yielded:
        raise skips.no_batch(len(train_set), run.epoch)
    run.epoch, run.batch_in_epoch = run.epoch + 1, 0


def _step(run: _Run, batch: dict, guard: NonFiniteGuard) -> bool:
    """One optimiser step; False (skipped) when the loss or the gradient is not finite."""
    out = run.model(batch)
    run.optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    if not guard.ok(out["loss"].detach(), grad_norm(run.model.parameters()), step=run.step + 1):
        run.optimizer.zero_grad(set_to_none=True)
        return False
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), 5.0)
    run.optimizer.step()
    run.scheduler.step()
    run.last = {k: float(v.detach()) for k, v in out.items() if k in ("loss", "ce", "ctc")}
    run.history.append(run.last["loss"])
    run.step += 1
    return True


def _fixed_options(opts: PretrainVideoOptions, seed: int) -> dict[str, Any]:
    return {**{k: v for k, v in asdict(opts).items() if k not in RUNTIME_OPTIONS}, "seed": seed}


def _train(
    root: Path, cfg: DataConfig, opts: PretrainVideoOptions, seed: int, partial: Path | None = None
) -> tuple[AVHubertEncoder, dict]:
    torch.manual_seed(seed)
    start = time.perf_counter()
    model = LipPretrainModel(opts.arch, opts.objective, opts.ctc_weight)
    model.train()
    train_cfg = _train_config(opts)
    optimizer = build_optimizer(model, train_cfg)  # no decay on norms, biases, PReLU slopes
    run = _Run(model, optimizer, build_scheduler(optimizer, train_cfg, opts.steps))
    if partial is not None and partial.is_file():
        run.restore(partial, opts, seed)
    train_set = AVDataset(cfg.train_labels, root, cfg, train=True, modalities=("video",), augment_seed=seed)
    sampler = FrameBudgetBatchSampler(train_set.lengths, opts.max_frames, shuffle=True, seed=seed)
    train_start = time.perf_counter()
    signals = StopSignals()
    with quiet_dataset(), signals:
        _epochs(run, train_set, sampler, opts, signals, SkipLog(cfg.train_labels))
    if signals.stop:
        saved = save_torch(partial, run.payload(opts, seed)) if partial is not None else None
        raise signals.interrupted(f"pretrain-video (step {run.step})", saved)
    train_seconds = time.perf_counter() - train_start
    model, step, epoch, history, last = run.model, run.step, run.epoch, run.history, run.last

    metrics: dict[str, Any] = {f"train_{k}": v for k, v in last.items()}
    metrics.update(evaluate(model, root, cfg, opts))
    model.encoder.freeze()
    metrics.update(asdict(opts))
    metrics.update(
        steps=step,
        epochs=epoch + (run.batch_in_epoch > 0),  # epochs begun
        seed=seed,
        s_per_step=train_seconds / max(1, step),
        seconds=time.perf_counter() - start,
        loss_history=history,
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
            A stop signal saves the run to `partial_path(out_path)` instead, which the same call continues from.
        steps: optimiser steps.
        seed: fixes initialisation, batch order and augmentation.
        **options: fields of `PretrainVideoOptions` (objective, arch, max_frames, lr, ...).

    Returns:
        metrics: final train loss terms, `val_viseme_acc` and/or `val_cer`, `s_per_step`, `seconds`,
        `loss_history` (per step) and the options used.
    """
    partial = partial_path(out_path)
    encoder, metrics = train_lip_encoder(corpus_root, steps, seed, partial=partial, **options)
    save_lip_encoder(encoder, out_path)
    partial.unlink(missing_ok=True)
    metrics["out"] = str(out_path)
    return metrics
