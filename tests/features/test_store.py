"""FeatureStore: shards round-trip, appear only when complete, and many writers share one store."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from mome.features import store as store_module
from mome.features.store import FeatureStore


def test_entries_round_trip_through_a_fresh_store(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((2, 3))
    with FeatureStore(tmp_path).writer() as writer:
        writer.add("a", a, {"snr": None})
        writer.add("b", b, {"snr": 5.0})
        writer.fail("c", "undecodable video")
    fresh = FeatureStore(tmp_path)
    got_a, extra_a = fresh.get("a")
    got_b, extra_b = fresh.get("b")
    assert got_a.dtype == np.float16 and got_a.shape == (5, 3)
    np.testing.assert_allclose(got_a, a, atol=2e-3)
    np.testing.assert_allclose(got_b, b, atol=2e-3)
    assert (extra_a, extra_b) == ({"snr": None}, {"snr": 5.0})
    assert "c" in fresh and len(fresh) == 2
    with pytest.raises(KeyError, match="undecodable video"):
        fresh.get("c")
    with pytest.raises(KeyError, match="not in the feature cache"):
        fresh.get("d")


def test_a_shard_without_its_index_is_invisible(tmp_path: Path, monkeypatch) -> None:
    """The index is renamed into place after the shard: a kill between the two leaves nothing half-read."""
    real = store_module.atomic_write

    def killed_before_the_index(path, write, fsync=False):
        if Path(path).suffix == ".json":
            raise KeyboardInterrupt
        return real(path, write, fsync)

    monkeypatch.setattr(store_module, "atomic_write", killed_before_the_index)
    writer = FeatureStore(tmp_path).writer()
    writer.add("a", np.ones((4, 2)), {})
    with pytest.raises(KeyboardInterrupt):
        writer.flush()
    monkeypatch.setattr(store_module, "atomic_write", real)
    assert list(tmp_path.glob("shard-*.npy")) and not list(tmp_path.glob("shard-*.json"))
    assert len(FeatureStore(tmp_path)) == 0


def test_two_writers_fill_one_store(tmp_path: Path) -> None:
    one, two = FeatureStore(tmp_path), FeatureStore(tmp_path)
    with one.writer() as w:
        w.add("x", np.zeros((1, 2)), {})
    with two.writer() as w:
        w.add("y", np.ones((3, 2)), {})
    assert len(list(tmp_path.glob("shard-*.json"))) == 2
    assert "y" not in one
    one.refresh()
    assert "x" in one and "y" in one
    np.testing.assert_array_equal(one.get("y")[0], np.ones((3, 2)))


def test_shards_are_flushed_by_size(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(store_module, "SHARD_BYTES", 100)
    with FeatureStore(tmp_path).writer() as w:
        for i in range(3):
            w.add(f"k{i}", np.zeros((10, 4)), {})  # 80 bytes each in fp16: a shard every second entry
    assert len(list(tmp_path.glob("shard-*.json"))) == 2
    assert len(FeatureStore(tmp_path)) == 3
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in tmp_path.glob("shard-*"))  # a cache others can read


def test_a_pickled_store_reopens_its_memory_maps(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    with store.writer() as w:
        w.add("a", np.arange(6).reshape(3, 2), {})
    store.get("a")  # opens the memory map
    clone = pickle.loads(pickle.dumps(store))  # what a DataLoader worker receives
    assert clone._arrays == {}
    np.testing.assert_array_equal(clone.get("a")[0], np.arange(6).reshape(3, 2))
