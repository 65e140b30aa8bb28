"""Checkpoint files: checksums, fallback past a damaged newest one, rotation that keeps an intact one,
temporaries of killed writers removed, and no code run from a foreign pickle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mome.config import load_config
from mome.errors import UserError
from mome.runs.checkpoint import checkpoint_source, save_checkpoint
from mome.runs.load import latest_checkpoint, load_checkpoint, resolve_checkpoint

CFG = load_config("tiny")


def _save(directory: Path, step: int, keep: int = 3) -> Path:
    weights = {"w": torch.full((4,), float(step))}
    return save_checkpoint(directory, step, weights, CFG, {"progress": {"step": step}}, keep=keep)


def _damage(path: Path) -> None:
    """Flip 64 bytes in the middle, as a bad disk would (the zip CRC is never checked by torch.load)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


def test_a_checksum_is_written_beside_each_checkpoint(tmp_path: Path) -> None:
    path = _save(tmp_path, 1)
    line = path.with_name(path.name + ".sha256").read_text()
    assert line == f"{checkpoint_source(path)['sha256']}  {path.name}\n"  # the `sha256sum -c` format
    assert load_checkpoint(path)["model"]["w"][0] == 1


def test_a_damaged_newest_checkpoint_is_reported_and_the_previous_used(tmp_path, capsys) -> None:
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    _damage(tmp_path / "step-00000002.pt")
    assert resolve_checkpoint(tmp_path) == tmp_path / "step-00000001.pt"  # eval / transcribe
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000001.pt"
    assert load_checkpoint(tmp_path)["model"]["w"][0] == 1  # resume
    err = capsys.readouterr().err.strip().splitlines()  # reported once, however often it is looked at
    assert len(err) == 1 and "step-00000002.pt: corrupt checkpoint" in err[0] and "using step-00000001.pt" in err[0]
    with pytest.raises(UserError, match="step-00000002.pt: corrupt checkpoint"):  # named explicitly: no fallback
        load_checkpoint(tmp_path / "step-00000002.pt")
    _damage(tmp_path / "step-00000001.pt")
    with pytest.raises(UserError, match="every checkpoint is corrupt"):
        load_checkpoint(tmp_path)


def test_rotation_never_deletes_the_last_intact_checkpoint(tmp_path: Path) -> None:
    _save(tmp_path, 1)
    _save(tmp_path, 5)
    _damage(tmp_path / "step-00000005.pt")  # a damaged newer one: the run resumed from step 1
    _save(tmp_path, 3, keep=1)
    assert resolve_checkpoint(tmp_path) == tmp_path / "step-00000003.pt"
    assert sorted(p.name for p in tmp_path.glob("step-*.pt")) == ["step-00000003.pt", "step-00000005.pt"]


def test_temporaries_left_by_a_kill_are_removed_on_the_next_save(tmp_path: Path) -> None:
    _save(tmp_path, 1)
    left = [tmp_path / ".step-00000002.pt.tmp-abc123.pt", tmp_path / ".latest.tmp-xyz"]
    for p in left:
        p.write_bytes(b"half")
    _save(tmp_path, 3)
    assert not any(p.exists() for p in left)
    assert not list(tmp_path.glob(".*"))


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp/mome-test-pickle-ran")


def test_a_malicious_pickle_never_runs(tmp_path: Path) -> None:
    MARKER.unlink(missing_ok=True)
    path = tmp_path / "step-00000001.pt"
    torch.save({"format": "mome-checkpoint-1", "model": _Payload()}, path)
    with pytest.raises(UserError, match="not a readable mome checkpoint"):
        load_checkpoint(path)
    assert not MARKER.exists()
