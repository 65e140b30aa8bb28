"""`mome prepare-lrs` reads only inside the release and writes only inside OUT: a list entry or a symlink that
leads out stops the run with its list file and line, before anything is written."""

import os

import pytest

from mome.cli import main
from mome.errors import UserError
from mome.lrs.prepare import scan_release


def _lrs2(tmp_path, entries: list[str]):
    """An LRS2-like release whose train list names `entries` (no media: the scan is all that runs)."""
    root = tmp_path / "release"
    (root / "main" / "6330311066473698535").mkdir(parents=True)
    (root / "train.txt").write_text("6330311066473698535/00011\n" + "".join(f"{e}\n" for e in entries))
    return root


def _run(root, out) -> int:
    return main(["prepare-lrs", str(root), str(out), "--dataset", "lrs2", "--workers", "1", "--quiet"])


@pytest.mark.parametrize("entry", ["../../../../X/clip", "/tmp/X/clip", "6330311066473698535/../../../X/clip"])
def test_list_entry_outside_the_release_is_refused_with_its_line(tmp_path, capsys, entry):
    root, out = _lrs2(tmp_path / "a" / "b", [entry]), tmp_path / "a" / "b" / "out"
    assert _run(root, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{root / 'train.txt'}:2: " in err[0] and "leaves the root" in err[0], err
    assert not out.exists()  # nothing written: no media, no marker, no report
    assert not any(p.name in ("X", "clip.json") for p in tmp_path.rglob("*"))


def test_symlink_out_of_the_release_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "00001.mp4").write_bytes(b"not yours")
    root = _lrs2(tmp_path, ["linked/00001"])
    os.symlink(elsewhere, root / "main" / "linked")
    with pytest.raises(UserError, match=r"train\.txt:2: 00001\.mp4 resolves to .*elsewhere"):
        scan_release(root, "lrs2")


def test_output_folder_symlinked_out_is_refused(tmp_path, capsys):
    root, out, elsewhere = _lrs2(tmp_path, []), tmp_path / "out", tmp_path / "elsewhere"
    (out / "lrs2").mkdir(parents=True)
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "lrs2" / "main")
    assert _run(root, out) == 2
    assert "refusing to write outside" in capsys.readouterr().err
    assert not any(elsewhere.iterdir()) and not (out / "meta").exists()


def test_non_utf8_list_is_one_line(tmp_path, capsys):
    root = _lrs2(tmp_path, [])
    (root / "val.txt").write_bytes(b"6330311066473698535/0001\xff\n")
    assert _run(root, tmp_path / "out") == 2
    assert "val.txt: not UTF-8" in capsys.readouterr().err
