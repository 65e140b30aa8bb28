"""Command-line inputs refused in one line, or accepted wherever they stand (issue 27)."""

from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path

import pytest

from mome.cli import COMMANDS, main, parse


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["train", "tiny", "--restart-optimizer", "data.root=c", "train.max_steps=2"], "restart_optimizer"),
        (["demo", "data.root=c", "--steps", "3", "train.max_steps=2"], "steps"),
        (["params", "tiny", "data.root=c", "--json", "train.max_steps=2"], "json"),
        (["cost", "tiny", "data.root=c", "--json", "train.max_steps=2"], "json"),
        (["reproduce", "data.root=c", "--quick", "train.max_steps=2"], "quick"),
    ],
)
def test_an_option_between_overrides_is_accepted(argv: list[str], flag: str) -> None:
    args, _ = parse(argv)
    assert args.overrides == ["data.root=c", "train.max_steps=2"] and getattr(args, flag)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_parses_options_anywhere(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:  # --help; a parser that cannot intermix raises TypeError instead
        main([command, "--help"])
    assert exit_.value.code == 0 and f"mome {command}" in capsys.readouterr().out


FAST = [
    "data.num_workers=0",
    "data.max_frames=120",
    "train.num_threads=1",
    "train.val_max_batches=1",
    "decode.num_beams=1",
    "decode.max_new_tokens=3",
]
DISK_FULL_LINE = re.compile(
    r"mome: error: the disk is full \(No space left on device( while writing \S+)?\); everything saved before is "
    r"intact: free some space and rerun the same command, it continues from there"
)


def _assert_disk_full_line(err: str) -> None:
    assert "Traceback" not in err and DISK_FULL_LINE.fullmatch(err.splitlines()[-1]), err  # after a progress bar


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _step(run: str) -> int:
    from mome.runs.load import load_checkpoint

    return load_checkpoint(run)["train_state"]["progress"]["step"]


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_a_rerun_continues(corpus: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """Checkpoint save, `mome export` and `mome features` each stop on ENOSPC with one line, exit 1."""
    from mome.training import engine

    shutil.copytree(corpus, tmp_path / "corpus")
    monkeypatch.chdir(tmp_path)
    train = [
        "train",
        "tiny",
        "data.root=corpus",
        "train.output_dir=run",
        "train.max_steps=4",
        "train.save_every_steps=2",
        *FAST,
    ]
    real = engine.save_checkpoint
    monkeypatch.setattr(
        engine, "save_checkpoint", lambda d, step, *a, **k: (_disk_full if step == 4 else real)(d, step, *a, **k)
    )  # noqa: E501
    assert main(train) == 1
    _assert_disk_full_line(capsys.readouterr().err)
    assert _step("run") == 2  # the save before is intact
    monkeypatch.setattr(engine, "save_checkpoint", real)
    assert main(train) == 0 and _step("run") == 4  # the rerun continued

    monkeypatch.setattr(
        "mome.runs.checksums.atomic_write_bytes", _disk_full
    )  # every export file goes through write_checked
    assert main(["export", "run", "exported"]) == 1
    _assert_disk_full_line(capsys.readouterr().err)

    monkeypatch.setattr("mome.features.store.atomic_write", _disk_full)
    assert (
        main(
            [
                "features",
                "tiny",
                "data.root=corpus",
                "data.feature_cache=f",
                "--splits",
                "test",
                "--snr",
                "clean",
                "--workers",
                "1",
                "--quiet",
            ]
        )
        == 1
    )
    _assert_disk_full_line(capsys.readouterr().err)
