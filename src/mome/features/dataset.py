"""`CachedAVDataset`: an `AVDataset` whose items carry the frozen encoders' features, read from the cache.

    item = {"id", "text", "meta", "audio_features": [T_a, D_a] float32, "video_features": [T_v, D_v] float32}

`AVSRModel.encode` passes such features through instead of running the encoders. In training, the audio
condition is drawn per (seed, epoch, utterance) as the uncached path draws its SNR (`FeatureKeys.draw`), and
the time masks (`data.time_mask`) zero spans of feature frames at the same durations as the raw-signal masks:
up to 0.4 s per second of audio, up to 10 of every 25 video frames. A random crop cannot be applied to cached
features: training sees the centre crop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mome.config import DataConfig
from mome.constants import AVHUBERT_FRAME_RATE, SAMPLES_PER_FRAME, WHISPER_FRAME_RATE
from mome.data.dataset import MODALITIES, AVDataset
from mome.data.labels import LabelRow
from mome.data.noise import Babble
from mome.data.transforms import time_mask
from mome.features.cache import FeatureCache

FRAME_RATES = {"audio": WHISPER_FRAME_RATE, "video": AVHUBERT_FRAME_RATE}


class CachedAVDataset(AVDataset):
    """Utterances of one label file, as cached features (see `AVDataset` for the arguments)."""

    def __init__(
        self,
        labels_path: str | Path,
        root: str | Path,
        cfg: DataConfig,
        train: bool,
        cache: FeatureCache,
        modalities: tuple[str, ...] = MODALITIES,
        eval_snr: float | None = None,
        noise_seed: int = 0,
        augment_seed: int = 0,
    ) -> None:
        self.cache = cache
        super().__init__(labels_path, root, cfg, train, modalities, eval_snr, noise_seed, augment_seed)
        if not train:
            self.condition = cache.keys.eval_condition(eval_snr, noise_seed)

    def _babble(self) -> Babble | None:
        return None  # the noise is in the cached features already

    def _load(self, row: LabelRow) -> dict:
        rng = self._rng(row)
        stem = self.root / row.rel_path
        item = self._item(row)
        frames = row.input_length
        if "video" in self.modalities:
            video, _ = self.cache.read("video", self.cache.keys.video(row), stem.with_suffix(".mp4"))
            frames = len(video)
            item["video_features"] = self._tensor(video, "video", rng)
        if "audio" in self.modalities:
            condition = self.cache.keys.draw(rng) if self.train else self.condition
            key = self.cache.keys.audio(row, SAMPLES_PER_FRAME * frames, condition)
            audio, extra = self.cache.read("audio", key, stem.with_suffix(".wav"))
            self._check_lengths(stem.with_suffix(".wav"), extra["samples"], frames)
            item["audio_features"] = self._tensor(audio, "audio", rng)
            item["meta"]["snr"] = extra["snr"]
        return item

    def _tensor(self, features: np.ndarray, modality: str, rng: np.random.Generator) -> torch.Tensor:
        """fp16 cache rows -> float32 [T, D]; in training with `time_mask`, spans of frames zeroed."""
        x = np.array(features, dtype=np.float32)
        if self.train and self.cfg.time_mask:
            rate = FRAME_RATES[modality]
            x = time_mask(x, window=rate * 2 // 5, stride=rate, rng=rng)
        return torch.from_numpy(x)
