"""The `<file>.sha256` beside each file that defines a model (checkpoints, an export's files), in `sha256sum`
format (`sha256sum -c` reads it): a damaged file is one line naming it, never a traceback or a wrong model."""

from __future__ import annotations

from pathlib import Path

from mome.errors import UserError
from mome.io import atomic_write_bytes, file_sha256

CHECKSUM_SUFFIX = ".sha256"


class CorruptCheckpoint(UserError):
    """A checkpoint file that fails its checksum or cannot be read."""


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def write_checksum(path: Path) -> str:
    """Hash the complete file and write `<file>.sha256` beside it (atomically)."""
    digest = file_sha256(path)
    atomic_write_bytes(checksum_path(path), f"{digest}  {path.name}\n".encode(), fsync=True)
    return digest


def verify_checksum(path: Path, what: str = "checkpoint") -> None:
    """Raise `CorruptCheckpoint` if `path` does not match its `.sha256` (no `.sha256`: nothing to verify).
    `what` names the kind of file in the message (a checkpoint, an export's file)."""
    side = checksum_path(path)
    if not side.is_file():
        return
    expected = side.read_text(encoding="ascii", errors="replace").split(" ", 1)[0].strip()
    if file_sha256(path) != expected:
        raise CorruptCheckpoint(f"{path}: corrupt {what} (sha256 differs from {side.name})")


def write_checked(path: Path, data: bytes) -> None:
    """A file and its `.sha256`; the old checksum goes first, so it never vouches for new bytes."""
    checksum_path(path).unlink(missing_ok=True)
    atomic_write_bytes(path, data)
    write_checksum(path)
