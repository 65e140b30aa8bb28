"""The cache sizes derived from a config (`features.sizes`) against what a filled cache holds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mome.config import load_config
from mome.features.cache import FeatureCache
from mome.features.keys import FeatureKeys
from mome.features.sizes import Storage, audio_versions, bytes_per_second
from mome.models.encoders import build_audio_encoder, build_video_encoder


def test_derived_bytes_per_second_equal_a_filled_cache(corpus: Path, tmp_path: Path) -> None:
    cfg = load_config("tiny", [f"data.root={corpus}", f"data.feature_cache={tmp_path / 'cache'}"])
    torch.manual_seed(0)
    cache = FeatureCache(cfg, {"audio": build_audio_encoder(cfg.model), "video": build_video_encoder(cfg.model)})
    conditions = cache.conditions("train")
    cache.fill(cfg.data.train_labels, conditions, progress=False)
    derived = bytes_per_second(cfg)
    for modality, store in cache.stores.items():
        frames = sum(entry[2] for entry in store.entries.values())
        dim = store.get(next(iter(store.entries)))[0].shape[1]
        seconds = frames / cache.frame_rates[modality]
        versions = len(conditions) if modality == "audio" else 1
        assert derived[modality] == pytest.approx(frames * dim * 2 / seconds * versions)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["data.train_snrs=[0, 5]"],
        ["data.train_snrs=[0, 5]", "data.clean_epochs=1"],
        ["data.noise_path=null"],
        ["data.train_snrs=[null]"],
        ["data.feature_noisy_versions=2"],
    ],
)
def test_audio_versions_are_the_conditions_the_cache_fills(corpus: Path, overrides: list[str]) -> None:
    cfg = load_config("tiny", [f"data.root={corpus}", *overrides])
    assert audio_versions(cfg.data) == len(FeatureKeys.from_config(cfg.data).train_conditions())


def test_pooled_storage_by_mode(corpus: Path) -> None:
    cfg = load_config(
        "tiny", [f"data.root={corpus}", "model.compression.audio_rates=[1]", "model.compression.video_rates=[1]"]
    )
    full, pooled = bytes_per_second(cfg), bytes_per_second(cfg, Storage("pooled", "pooled", "pooled"))
    assert pooled == full  # rate 1 pools nothing
    cfg = load_config("tiny", [f"data.root={corpus}", "model.compression.mode=stack"])
    stacked = bytes_per_second(cfg, Storage("pooled", "pooled", "pooled"))
    assert stacked["audio"] == pytest.approx(full["audio"] * len(cfg.model.compression.audio_rates))  # no saving
    none = bytes_per_second(cfg, Storage("video only", "none", "full"))
    assert none == {"audio": 0.0, "video": full["video"]}
