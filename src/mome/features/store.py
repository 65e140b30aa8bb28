"""Cached features of one encoder: fp16 shards read through memory maps, each with its own index.

    <store>/encoder.json       what made these features (modality, encoder class, identity)
    <store>/<shard>.npy        [rows, D] float16: the features of many entries, one after another
    <store>/<shard>.json       {"dim", "rows", "entries": {key: [offset, frames, extra]}, "failures": {key: reason}}

A shard is written whole and renamed into place, its index after it, so a reader sees a shard completely or
not at all, and an interrupted writer loses at most the shard it was filling. Shard names are unique (time,
process, random), so many processes or machines can fill one store at once (`mome features --shard I/N`,
data-parallel training) without a shared index to fight over.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from mome.io import atomic_write, atomic_write_text

SHARD_BYTES = 128 << 20
"""A shard is flushed once it holds this many bytes of features (and at the end of a run or on an error)."""


def _write_shared(path: Path, write) -> None:
    """Written whole, flushed to disk and renamed into place, readable by every user of a shared cache."""

    def write_readable(tmp: Path) -> None:
        write(tmp)
        os.chmod(tmp, 0o644)

    atomic_write(path, write_readable, fsync=True)


class FeatureStore:
    """Read side: every complete shard's entries, opened lazily (and again in each DataLoader worker)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.entries: dict[str, tuple[str, int, int, dict[str, Any]]] = {}  # key -> (shard, offset, frames, extra)
        self.failures: dict[str, str] = {}  # key -> why the media could not be encoded
        self._arrays: dict[str, np.ndarray] = {}
        self.refresh()

    def refresh(self) -> None:
        """Read the indexes of the shards that exist now (other writers may have added some)."""
        if not self.directory.is_dir():
            return
        for index in sorted(self.directory.glob("shard-*.json")):
            shard = index.with_suffix(".npy").name
            data = json.loads(index.read_text())
            for key, (offset, frames, extra) in data["entries"].items():
                self.entries[key] = (shard, offset, frames, extra)
            self.failures.update(data.get("failures", {}))
        for key in self.entries:  # a later success overrides an earlier failure
            self.failures.pop(key, None)

    def __contains__(self, key: str) -> bool:
        return key in self.entries or key in self.failures

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> tuple[np.ndarray, dict[str, Any]]:
        """(features [frames, D] float16, a read-only view on the memory map; the entry's extra fields).
        Raises KeyError with the reason for an entry that failed or was never computed."""
        if key not in self.entries:
            raise KeyError(self.failures.get(key, "not in the feature cache"))
        shard, offset, frames, extra = self.entries[key]
        if shard not in self._arrays:
            self._arrays[shard] = np.load(self.directory / shard, mmap_mode="r")
        return self._arrays[shard][offset : offset + frames], extra

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.directory.glob("shard-*")) if self.directory.is_dir() else 0

    def describe(self, info: dict[str, Any]) -> None:
        """Write encoder.json (what made these features), once."""
        path = self.directory / "encoder.json"
        if not path.is_file():
            atomic_write_text(path, json.dumps(info, indent=2) + "\n")

    def writer(self) -> ShardWriter:
        return ShardWriter(self)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"] = {}  # memory maps are reopened in the process that reads them, never pickled whole
        return state


class ShardWriter:
    """Collects new entries and writes them as shards of `SHARD_BYTES`; `close()` (or leaving the `with`
    block, also on an error or Ctrl-C) writes what is complete."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self.pending: list[tuple[str, np.ndarray, dict[str, Any]]] = []
        self.keys: set[str] = set()  # added, flushed or not
        self.failures: dict[str, str] = {}
        self.pending_bytes = 0
        self.written_bytes = 0

    def add(self, key: str, features: np.ndarray, extra: dict[str, Any]) -> None:
        """`features` [frames, D] (any float dtype; stored as float16)."""
        array = np.ascontiguousarray(features, dtype=np.float16)
        self.pending.append((key, array, extra))
        self.keys.add(key)
        self.pending_bytes += array.nbytes
        if self.pending_bytes >= SHARD_BYTES:
            self.flush()

    def fail(self, key: str, reason: str) -> None:
        self.failures[key] = reason

    def flush(self) -> None:
        if not self.pending and not self.failures:
            return
        directory = self.store.directory
        directory.mkdir(parents=True, exist_ok=True)
        name = f"shard-{time.time_ns():x}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        entries: dict[str, list] = {}
        offset = 0
        for key, array, extra in self.pending:
            entries[key] = [offset, len(array), extra]
            offset += len(array)
        dim = self.pending[0][1].shape[1] if self.pending else 0
        data = np.concatenate([a for _, a, _ in self.pending]) if self.pending else np.zeros((0, 0), np.float16)
        index = {"dim": dim, "rows": offset, "entries": entries, "failures": self.failures}
        _write_shared(directory / f"{name}.npy", lambda tmp: np.save(tmp, data))
        _write_shared(directory / f"{name}.json", lambda tmp: tmp.write_text(json.dumps(index) + "\n"))
        for key, (off, frames, extra) in entries.items():
            self.store.entries[key] = (f"{name}.npy", off, frames, extra)
            self.store.failures.pop(key, None)
        for key, reason in self.failures.items():
            self.store.failures.setdefault(key, reason)
        self.written_bytes += data.nbytes
        self.pending, self.failures, self.pending_bytes = [], {}, 0

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


def describe_cache(directory: Path) -> str:
    """One line: the stores under a cache directory, their entries and the bytes on disk."""
    stores = [FeatureStore(d) for d in sorted(directory.iterdir()) if d.is_dir()] if directory.is_dir() else []
    parts = ", ".join(f"{s.directory.name.split('-')[0]} {len(s)} entries" for s in stores) or "empty"
    size = sum(s.size_bytes() for s in stores)
    return f"feature cache {directory}: {parts}, {size / 2**20:.1f} MiB"
