"""FeatureCache: what is computed, when it is computed again, and that cached items equal the uncached ones."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mome.config import Config, load_config
from mome.data.dataset import AVDataset
from mome.errors import UserError
from mome.features.cache import FeatureCache
from mome.features.dataset import CachedAVDataset
from mome.features.keys import CLEAN
from mome.models.encoders import build_audio_encoder, build_video_encoder


def _config(root: Path, cache: Path, *overrides: str) -> Config:
    return load_config("tiny", [f"data.root={root}", f"data.feature_cache={cache}", *overrides])


def _encoders(cfg: Config) -> dict:
    torch.manual_seed(0)  # the same random encoders every time: the same store
    return {"audio": build_audio_encoder(cfg.model), "video": build_video_encoder(cfg.model)}


@pytest.fixture
def own_corpus(corpus: Path, tmp_path: Path) -> Path:
    """A private copy of the shared corpus, for tests that change its files."""
    return Path(shutil.copytree(corpus, tmp_path / "corpus"))


def _rows(labels: str) -> int:
    return len(Path(labels).read_text().splitlines())


def test_fill_encodes_each_missing_entry_once(corpus: Path, tmp_path: Path) -> None:
    cfg = _config(corpus, tmp_path / "cache", "data.feature_noisy_versions=2")
    cache = FeatureCache(cfg, _encoders(cfg))
    conditions = cache.conditions("train")
    assert [c.name.split(":")[0] for c in conditions] == ["clean", "train0", "train1"]
    first = cache.fill(cfg.data.train_labels, conditions, progress=False)
    rows = _rows(cfg.data.train_labels)
    assert first.utterances == rows and first.clips == {"audio": 3 * rows, "video": rows}
    assert cache.fill(cfg.data.train_labels, conditions, progress=False).utterances == 0
    again = FeatureCache(cfg, _encoders(cfg))  # a new process sees the same entries
    assert again.fill(cfg.data.train_labels, conditions, progress=False).utterances == 0
    more = FeatureCache(_config(corpus, tmp_path / "cache", "data.feature_noisy_versions=3"), _encoders(cfg))
    grown = more.fill(cfg.data.train_labels, more.conditions("train"), progress=False)
    assert grown.clips == {"audio": rows, "video": 0}  # versions 0 and 1 are reused, only the third is new


def test_cached_evaluation_items_equal_the_uncached_ones(corpus: Path, tmp_path: Path) -> None:
    """At an evaluation SNR the cache mixes the same seeded babble as `AVDataset` and encodes each clip alone."""
    cfg = _config(corpus, tmp_path / "cache")
    encoders = _encoders(cfg)
    cache = FeatureCache(cfg, encoders)
    cache.fill(cfg.data.test_labels, cache.conditions("test", [0.0]), progress=False)
    cached = CachedAVDataset(cfg.data.test_labels, corpus, cfg.data, False, cache, eval_snr=0.0)
    plain = AVDataset(cfg.data.test_labels, corpus, cfg.data, train=False, eval_snr=0.0)
    for i in range(len(plain)):
        item, reference = cached[i], plain[i]
        with torch.no_grad():
            audio, frames = encoders["audio"](reference["audio"][None], torch.tensor([len(reference["audio"])]))
            video, _ = encoders["video"](reference["video"][None])
        audio = audio[0, : int(frames[0])]
        torch.testing.assert_close(item["audio_features"], audio, atol=2e-2, rtol=1e-2)  # fp16 storage
        torch.testing.assert_close(item["video_features"], video[0], atol=2e-2, rtol=1e-2)
        assert item["meta"]["snr"] == reference["meta"]["snr"] == 0.0 and item["text"] == reference["text"]


def test_a_changed_encoder_is_never_served_stale(corpus: Path, tmp_path: Path) -> None:
    cfg = _config(corpus, tmp_path / "cache")
    encoders = _encoders(cfg)
    cache = FeatureCache(cfg, encoders)
    cache.fill(cfg.data.val_labels, [CLEAN], progress=False)
    with torch.no_grad():
        next(encoders["video"].parameters()).add_(0.01)  # a retrained lip encoder
    changed = FeatureCache(cfg, encoders)
    assert changed.stores["video"].directory != cache.stores["video"].directory
    assert changed.stores["audio"].directory == cache.stores["audio"].directory
    stats = changed.fill(cfg.data.val_labels, [CLEAN], progress=False)
    assert stats.clips == {"audio": 0, "video": _rows(cfg.data.val_labels)}


def test_a_changed_media_file_is_encoded_again(own_corpus: Path, tmp_path: Path) -> None:
    cfg = _config(own_corpus, tmp_path / "cache")
    cache = FeatureCache(cfg, _encoders(cfg))
    cache.fill(cfg.data.val_labels, [CLEAN], progress=False)
    rel = Path(cfg.data.val_labels).read_text().splitlines()[0].split(",")[1]
    wav = own_corpus / f"{rel}.wav"
    stat = wav.stat()
    os.utime(wav, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # rewritten (same size, new time)
    stats = FeatureCache(cfg, _encoders(cfg)).fill(cfg.data.val_labels, [CLEAN], progress=False)
    assert (stats.utterances, stats.clips) == (1, {"audio": 1, "video": 0})


@pytest.mark.parametrize("change", ["data.train_snrs=[0, null]", "babble"])
def test_a_changed_noise_setting_is_encoded_again(own_corpus: Path, tmp_path: Path, change: str) -> None:
    cfg = _config(own_corpus, tmp_path / "cache", "data.feature_noisy_versions=1")
    cache = FeatureCache(cfg, _encoders(cfg))
    cache.fill(cfg.data.train_labels, cache.conditions("train"), progress=False)
    if change == "babble":
        babble = Path(cfg.data.noise_path)
        babble.write_bytes(babble.read_bytes())  # a new noise file, same content: a new mtime
        os.utime(babble, ns=(babble.stat().st_atime_ns, babble.stat().st_mtime_ns + 10**9))
        cfg2 = cfg
    else:
        cfg2 = _config(own_corpus, tmp_path / "cache", "data.feature_noisy_versions=1", change)
    again = FeatureCache(cfg2, _encoders(cfg2))
    stats = again.fill(cfg2.data.train_labels, again.conditions("train"), progress=False)
    assert stats.clips == {"audio": _rows(cfg.data.train_labels), "video": 0}  # the noisy version only


def test_a_trainable_encoder_refuses_the_cache(corpus: Path, tmp_path: Path) -> None:
    cfg = _config(corpus, tmp_path / "cache", "model.encoders.video.arch={name: tiny, lora_rank: 2}")
    with pytest.raises(UserError, match="video encoder has trainable weights.*data.feature_cache=null"):
        FeatureCache(cfg, _encoders(cfg))


def test_shards_split_the_work_and_an_interrupted_fill_continues(corpus: Path, tmp_path: Path) -> None:
    cfg = _config(corpus, tmp_path / "cache")
    rows = _rows(cfg.data.train_labels)

    class StopAfterOne:
        stop = True

    cache = FeatureCache(cfg, _encoders(cfg))
    conditions = cache.conditions("train")
    assert cache.fill(cfg.data.train_labels, conditions, progress=False, stop=StopAfterOne()).utterances == 1
    done = [cache.fill(cfg.data.train_labels, conditions, shard=(i, 2), progress=False).utterances for i in (0, 1)]
    assert sum(done) == rows - 1
    assert len(FeatureCache(cfg, _encoders(cfg)).stores["video"]) == rows


def test_training_draws_clean_or_a_noisy_version_per_epoch(corpus: Path, tmp_path: Path) -> None:
    cfg = _config(corpus, tmp_path / "cache", "data.feature_noisy_versions=2", "data.train_snrs=[-5, 5, null]")
    cache = FeatureCache(cfg, _encoders(cfg))
    cache.fill(cfg.data.train_labels, cache.conditions("train"), progress=False)
    ds = CachedAVDataset(cfg.data.train_labels, corpus, cfg.data, True, cache, augment_seed=3)
    draws = []
    for epoch in range(12):
        ds.set_epoch(epoch)
        draws += [ds[i]["meta"]["snr"] for i in range(len(ds))]
    assert set(draws) <= {-5.0, 5.0, None} and None in draws and len(set(draws)) >= 2
    ds.set_epoch(4)
    first = [ds[i]["audio_features"] for i in range(len(ds))]
    again = CachedAVDataset(cfg.data.train_labels, corpus, cfg.data, True, cache, augment_seed=3)
    again.set_epoch(4)
    for a, b in zip(first, (again[i]["audio_features"] for i in range(len(again)))):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # a function of (seed, epoch, utterance)


def test_clean_epochs_read_clean_audio_then_the_noise_mix(corpus: Path, tmp_path: Path) -> None:
    """`data.clean_epochs`: the first epochs train on clean audio (cached even with no `null` SNR), later ones
    draw from `train_snrs`, cached and uncached alike."""
    cfg = _config(
        corpus, tmp_path / "cache", "data.feature_noisy_versions=2", "data.train_snrs=[-5, 5]", "data.clean_epochs=2"
    )
    cache = FeatureCache(cfg, _encoders(cfg))
    assert cache.conditions("train")[0] == CLEAN
    cache.fill(cfg.data.train_labels, cache.conditions("train"), progress=False)
    for ds in (
        CachedAVDataset(cfg.data.train_labels, corpus, cfg.data, True, cache, augment_seed=3),
        AVDataset(cfg.data.train_labels, corpus, cfg.data, True, augment_seed=3),
    ):
        snrs = {}
        for epoch in range(4):
            ds.set_epoch(epoch)
            snrs[epoch] = {ds[i]["meta"]["snr"] for i in range(len(ds))}
        assert snrs[0] == snrs[1] == {None}, type(ds)
        assert None not in snrs[2] | snrs[3] and snrs[2] | snrs[3] <= {-5.0, 5.0}, type(ds)


def test_feature_time_masks_apply_in_training_only(corpus: Path, tmp_path: Path) -> None:
    cfg = _config(corpus, tmp_path / "cache", "data.time_mask=true", "data.train_snrs=[null]")
    cache = FeatureCache(cfg, _encoders(cfg))
    cache.fill(cfg.data.train_labels, cache.conditions("train"), progress=False)
    train = CachedAVDataset(cfg.data.train_labels, corpus, cfg.data, True, cache)
    plain = CachedAVDataset(cfg.data.train_labels, corpus, cfg.data, False, cache)
    zeroed = {"audio": 0, "video": 0}
    for i in range(len(train)):
        for m in zeroed:
            masked, full = train[i][f"{m}_features"], plain[i][f"{m}_features"]
            rows_zero = (masked == 0).all(dim=1)
            zeroed[m] += int(rows_zero.sum())
            torch.testing.assert_close(masked[~rows_zero], full[~rows_zero], rtol=0, atol=0)
            assert not (full == 0).all(dim=1).any()
    assert zeroed["audio"] > 0 and zeroed["video"] > 0


def test_a_broken_file_is_reported_with_its_reason(own_corpus: Path, tmp_path: Path) -> None:
    cfg = _config(own_corpus, tmp_path / "cache")
    rel = Path(cfg.data.val_labels).read_text().splitlines()[0].split(",")[1]
    (own_corpus / f"{rel}.mp4").write_bytes(b"not a video")
    cache = FeatureCache(cfg, _encoders(cfg))
    stats = cache.fill(cfg.data.val_labels, [CLEAN], progress=False)
    assert stats.failed == 1
    ds = CachedAVDataset(cfg.data.val_labels, own_corpus, cfg.data, False, cache)
    assert ds[0] is None and "undecodable video" in ds.bad[rel] and ds[1] is not None
    assert cache.fill(cfg.data.val_labels, [CLEAN], progress=False).utterances == 0  # known bad: not retried
    np.testing.assert_equal(len(cache.stores["video"]), 1)


def test_worker_processes_fill_every_entry_exactly_once(corpus: Path, tmp_path: Path, capsys) -> None:
    from mome.features.fill import fill_splits

    cfg = _config(corpus, tmp_path / "cache", "data.feature_noisy_versions=1")
    total = fill_splits(cfg, ("train", "test"), snrs=[None, 0.0], workers=2, progress=False)
    train, test = _rows(cfg.data.train_labels), _rows(cfg.data.test_labels)
    assert total.utterances == train + test
    assert total.clips == {"audio": 2 * train + 2 * test, "video": train + test}  # nothing twice
    out = capsys.readouterr().out
    assert "total (2 workers)" in out and "feature cache" in out
    assert fill_splits(cfg, ("train", "test"), snrs=[None, 0.0], workers=1, progress=False).utterances == 0


def test_a_missing_file_is_skipped_with_its_reason_not_a_traceback(own_corpus: Path, tmp_path: Path) -> None:
    cfg = _config(own_corpus, tmp_path / "cache")
    rel = Path(cfg.data.val_labels).read_text().splitlines()[0].split(",")[1]
    (own_corpus / f"{rel}.wav").unlink()
    cache = FeatureCache(cfg, _encoders(cfg))
    assert cache.fill(cfg.data.val_labels, [CLEAN], progress=False).failed == 1
    ds = CachedAVDataset(cfg.data.val_labels, own_corpus, cfg.data, False, cache)
    assert ds[0] is None and ds.bad[rel].endswith("missing file") and ds[1] is not None


def test_a_missing_noise_file_is_an_error_not_clean_training(own_corpus: Path, tmp_path: Path) -> None:
    cfg = _config(own_corpus, tmp_path / "cache")
    Path(cfg.data.noise_path).unlink()
    cache = FeatureCache(cfg, _encoders(cfg))
    with pytest.raises(UserError, match="data.noise_path: no such file"):
        cache.conditions("train")
    with pytest.raises(UserError, match="data.noise_path: no such file.*0 dB"):
        cache.conditions("test", [0.0])
    assert cache.conditions("test", [None]) == [CLEAN]


def test_the_encoder_identity_covers_its_configuration(corpus: Path, tmp_path: Path) -> None:
    """Two encoders with the same tensors but another head count give other features: other stores."""
    from mome.features.keys import encoder_identity

    cfg = _config(corpus, tmp_path / "cache")
    video = _encoders(cfg)["video"]
    other = _encoders(_config(corpus, tmp_path / "cache", "model.encoders.video.arch={name: tiny, heads: 2}"))["video"]
    other.load_state_dict(video.state_dict())
    assert encoder_identity(video, "video") != encoder_identity(other, "video")


def test_evaluation_noise_is_one_condition_for_int_and_float_snrs(corpus: Path) -> None:
    from mome.data.noise import eval_rng

    assert eval_rng("a/b", 0, 3).random() == eval_rng("a/b", 0.0, 3).random()


def test_mome_features_sets_a_damaged_shard_aside_and_fills_it_again(
    corpus: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    from mome.features import store as store_module
    from mome.features.fill import fill_splits, open_cache
    from mome.features.store import DamagedShard

    cfg = _config(corpus, tmp_path / "cache")
    fill_splits(cfg, ("val",), workers=1, progress=False)
    (npy,) = (tmp_path / "cache").glob("video-*/shard-*.npy")
    data = bytearray(npy.read_bytes())
    data[-1] ^= 0x01
    npy.write_bytes(bytes(data))
    monkeypatch.setattr(store_module, "_VERIFIED", set())  # as a new process: the damage is within one mtime tick
    with pytest.raises(DamagedShard, match=rf"{npy.name}: damaged feature shard .*rerun `mome features`"):
        open_cache(cfg, mode="read")  # what `mome train` and `mome eval` open
    capsys.readouterr()
    again = fill_splits(cfg, ("val",), workers=1, progress=False)
    assert again.clips == {"audio": 0, "video": _rows(cfg.data.val_labels)}  # the damaged shard's entries only
    assert capsys.readouterr().out.count("set aside") == 1
    assert len(open_cache(cfg, mode="read").stores["video"]) == _rows(cfg.data.val_labels)


def test_a_fill_says_how_long_it_will_take_before_most_of_it(corpus: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("mome.features.cache.ESTIMATE_AFTER", (1, 1e9))  # after the first utterance
    cfg = _config(corpus, tmp_path / "cache")
    cache = FeatureCache(cfg, _encoders(cfg))
    conditions = cache.conditions("train")
    cache.fill(cfg.data.train_labels, conditions, limit=1, progress=True)  # one utterance: nothing left to estimate
    assert "to encode" not in capsys.readouterr().out
    cache.fill(cfg.data.train_labels, conditions, progress=False)
    assert "to encode" not in capsys.readouterr().out  # a worker without progress output stays silent
    cache = FeatureCache(cfg, _encoders(cfg))
    cache.fill(cfg.data.val_labels, [CLEAN], progress=True)
    rows = _rows(cfg.data.val_labels)
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "to encode" in line]
    assert f"{rows} utterances ({2 * rows} clips) to encode; the first 1 took" in line and "more" in line


def test_durations_read_in_the_unit_that_matters() -> None:
    from mome.features.cache import duration

    assert [duration(s) for s in (40, 600, 3 * 3600 + 300, 50 * 3600)] == ["40 s", "10 min", "3 h 05 min", "2 d 2 h"]


def _pooled_pair(corpus: Path, tmp_path: Path, *overrides: str) -> tuple:
    """(full cfg, its cache, pooled cfg, its cache), both filled for every split, sharing one directory."""
    caches = []
    for store in ("full", "pooled"):
        cfg = _config(corpus, tmp_path / "cache", f"data.feature_cache_store={store}", *overrides)
        cache = FeatureCache(cfg, _encoders(cfg))
        for split in ("train", "val"):
            cache.fill(getattr(cfg.data, f"{split}_labels"), cache.conditions(split), progress=False)
        caches += [cfg, cache]
    return tuple(caches)


def test_pooled_cache_batches_equal_full_cache_batches_after_pooling(corpus: Path, tmp_path: Path) -> None:
    from mome.data.collate import collate
    from mome.models.avsr import build_model

    full_cfg, full, pooled_cfg, pooled = _pooled_pair(corpus, tmp_path)
    assert full.stores["audio"].directory != pooled.stores["audio"].directory  # never one served as the other
    ratio = pooled.stores["audio"].size_bytes() / full.stores["audio"].size_bytes()
    assert ratio < 0.5  # tiny preset: audio rates {4, 16} keep 1/4 + 1/16 of the frames
    model = build_model(full_cfg.model).eval()
    combos = model.combinations
    for split in ("val", "train"):  # evaluation items, then training items with no time mask
        labels = getattr(full_cfg.data, f"{split}_labels")
        data = [full_cfg.data, pooled_cfg.data]
        for d in data:
            d.time_mask = False
        a = CachedAVDataset(labels, corpus, data[0], split == "train", full, augment_seed=1)
        b = CachedAVDataset(labels, corpus, data[1], split == "train", pooled, augment_seed=1)
        batch_a, batch_b = collate([a[i] for i in range(len(a))]), collate([b[i] for i in range(len(b))])
        assert "audio_features" not in batch_b and "audio_pooled16_lengths" in batch_b
        assert [m["snr"] for m in batch_a["metas"]] == [m["snr"] for m in batch_b["metas"]]
        with torch.no_grad():
            tokens_a, tokens_b = (
                model._project(model.encode(batch_a), combos),
                model._project(model.encode(batch_b), combos),
            )
            for modality_a, modality_b in zip(tokens_a, tokens_b):
                assert modality_a.keys() == modality_b.keys()
                for rate, (x, lengths) in modality_a.items():
                    torch.testing.assert_close(modality_b[rate][1], lengths)
                    torch.testing.assert_close(modality_b[rate][0], x, atol=2e-3, rtol=2e-3)  # fp16 of the mean
            loss_a = model(model.encode(batch_a), batch_a["texts"]).loss
            loss_b = model(model.encode(batch_b), batch_b["texts"]).loss
        torch.testing.assert_close(loss_b, loss_a, atol=1e-3, rtol=1e-3)


def test_pooled_cache_masks_the_spans_a_full_cache_masks(corpus: Path, tmp_path: Path) -> None:
    """Time masks drawn alike, applied after pooling: a token whose frames the full item zeroed is zero, one
    whose frames it kept is the mean of the kept frames."""
    from mome.models.pooling import pool, pooled_key

    full_cfg, full, pooled_cfg, pooled = _pooled_pair(corpus, tmp_path, "data.time_mask=true")
    a = CachedAVDataset(full_cfg.data.train_labels, corpus, full_cfg.data, True, full, augment_seed=2)
    b = CachedAVDataset(pooled_cfg.data.train_labels, corpus, pooled_cfg.data, True, pooled, augment_seed=2)
    seen = {"masked": 0, "kept": 0}
    for i in range(len(a)):
        item_a, item_b = a[i], b[i]
        assert item_a["meta"]["snr"] == item_b["meta"]["snr"]
        for modality, rates in (("audio", [4, 16]), ("video", [2, 5])):
            x = item_a[f"{modality}_features"]  # masked full frames
            kept = (x != 0).any(dim=1).float()[None, :, None]
            for rate in rates:
                share = pool(kept, torch.tensor([len(x)]), rate).features[0, :, 0]
                means = pool(x[None], torch.tensor([len(x)]), rate).features[0]
                y = item_b[pooled_key(modality, rate)]
                assert (y[share == 0] == 0).all()
                torch.testing.assert_close(y[share == 1], means[share == 1], atol=2e-3, rtol=2e-3)
                seen["masked"] += int((share == 0).sum())
                seen["kept"] += int((share == 1).sum())
    assert seen["masked"] > 0 and seen["kept"] > 0


def test_pooled_cache_refuses_stacked_frames(corpus: Path, tmp_path: Path) -> None:
    from mome.errors import ConfigError

    with pytest.raises(ConfigError, match="feature_cache_store"):
        _config(corpus, tmp_path / "cache", "data.feature_cache_store=pooled", "model.compression.mode=stack")
