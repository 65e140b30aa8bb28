"""Names of cached features: a change in the encoder, the media file or the noise condition gives a new name,
so a stale feature is never served.

    store directory  <cache>/<modality>-<encoder identity>    hash of FEATURE_VERSION, class, config, tensors
    video entry      <rel_path>.mp4:<size>:<mtime_ns>|crop=88
    audio entry      <rel_path>.wav:<size>:<mtime_ns>|n=<samples>|<condition>     (samples: cut to the video)

Audio conditions (the babble file enters as its own size and mtime):

    clean                                   no noise
    train<k>:snrs=<-5,0,...>:noise=<id>     the k-th training version: SNR and babble segment drawn from a
                                            generator seeded by (utterance, k) only, so a version is the same
                                            whatever K, the run's seed or the machine
    snr=<dB>:seed=<s>:noise=<id>            evaluation at a fixed SNR: the same generator as `AVDataset` uses
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mome.config import DataConfig
from mome.constants import SAMPLES_PER_FRAME
from mome.data.labels import LabelRow, media_path
from mome.data.media import MediaError
from mome.data.noise import eval_rng
from mome.errors import UserError

FEATURE_VERSION = 1
"""Bump when the code between a media file and its features changes (transforms, log-mel, crops, encoders'
forward): every store directory name changes with it."""


IDENTITY_SKIPS = ("dropout", "layerdrop", "frozen", "_name_or_path", "transformers_version")
"""Config fields that cannot change an eval-mode encoder's output, left out of its identity."""


def encoder_config(encoder: nn.Module) -> dict:
    """The configuration an encoder's output depends on besides its tensors (heads, front-end hop ...)."""
    if hasattr(encoder, "arch"):  # AV-HuBERT and the compact lip encoder
        config = encoder.arch.to_dict()
    else:  # Whisper: transformers' config plus mome's front end
        config = {**encoder.encoder.config.to_dict(), "hop_length": encoder.hop_length}
    return {k: v for k, v in config.items() if not any(skip in k for skip in IDENTITY_SKIPS)}


def encoder_identity(encoder: nn.Module, modality: str) -> str:
    """A hash of everything the features depend on in the encoder: its class and configuration (heads,
    hop length ...), every parameter and buffer (names, dtypes, shapes, bytes) and FEATURE_VERSION."""
    digest = hashlib.sha256(f"mome-features {FEATURE_VERSION} {modality} {type(encoder).__qualname__}".encode())
    digest.update(json.dumps(encoder_config(encoder), sort_keys=True, default=str).encode())
    tensors = dict(encoder.named_parameters())
    tensors.update(encoder.named_buffers())  # non-persistent ones too (Whisper's mel filters)
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name} {t.dtype} {tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


def file_identity(path: Path, name: str) -> str:
    """`name:size:mtime_ns` of a file: a rewritten file gets a new identity without reading its bytes.
    A missing file is a MediaError, reported like an unreadable one."""
    try:
        stat = path.stat()
    except OSError:
        raise MediaError(path, "missing file") from None
    return f"{name}:{stat.st_size}:{stat.st_mtime_ns}"


@dataclass(frozen=True)
class Condition:
    """How an utterance's audio is mixed before encoding."""

    name: str  # its part of the key
    version: int | None = None  # the k of a training version
    snr: float | None = None  # the fixed SNR of an evaluation condition (None: clean)
    seed: int = 0

    @property
    def clean(self) -> bool:
        return self.version is None and self.snr is None

    def rng(self, rel_path: str) -> np.random.Generator:
        """The generator of this condition for one utterance (training versions: SNR draw, then babble)."""
        if self.version is not None:
            return np.random.default_rng([zlib.crc32(rel_path.encode()), self.version, 0x6D6F6D65])
        return eval_rng(rel_path, self.snr, self.seed)


CLEAN = Condition("clean")


@dataclass(frozen=True)
class FeatureKeys:
    """The names of one corpus's entries under one data config (see the module docstring)."""

    root: Path
    crop: int
    noise_id: str | None  # babble file identity; None: no noise file
    noise_path: Path | None
    noisy_snrs: tuple[float, ...]  # the non-clean training SNRs
    clean_share: float  # the share of clean draws in training (`None`s in data.train_snrs)
    versions: int  # K noisy versions per training utterance
    clean_first: bool = False  # data.curriculum: the first epochs read clean audio, so it is cached

    @classmethod
    def from_config(cls, data: DataConfig) -> FeatureKeys:
        noise = Path(data.noise_path) if data.noise_path else None
        noisy = tuple(float(s) for s in data.train_snrs if s is not None)
        clean_share = sum(s is None for s in data.train_snrs) / len(data.train_snrs)
        noise_id = file_identity(noise, "babble") if noise is not None and noise.is_file() else None
        versions = data.feature_noisy_versions if noisy and noise is not None else 0  # noise_path null: clean
        return cls(Path(data.root), data.crop_size, noise_id, noise, noisy, clean_share, versions, data.curriculum)

    def video(self, row: LabelRow) -> str:
        name = row.rel_path + ".mp4"
        return f"{file_identity(media_path(self.root, row.rel_path, '.mp4'), name)}|crop={self.crop}"

    def audio(self, row: LabelRow, frames: int, conditions: list[Condition]) -> list[str]:
        """The keys of the audio cut or padded to `frames` video frames, mixed as each condition says (the
        file is looked at once for all of them)."""
        media = file_identity(media_path(self.root, row.rel_path, ".wav"), row.rel_path + ".wav")
        return [f"{media}|n={SAMPLES_PER_FRAME * frames}|{c.name}" for c in conditions]

    def train_conditions(self) -> list[Condition]:
        """What a training draw can pick: clean (if data.train_snrs has `null`) and the K noisy versions."""
        if self.versions and self.noise_id is None:  # as the uncached path, which fails to read it
            raise UserError(f"data.noise_path: no such file: {self.noise_path} (the noisy data.train_snrs need it)")
        snrs = ",".join(repr(s) for s in self.noisy_snrs)
        noisy = [Condition(f"train{k}:snrs={snrs}:noise={self.noise_id}", version=k) for k in range(self.versions)]
        return ([CLEAN] if self.clean_share > 0 or self.clean_first or not noisy else []) + noisy

    def eval_condition(self, snr: float | None, seed: int) -> Condition:
        if snr is None:
            return CLEAN
        if self.noise_id is None:
            where = f"no such file: {self.noise_path}" if self.noise_path else "not set"
            raise UserError(f"data.noise_path: {where}; an evaluation at {snr:g} dB needs the babble file")
        return Condition(f"snr={float(snr)!r}:seed={seed}:noise={self.noise_id}", snr=float(snr), seed=seed)

    def draw(self, rng: np.random.Generator, clean: bool = False) -> Condition:
        """A training condition, as the uncached path draws an SNR from data.train_snrs: clean with the share of
        `null`s, else one of the K noisy versions (each made with an SNR drawn from the non-clean values);
        always clean with `clean` (an epoch of the clean-audio curriculum)."""
        conditions = self.train_conditions()
        if clean:
            return CLEAN
        if conditions[0].clean and (len(conditions) == 1 or rng.random() < self.clean_share):
            return conditions[0]
        noisy = [c for c in conditions if not c.clean]
        return noisy[int(rng.integers(len(noisy)))]
