"""Additive noise at a chosen SNR, with seeds that make evaluation exactly reproducible.

In training the SNR of each utterance is drawn from `DataConfig.train_snrs` (reference: {-5, 0, 5, 10, 15, 20}
dB or clean) and the babble segment is random. At evaluation both come from a generator seeded by
(utterance id, SNR, seed) alone (`eval_rng`), so a result does not depend on batch order or workers.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from mome.data.media import read_audio


def eval_rng(utt_id: str, snr_db: float | None, seed: int) -> np.random.Generator:
    """Generator fixed by (utterance, SNR, seed): the same noise every time the utterance is evaluated."""
    snr_db = None if snr_db is None else float(snr_db)  # 0 and 0.0 are one condition
    return np.random.default_rng([zlib.crc32(f"{utt_id}|{snr_db}".encode()), int(seed) & 0xFFFFFFFF])


def snr_db(clean: np.ndarray, noise: np.ndarray) -> float:
    """Measured SNR in dB of `clean` against `noise` (both [S])."""
    return float(10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2)))


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    """`clean + g * noise` with g chosen so that the SNR is exactly `snr` dB; arrays of equal length.

    A silent `clean` (or noise) is returned unchanged: its SNR is undefined."""
    p_clean = float(np.mean(clean.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise.astype(np.float64) ** 2))
    if p_clean == 0.0 or p_noise == 0.0:
        return clean.copy()
    gain = np.sqrt(p_clean / (p_noise * 10 ** (snr / 10)))
    return (clean + gain * noise).astype(np.float32)


class Babble:
    """A long noise recording from which segments of any length are cut (looped when too short)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.audio = read_audio(self.path)  # raises MediaError naming the file

    def segment(self, length: int, rng: np.random.Generator) -> np.ndarray:
        source = self.audio
        if len(source) < length + 1:
            source = np.tile(source, length // len(source) + 2)
        start = int(rng.integers(0, len(source) - length))
        return source[start : start + length]

    def add(self, clean: np.ndarray, snr: float | None, rng: np.random.Generator) -> np.ndarray:
        """`clean` with babble at `snr` dB; `None` (clean condition) returns it unchanged."""
        if snr is None:
            return clean
        return mix_at_snr(clean, self.segment(len(clean), rng), snr)
