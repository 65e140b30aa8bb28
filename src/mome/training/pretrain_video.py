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
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from mome.config import DataConfig, TrainConfig
from mome.data.bucketing import FrameBudgetBatchSampler
from mome.data.collate import collate
from mome.data.dataset import AVDataset
from mome.errors import UserError
from mome.evaluation.wer import character_errors
from mome.models.avhubert import AVHubertEncoder, FrameCTCHead, build_avhubert
from mome.models.avhubert_checkpoint import lip_encoder_file
from mome.synthetic.visemes import VISEMES
from mome.training.checkpoint import save_torch
from mome.training.optim import build_optimizer, build_scheduler

OBJECTIVES = ("visemes", "ctc-chars", "both")
CHARS = " abcdefghijklmnopqrstuvwxyz'"
"""CTC vocabulary after the blank (index 0); other characters of a transcript are dropped."""
IGNORE = -100


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
    time_mask: bool = True
    """auto_avsr's video time masks in training (`data.time_mask`). Off gives a better val viseme accuracy but
    not a better AVSR demo on top of it (docs/experiments.md), so the demo keeps them."""
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
    corpus_root: str | Path, steps: int = 200, seed: int = 0, **options: Any
) -> tuple[AVHubertEncoder, dict[str, Any]]:
    """Train on the corpus's train split and score on its val split; returns the frozen encoder and metrics.

    Args: as `pretrain_video`.
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
        return _train(root, cfg, opts, seed)
    finally:
        torch.set_num_threads(threads)


def _train(root: Path, cfg: DataConfig, opts: PretrainVideoOptions, seed: int) -> tuple[AVHubertEncoder, dict]:
    torch.manual_seed(seed)
    start = time.perf_counter()
    model = LipPretrainModel(opts.arch, opts.objective, opts.ctc_weight)
    model.train()
    train_cfg = _train_config(opts)
    optimizer = build_optimizer(model, train_cfg)  # no decay on norms, biases, PReLU slopes
    scheduler = build_scheduler(optimizer, train_cfg, opts.steps)
    train_set = AVDataset(cfg.train_labels, root, cfg, train=True, modalities=("video",), augment_seed=seed)
    loader, sampler = _loader(train_set, opts.max_frames, seed, True, opts.num_workers)

    step, epoch, history, last = 0, 0, [], {}
    train_start = time.perf_counter()
    bar = tqdm(total=opts.steps, desc="pretrain-video", disable=not opts.progress, dynamic_ncols=True)
    while step < opts.steps:
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)  # before iter(): workers copy the dataset when they start
        for batch in loader:
            if batch is None:
                continue
            out = model(batch)
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            scheduler.step()
            last = {k: float(v.detach()) for k, v in out.items() if k in ("loss", "ce", "ctc")}
            history.append(last["loss"])
            step += 1
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in last.items()}, refresh=False)
            if step >= opts.steps:
                break
        epoch += 1
    bar.close()
    train_seconds = time.perf_counter() - train_start

    metrics: dict[str, Any] = {f"train_{k}": v for k, v in last.items()}
    metrics.update(evaluate(model, root, cfg, opts))
    model.encoder.freeze()
    metrics.update(asdict(opts))
    metrics.update(
        steps=step,
        epochs=epoch,
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
        steps: optimiser steps.
        seed: fixes initialisation, batch order and augmentation.
        **options: fields of `PretrainVideoOptions` (objective, arch, max_frames, lr, ...).

    Returns:
        metrics: final train loss terms, `val_viseme_acc` and/or `val_cer`, `s_per_step`, `seconds`,
        `loss_history` (per step) and the options used.
    """
    encoder, metrics = train_lip_encoder(corpus_root, steps, seed, **options)
    save_lip_encoder(encoder, out_path)
    metrics["out"] = str(out_path)
    return metrics
