"""Write-then-rename: a failed write leaves the old content and no temporary file; a good one replaces it."""

import os

import pytest

from mome.io import atomic_directory, atomic_write, atomic_write_bytes, atomic_write_text


class Boom(Exception):
    pass


def test_replaces_the_content_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "sub" / "f.json"
    atomic_write_text(path, "old\n")
    atomic_write_bytes(path, b"new\n", fsync=True)
    assert path.read_bytes() == b"new\n"
    assert os.listdir(path.parent) == ["f.json"]


def test_a_write_that_raises_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("old\n")

    def half_then_fail(tmp):
        tmp.write_text("half a fi")
        raise Boom

    with pytest.raises(Boom):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["labels.csv"]


def test_the_temporary_keeps_the_suffix_and_sits_beside_the_target(tmp_path):
    seen = []
    atomic_write(tmp_path / "clip.wav", lambda tmp: (seen.append(tmp), tmp.write_bytes(b"x")))
    (tmp,) = seen
    assert tmp.parent == tmp_path and tmp.suffix == ".wav" and tmp.name.startswith(".clip.wav.tmp-")
    assert not tmp.exists() and (tmp_path / "clip.wav").read_bytes() == b"x"


def test_directory_exists_only_when_complete(tmp_path):
    target = tmp_path / "models" / "m"

    def fail(tmp):
        (tmp / "weights").write_bytes(b"partial")
        raise Boom

    with pytest.raises(Boom):
        atomic_directory(target, fail)
    assert not target.exists() and os.listdir(target.parent) == []

    atomic_directory(target, lambda tmp: (tmp / "weights").write_bytes(b"all"))
    assert (target / "weights").read_bytes() == b"all" and os.listdir(target.parent) == ["m"]
    assert target.stat().st_mode & 0o777 == 0o755


def test_directory_does_not_replace_a_finished_one(tmp_path):
    target = tmp_path / "m"
    atomic_directory(target, lambda tmp: (tmp / "a").write_text("first"))
    with pytest.raises(OSError):
        atomic_directory(target, lambda tmp: (tmp / "a").write_text("second"))
    assert (target / "a").read_text() == "first" and os.listdir(tmp_path) == ["m"]
