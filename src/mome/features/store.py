"""Cached features of one encoder: fp16 shards read through memory maps, each with its own index.

    <store>/encoder.json       what made these features (modality, encoder class, identity)
    <store>/<shard>.npy        [rows, D] float16: the features of many entries, one after another
    <store>/<shard>.json       {"dim", "rows", "entries": {key: [offset, frames, extra]}, "failures": {key: reason},
                                "sha256": of the .npy, "checksum": of this index}

A shard is written whole and renamed into place, its index after it, so a reader sees a shard completely or
not at all, and an interrupted writer loses at most the shard it was filling. Shard names are unique (time,
process, random), so many processes or machines can fill one store at once (`mome features --shard I/N`,
data-parallel training) without a shared index to fight over.

Nothing damaged is read: opening a store checks every index (its checksum, the shape and size of its .npy)
and hashes every .npy once per process (`mode="read"`); a changed byte, a truncated or missing file is a
one-line `DamagedShard`. `mome features` opens with `mode="repair"`: a damaged shard is renamed to
`*.damaged` and its entries count as missing, so the fill computes them again. Features that are not finite
are never stored (the entry is recorded as failed). A shard written before checksums is checked for its shape
and for finite values instead of its hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mome.errors import UserError
from mome.io import atomic_write, atomic_write_text, file_sha256

SHARD_BYTES = 128 << 20
"""A shard is flushed once it holds this many bytes of features (and at the end of a run or on an error)."""
Mode = Literal["read", "repair", "index"]
"""How a store opens its shards: `read` verifies every shard and refuses a damaged one; `repair` sets a damaged
one aside (its entries count as missing); `index` checks the indexes and file sizes only, for a filler whose
parent has just verified the store (`repair_cache`)."""
DAMAGED = ".damaged"
_VERIFIED: set[tuple[str, int, int]] = set()
"""(path, size, mtime) of the .npy files hashed in this process: a store reopened (a refresh, the summary line)
is not hashed again."""


class DamagedShard(UserError):
    """A feature shard whose index or data changed since it was written (a changed byte, truncated, missing)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"{path}: damaged feature shard ({reason}); rerun `mome features` with the same config: it sets the "
            "shard aside and computes its entries again"
        )
        self.path, self.reason = path, reason


def _write_shared(path: Path, write) -> None:
    """Written whole, flushed to disk and renamed into place, readable by every user of a shared cache."""

    def write_readable(tmp: Path) -> None:
        write(tmp)
        os.chmod(tmp, 0o644)

    atomic_write(path, write_readable, fsync=True)


def _index_checksum(index: dict[str, Any]) -> str:
    """The sha256 of an index's content (all but the checksum itself), in a canonical JSON form."""
    body = {k: v for k, v in index.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _read_index(index: Path) -> dict[str, Any]:
    """A shard's index, its structure and checksum checked; `DamagedShard` otherwise."""
    try:
        data = json.loads(index.read_text())
        rows, dim = int(data["rows"]), int(data["dim"])
        for offset, frames, _ in data["entries"].values():
            if not (0 <= offset and 0 < frames and offset + frames <= rows):
                raise ValueError(f"entry at {offset}+{frames} outside {rows} rows")
        dict(data.get("failures", {}))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise DamagedShard(index, f"unreadable index: {type(err).__name__}") from None
    if "checksum" in data and data["checksum"] != _index_checksum(data):
        raise DamagedShard(index, "the index differs from its checksum")
    data["rows"], data["dim"] = rows, dim
    return data


def _npy_problem(npy: Path, rows: int, dim: int) -> str | None:
    """Why the .npy cannot hold the [rows, dim] float16 its index describes (header and file size), or None."""
    try:
        with open(npy, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(f)
            header = f.tell()
    except FileNotFoundError:
        return "its .npy is missing"
    except (OSError, ValueError) as err:
        return f"unreadable .npy header: {type(err).__name__}"
    count = int(np.prod(shape))
    if (rows and tuple(shape) != (rows, dim)) or (not rows and count) or (count and dtype != np.float16):
        return f"the .npy holds {dtype} {tuple(shape)}, the index {rows} x {dim} float16"
    size = npy.stat().st_size
    if size != header + count * dtype.itemsize:
        return f"the .npy is {size} bytes, {header + count * dtype.itemsize} expected (truncated?)"
    return None


def _all_finite(npy: Path, chunk: int = 1 << 16) -> bool:
    """Whether a shard without a checksum holds finite values only (read in chunks of rows)."""
    array = np.load(npy, mmap_mode="r")
    return all(bool(np.isfinite(array[i : i + chunk]).all()) for i in range(0, len(array), chunk))


def verify_shard(index: Path, hash_data: bool = True) -> dict[str, Any]:
    """A shard's index once the shard is known intact: the index's checksum, the .npy's header and size and,
    with `hash_data`, the .npy's sha256 (once per process and file version). Raises `DamagedShard`."""
    data = _read_index(index)
    npy = index.with_suffix(".npy")
    problem = _npy_problem(npy, data["rows"], data["dim"])
    if problem:
        raise DamagedShard(npy, problem)
    stat = npy.stat()
    key = (str(npy), stat.st_size, stat.st_mtime_ns)
    if hash_data and key not in _VERIFIED:
        if "sha256" in data:
            if file_sha256(npy) != data["sha256"]:
                raise DamagedShard(npy, f"sha256 differs from {index.name}")
        elif data["rows"] and not _all_finite(npy):  # written before checksums: at least no NaN or inf
            raise DamagedShard(npy, "non-finite values")
        _VERIFIED.add(key)
    return data


def set_aside(index: Path, err: DamagedShard) -> None:
    """Rename a damaged shard's files to `*.damaged` (kept for inspection, no longer read) and say so once."""
    for path in (index, index.with_suffix(".npy")):
        try:
            os.replace(path, path.with_name(path.name + DAMAGED))
        except FileNotFoundError:
            pass  # missing already
    print(f"features: set aside {index.with_suffix('')} ({err.reason}); its entries are computed again", flush=True)


class FeatureStore:
    """Read side: every complete shard's entries, verified on open (`Mode`); the features are memory-mapped
    lazily (and again in each DataLoader worker)."""

    def __init__(self, directory: str | Path, mode: Mode = "read") -> None:
        self.directory = Path(directory)
        self.mode = mode
        self.entries: dict[str, tuple[str, int, int, dict[str, Any]]] = {}  # key -> (shard, offset, frames, extra)
        self.failures: dict[str, str] = {}  # key -> why the media could not be encoded
        self._indexes: set[str] = set()  # shard indexes read (a shard never changes once written)
        self._arrays: dict[str, np.ndarray] = {}
        self.refresh()

    def refresh(self) -> None:
        """Read and verify the indexes of the shards that appeared since (other writers may have added some)."""
        if not self.directory.is_dir():
            return
        for index in sorted(self.directory.glob("shard-*.json")):
            if index.name in self._indexes:
                continue
            try:
                data = verify_shard(index, hash_data=self.mode != "index")
            except DamagedShard as err:
                if self.mode != "repair":
                    raise
                set_aside(index, err)
                continue
            self._indexes.add(index.name)
            shard = index.with_suffix(".npy").name
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
        shards = [p for p in self.directory.glob("shard-*") if p.suffix in (".npy", ".json")]  # not *.damaged
        return sum(p.stat().st_size for p in shards)

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
        """`features` [frames, D] (any float dtype; stored as float16). Values that are not finite in float16
        are never stored: the entry is recorded as failed, with its reason."""
        with np.errstate(over="ignore"):  # an overflow becomes inf, refused below
            array = np.ascontiguousarray(features, dtype=np.float16)
        self.keys.add(key)
        if not np.isfinite(array).all():
            self.fail(key, "the encoder's features are not finite (NaN, or beyond float16's range)")
            return
        self.pending.append((key, array, extra))
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
        digest: dict[str, str] = {}

        def save(tmp: Path) -> None:
            np.save(tmp, data)
            digest["sha256"] = file_sha256(tmp)  # of the bytes on disk, read back from the page cache

        npy = directory / f"{name}.npy"
        _write_shared(npy, save)
        index = {"dim": dim, "rows": offset, "entries": entries, "failures": self.failures, **digest}
        index["checksum"] = _index_checksum(index)
        _write_shared(directory / f"{name}.json", lambda tmp: tmp.write_text(json.dumps(index) + "\n"))
        stat = npy.stat()
        _VERIFIED.add((str(npy), stat.st_size, stat.st_mtime_ns))  # written and hashed here: no second read
        self.store._indexes.add(f"{name}.json")
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
    stores = [FeatureStore(d, "index") for d in sorted(directory.iterdir()) if d.is_dir()] if directory.is_dir() else []
    parts = ", ".join(f"{s.directory.name.split('-')[0]} {len(s)} entries" for s in stores) or "empty"
    size = sum(s.size_bytes() for s in stores)
    return f"feature cache {directory}: {parts}, {size / 2**20:.1f} MiB"


def repair_cache(directory: Path) -> None:
    """Verify every store under a cache directory, setting damaged shards aside (`mome features`, before its
    workers open the stores with `mode="index"`)."""
    if directory.is_dir():
        for store in sorted(d for d in directory.iterdir() if d.is_dir()):
            FeatureStore(store, "repair")
