"""Batching of `AVDataset` items: zero padding plus lengths; items that failed to load (None) are dropped.

Output (B = valid items, S = audio samples, T = video frames):
    ids [B] list, texts [B] list, metas [B] list,
    audio [B, S_max] + audio_lengths [B] (samples)          when the items have audio
    video [B, T_max, 1, 88, 88] + video_lengths [B] (frames) when the items have video
    audio_features [B, T_a, D_a] + audio_features_lengths [B], likewise video_features: cached encoder
    outputs (`mome.features`), which the model uses instead of running its encoders; audio_pooled4 [B, T_4, D_a]
    + audio_pooled4_lengths [B] and the like: cached outputs pooled already (a pooled cache)
Tokenisation happens later, in the LLM's sequence builder.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence


def collate(items: list[dict | None]) -> dict | None:
    """Pad a list of items into a batch; returns None if every item was bad."""
    items = [it for it in items if it is not None]
    if not items:
        return None
    batch: dict = {
        "ids": [it["id"] for it in items],
        "texts": [it["text"] for it in items],
        "metas": [it.get("meta", {}) for it in items],
    }
    tensors = [key for key, value in items[0].items() if isinstance(value, torch.Tensor)]
    for key in tensors:  # audio, video, their cached features, pooled or not
        if all(key in it for it in items):
            seqs = [it[key] for it in items]
            batch[key] = pad_sequence(seqs, batch_first=True)  # [B, S_max], [B, T_max, 1, H, W] or [B, T_max, D]
            batch[f"{key}_lengths"] = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    return batch


def to_device(batch: dict, device: str | torch.device) -> dict:
    """The batch with its tensors on `device` (a no-op for tensors already there); ids, texts and metas stay."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
