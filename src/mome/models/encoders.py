"""The frozen encoders a config asks for: Whisper for audio, AV-HuBERT (or its compact sibling) for video.

Only the modalities the task uses are built. Each encoder maps a padded batch plus lengths to features plus
lengths (`[B, T, D]`, `[B]`) and exposes `output_dim`.
"""

from __future__ import annotations

from torch import nn

from mome.config import ModelConfig


def build_audio_encoder(cfg: ModelConfig) -> nn.Module | None:
    enc = cfg.encoders.audio
    if not cfg.compression.uses_audio or enc.kind == "none":
        return None
    from mome.models.whisper_encoder import WhisperAudioEncoder

    return WhisperAudioEncoder.from_config(enc)


def build_video_encoder(cfg: ModelConfig, trusted: bool = False) -> nn.Module | None:
    enc = cfg.encoders.video
    if not cfg.compression.uses_video or enc.kind == "none":
        return None
    from mome.models.avhubert_checkpoint import build_video_encoder as build

    return build(enc, trusted=trusted)


def encoder_output_dim(encoder: nn.Module) -> int:
    return int(getattr(encoder, "output_dim", None) or encoder.embed_dim)
