"""FeatureStore: shards round-trip, appear only when complete, and many writers share one store."""

from __future__ import annotations

import json
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


# ------------------------------------------------------------------------------------------ integrity
@pytest.fixture
def fresh_process(monkeypatch) -> None:
    """Forget which shards this process has hashed, as a new process would (a test damages a file within the
    file system's timestamp granularity, so its mtime may not change)."""
    monkeypatch.setattr(store_module, "_VERIFIED", set(), raising=False)


def _one_shard(directory: Path) -> tuple[Path, Path]:
    """A shard holding two entries, added to a store; returns its (.npy, .json)."""
    before = set(directory.glob("shard-*.npy"))
    with FeatureStore(directory).writer() as w:
        w.add("a", np.full((4, 3), 0.5), {})
        w.add("b", np.full((2, 3), -1.0), {})
    (npy,) = set(directory.glob("shard-*.npy")) - before
    return npy, npy.with_suffix(".json")


def _flip_last_byte(path: Path, value: bytes = b"\x7f") -> None:
    data = bytearray(path.read_bytes())
    data[-1:] = value
    path.write_bytes(bytes(data))


def _damages() -> dict:
    def nan(npy: Path, index: Path) -> None:  # a float16 NaN in the last feature (0x7e00, little-endian)
        data = bytearray(npy.read_bytes())
        data[-2:] = b"\x00\x7e"
        npy.write_bytes(bytes(data))

    return {
        "changed byte": (lambda npy, index: _flip_last_byte(npy), "npy", "sha256 differs"),
        "NaN": (nan, "npy", "sha256 differs"),
        "truncated shard": (lambda npy, index: npy.write_bytes(npy.read_bytes()[:-6]), "npy", "truncated"),
        "missing shard": (lambda npy, index: npy.unlink(), "npy", "missing"),
        "truncated index": (lambda npy, index: index.write_text(index.read_text()[:40]), "json", "unreadable index"),
        "edited index": (
            lambda npy, index: index.write_text(index.read_text().replace("[0, 4,", "[1, 4,")),
            "json",
            "differs from its checksum",
        ),
    }


@pytest.mark.parametrize("damage", list(_damages()))
def test_a_damaged_shard_is_one_error_naming_it_and_the_fix(tmp_path: Path, fresh_process, damage: str) -> None:
    npy, index = _one_shard(tmp_path)
    harm, named, reason = _damages()[damage]
    harm(npy, index)
    with pytest.raises(store_module.DamagedShard) as err:
        FeatureStore(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{npy if named == 'npy' else index}: damaged feature shard") and reason in message
    assert "`mome features`" in message and "\n" not in message


def test_repair_sets_a_damaged_shard_aside_and_its_entries_go_missing(tmp_path: Path, fresh_process, capsys) -> None:
    with FeatureStore(tmp_path).writer() as w:
        w.add("kept", np.ones((2, 3)), {})
    npy, index = _one_shard(tmp_path)
    _flip_last_byte(npy)
    repaired = FeatureStore(tmp_path, mode="repair")
    assert "kept" in repaired and "a" not in repaired and "b" not in repaired  # to be computed again
    out = capsys.readouterr().out
    assert out.count("set aside") == 1 and npy.with_suffix("").name in out
    assert not npy.exists() and Path(f"{npy}.damaged").exists() and Path(f"{index}.damaged").exists()
    assert len(FeatureStore(tmp_path)) == 1  # what is left reads without complaint


def test_an_intact_store_is_hashed_once_per_process(tmp_path: Path, fresh_process, monkeypatch) -> None:
    _one_shard(tmp_path)
    calls = []
    real = store_module.file_sha256
    monkeypatch.setattr(store_module, "file_sha256", lambda p: calls.append(p) or real(p))
    store_module._VERIFIED.clear()
    FeatureStore(tmp_path)
    FeatureStore(tmp_path).refresh()
    FeatureStore(tmp_path, mode="index")
    assert len(calls) == 1


def test_non_finite_features_are_recorded_as_failed_not_stored(tmp_path: Path) -> None:
    with FeatureStore(tmp_path).writer() as w:
        w.add("nan", np.array([[0.0, np.nan]]), {})
        w.add("overflow", np.array([[1e6, 0.0]]), {})  # finite in float32, inf in float16
        w.add("ok", np.zeros((1, 2)), {})
    store = FeatureStore(tmp_path)
    assert len(store) == 1 and "ok" in store.entries
    for key in ("nan", "overflow"):
        with pytest.raises(KeyError, match="not finite"):
            store.get(key)


def test_a_shard_written_before_checksums_is_checked_for_shape_and_nan(tmp_path: Path, fresh_process) -> None:
    npy, index = _one_shard(tmp_path)
    data = json.loads(index.read_text())
    index.write_text(json.dumps({k: v for k, v in data.items() if k not in ("sha256", "checksum")}))
    assert len(FeatureStore(tmp_path)) == 2  # an old intact shard still reads
    store_module._VERIFIED.clear()
    _flip_last_byte(npy, b"\x7e")  # 0x7e?? is a float16 NaN
    with pytest.raises(store_module.DamagedShard, match="non-finite values"):
        FeatureStore(tmp_path)
