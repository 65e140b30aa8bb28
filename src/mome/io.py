"""Write-then-rename, the one way mome replaces a file or a directory that others may read or that a kill
must not leave half-written: the new content goes to a hidden temporary sibling (same folder, so the rename
is atomic on one file system), which is renamed onto the target only when complete, and removed on failure.
`read_json` is the reader's side: a file that is absent reads as {}. `file_sha256` is the checksum that vouches
for a written file (checkpoints, exports, feature shards)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

JsonObject = dict[str, Any]
"""A JSON object as `json` reads and writes it: its values are whatever the file holds."""


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def atomic_write(path: str | Path, write: Callable[[Path], None], fsync: bool = False) -> Path:
    """Call `write(tmp)`, then rename `tmp` onto `path`; if `write` raises, `path` is left as it was.

    `tmp` keeps `path`'s suffix, for writers that choose the format by extension (soundfile). `fsync`: flush
    the data to disk before the rename (checkpoints), so that even a power cut leaves old or new, not empty.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = False) -> Path:
    """`data` as the whole content of `path`, written atomically (see `atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), fsync)


def atomic_write_text(path: str | Path, text: str, fsync: bool = False) -> Path:
    """`text` (UTF-8) as the whole content of `path`, written atomically (see `atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), fsync)


def atomic_directory(target: str | Path, build: Callable[[Path], None], mode: int = 0o755) -> Path:
    """Call `build(tmp)` on an empty temporary directory, then rename it to `target`: `target` exists only
    when complete. The rename fails (and `tmp` is removed) if a non-empty `target` appeared meanwhile.

    `mode`: the directory's permissions (`mkdtemp` makes it private; a shared cache should not be).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(mode)
    try:
        build(tmp)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex), read in 1 MiB blocks: the one checksum of checkpoints, exports and
    feature shards."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | Path) -> JsonObject:
    """The JSON object in `path`; {} when it is absent or cut short by a kill (the counterpart of the writes
    above for a reader that must not fail on what a killed writer left)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
