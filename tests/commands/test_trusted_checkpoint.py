"""`--trusted-checkpoint` (train, eval, transcribe): off by default, the refusal names it, and given, it reaches
the AV-HuBERT loader, which then executes the pickle (here one naming `pathlib.PurePosixPath`)."""

import pathlib

import pytest
import torch

from mome.cli import main
from mome.config import load_config
from mome.data.labels import read_labels
from mome.models.avsr import build_model
from mome.runs.checkpoint import save_checkpoint

FAST = ["decode.num_beams=1", "decode.max_new_tokens=3", "data.num_workers=0"]


@pytest.fixture(scope="module")
def setup(corpus, tmp_path_factory):
    """(corpus, run directory with an untrained tiny checkpoint, a pickle the safe loader refuses)."""
    cfg = load_config("tiny", [f"data.root={corpus}"])
    run_dir = tmp_path_factory.mktemp("run")
    save_checkpoint(run_dir / "checkpoints", 0, build_model(cfg.model).trainable_state_dict(), cfg, {})
    odd = run_dir / "odd.pt"
    torch.save({"where": pathlib.PurePosixPath("/data")}, odd)
    return corpus, run_dir, odd


def _commands(corpus, run_dir, odd, tmp_path) -> dict[str, list[str]]:
    stem = corpus / read_labels(corpus / "labels" / "test.csv")[0][0].rel_path
    video = f"model.encoders.video.path={odd}"
    return {
        "train": ["train", "tiny", f"data.root={corpus}", f"train.output_dir={tmp_path / 'r'}", video],
        "eval": ["eval", str(run_dir), "--labels", "labels/test.csv", "--quiet", video, *FAST],
        "transcribe": [
            "transcribe",
            str(run_dir),
            "--video",
            str(stem.with_suffix(".mp4")),
            "--audio",
            str(stem.with_suffix(".wav")),
            video,
            *FAST,
        ],
    }


@pytest.mark.parametrize("command", ["train", "eval", "transcribe"])
def test_refusal_names_the_option_and_the_option_unpickles(setup, tmp_path, capsys, command):
    args = _commands(*setup, tmp_path)[command]
    assert main(args) == 2
    refused = capsys.readouterr().err
    assert "refusing to unpickle pathlib.PurePosixPath" in refused and "--trusted-checkpoint" in refused
    assert main([*args, "--trusted-checkpoint"]) == 2  # unpickled; then no encoder weights in it
    err = capsys.readouterr().err
    assert "odd.pt" in err and "refusing" not in err and len(err.strip().splitlines()) == 1, err


def test_help_says_it_executes_code(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "RUNS CODE FROM THE FILE" in " ".join(capsys.readouterr().out.split())
