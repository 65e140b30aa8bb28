"""`CachedAVDataset`: an `AVDataset` whose items carry the frozen encoders' features, read from the cache.

    item = {"id", "text", "meta", "audio_features": [T_a, D_a] float32, "video_features": [T_v, D_v] float32}

`AVSRModel.encode` passes such features through instead of running the encoders. In training, the audio
condition is drawn per (seed, epoch, utterance) as the uncached path draws its SNR (`FeatureKeys.draw`), and
the time masks (`data.time_mask`) zero spans of feature frames at the same durations as the raw-signal masks:
up to 0.4 s per second of audio, up to 10 of every 25 video frames. A random crop cannot be applied to cached
features: training sees the centre crop.

A pooled cache (`data.feature_cache_store: pooled`) gives `audio_pooled<rate>` / `video_pooled<rate>` [T_r, D]
items instead (`models.pooling.pooled_key`). Its masks are drawn as for a full entry (the same spans for the
same generator) and applied after pooling: each token is scaled by the share of its frames left unmasked, so a
token whose frames are all masked is zero, as pooling masked frames gives, and one partly masked keeps its
average's scale only where its frames are alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mome.config import Config, DataConfig
from mome.data.dataset import MODALITIES, AVDataset
from mome.data.labels import LabelRow, media_path
from mome.data.noise import Babble
from mome.data.transforms import mask_per_second
from mome.data.utterance import check_lengths
from mome.features.cache import FeatureCache, split_pooled
from mome.models.pooling import pool, pooled_key


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
        if not train and "audio" in modalities:
            self.condition = cache.keys.eval_condition(eval_snr, noise_seed)

    def _babble(self) -> Babble | None:
        return None  # the noise is in the cached features already

    def _load(self, row: LabelRow) -> dict:
        rng = self._rng(row)
        item = self._item(row)
        frames = row.input_length
        if "video" in self.modalities:
            path = media_path(self.root, row.rel_path, ".mp4")
            video, extra = self.cache.read("video", self.cache.keys.video(row), path)
            frames = extra.get("frames", len(video))
            self._put(item, "video", video, extra, rng)
        if "audio" in self.modalities:
            condition = self.cache.keys.draw(rng, self.clean_epoch) if self.train else self.condition
            path = media_path(self.root, row.rel_path, ".wav")
            (key,) = self.cache.keys.audio(row, frames, [condition])
            audio, extra = self.cache.read("audio", key, path)
            check_lengths(path, extra["samples"], frames, self.chain.tolerance)
            self._put(item, "audio", audio, extra, rng)
            item["meta"]["snr"] = extra["snr"]
        return item

    def _put(self, item: dict, modality: str, features: np.ndarray, extra: dict, rng: np.random.Generator) -> None:
        """A full entry as `<modality>_features`; a pooled one as `<modality>_pooled<rate>`, masked after pooling."""
        if "pooled" not in extra:
            item[f"{modality}_features"] = self._tensor(features, modality, rng)
            return
        frames = int(extra["frames"])
        keep = None
        if self.train and self.cfg.time_mask:  # the draws of masking [frames, D] full features
            keep = mask_per_second(np.ones((frames, 1), np.float32), self.cache.frame_rates[modality], rng)
        for rate, rows in split_pooled(features, extra).items():
            x = torch.from_numpy(np.array(rows, dtype=np.float32))
            if keep is not None:
                x = x * pool(torch.from_numpy(keep)[None], torch.tensor([frames]), rate).features[0]
            item[pooled_key(modality, rate)] = x

    def _tensor(self, features: np.ndarray, modality: str, rng: np.random.Generator) -> torch.Tensor:
        """fp16 cache rows -> float32 [T, D]; in training with `time_mask`, spans of frames zeroed."""
        x = np.array(features, dtype=np.float32)
        if self.train and self.cfg.time_mask:
            x = mask_per_second(x, self.cache.frame_rates[modality], rng)
        return torch.from_numpy(x)


def make_dataset(
    cfg: Config,
    labels: str | Path,
    root: str | Path,
    train: bool,
    cache: FeatureCache | None,
    eval_snr: float | None = None,
    augment_seed: int = 0,
) -> AVDataset:
    """The utterances of a label file: media decoded (and encoded at every step), or features from `cache`."""
    modalities, seed = cfg.model.compression.modalities, cfg.data.eval_noise_seed
    if cache is not None:
        return CachedAVDataset(labels, root, cfg.data, train, cache, modalities, eval_snr, seed, augment_seed)
    return AVDataset(labels, root, cfg.data, train, modalities, eval_snr, seed, augment_seed)
