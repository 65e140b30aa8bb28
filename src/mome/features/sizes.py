"""How many bytes the feature cache holds per second of training speech, derived from a config, before filling it.

    per second, per modality   versions x sum over what is stored of (features per second x width x 2 bytes)
    full                       the encoder's output: its frame rate (Whisper 50 Hz, AV-HuBERT 25 Hz) x its width
    pooled                     each configured rate r: frame rate / r tokens of width (avg-pool) or r x width (stack)
    versions                   audio: clean (if `data.train_snrs` has null, or a curriculum) + K noisy; video: 1

Validation (clean) and evaluation entries come on top; they are a small share of a corpus. The width comes from
the encoder's `arch` (or, for Whisper with a `path`, its config.json), so no weights are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mome.config import Config, DataConfig, ModelConfig
from mome.constants import AVHUBERT_FRAME_RATE, WHISPER_FRAME_RATE

FP16_BYTES = 2
FRAME_RATES = {"audio": WHISPER_FRAME_RATE, "video": AVHUBERT_FRAME_RATE}
Stored = Literal["full", "pooled", "none"]


def encoder_widths(model: ModelConfig) -> dict[str, int]:
    """The output width of each encoder the task uses, from its architecture (no weights are read)."""
    from mome.models.avhubert import AVHubertArch

    widths = {}
    if model.compression.uses_audio and model.encoders.audio.kind != "none":
        audio = model.encoders.audio
        if audio.path is not None and (Path(audio.path) / "config.json").is_file():
            widths["audio"] = int(json.loads((Path(audio.path) / "config.json").read_text())["d_model"])
        elif audio.arch is not None:
            widths["audio"] = int(audio.arch["d_model"])
        else:
            raise ValueError("model.encoders.audio: neither arch nor a readable path: its width is unknown")
    if model.compression.uses_video and model.encoders.video.kind != "none":
        widths["video"] = AVHubertArch.from_dict(model.encoders.video.arch).embed_dim
    return widths


def audio_versions(data: DataConfig, noisy: int | None = None) -> int:
    """Audio entries per training utterance: clean where a draw or the curriculum can read it, plus `noisy`
    (default `data.feature_noisy_versions`; none without noisy SNRs or a noise file), as `FeatureKeys` caches."""
    has_noisy = any(s is not None for s in data.train_snrs) and data.noise_path is not None
    noisy = (data.feature_noisy_versions if noisy is None else noisy) if has_noisy else 0
    clean = None in data.train_snrs or data.curriculum or noisy == 0
    return int(clean) + noisy


@dataclass(frozen=True)
class Storage:
    """One way to cache a config's training features."""

    name: str
    audio: Stored = "full"
    video: Stored = "full"
    noisy_versions: int | None = None  # None: the config's `data.feature_noisy_versions`


def bytes_per_second(cfg: Config, storage: Storage = Storage("full")) -> dict[str, float]:
    """fp16 bytes cached per second of training speech, per modality (audio: every version together)."""
    comp = cfg.model.compression
    rates = {"audio": comp.audio_rates, "video": comp.video_rates}
    out = {}
    for modality, width in encoder_widths(cfg.model).items():
        stored: Stored = getattr(storage, modality)
        rate = FRAME_RATES[modality]
        if stored == "none":
            per_version = 0.0
        elif stored == "full":
            per_version = rate * width * FP16_BYTES
        else:
            widths = {r: width * r if comp.mode == "stack" else width for r in rates[modality]}
            per_version = sum(rate / r * widths[r] * FP16_BYTES for r in rates[modality])
        versions = audio_versions(cfg.data, storage.noisy_versions) if modality == "audio" else 1
        out[modality] = per_version * versions
    return out
