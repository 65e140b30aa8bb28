"""`mome export`: a shareable folder that loads like the run it came from, and the base-model check that
refuses adapters loaded onto other frozen weights, in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mome
from mome.cli import main
from mome.config import config_from_dict, load_config
from mome.errors import UserError
from mome.runs.base_models import check, fingerprints
from mome.runs.checkpoint import save_checkpoint
from mome.runs.load import load_checkpoint, model_from_payload
from tiny import untrained_run

FAST = ["decode.num_beams=1", "decode.max_new_tokens=3", "data.num_workers=0"]


def test_an_export_loads_like_its_run(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    run = untrained_run(corpus, tmp_path / "run")
    payload = load_checkpoint(run)  # weights unlike a fresh build's, so that loading them shows
    trained = {k: v + 0.01 * torch.randn_like(v) for k, v in payload["model"].items()}
    save_checkpoint(run / "checkpoints", 1, trained, config_from_dict(payload["config"]), {})
    (run / "calibration.json").write_text('{"threshold": -1.0, "ladder": ["a16_v5", "a4_v2"]}')
    monkeypatch.chdir(tmp_path)
    assert main(["export", "run", "shared"]) == 0
    weights = load_file("shared/adapter.safetensors")
    assert weights.keys() == trained.keys() and all(torch.equal(weights[k], trained[k]) for k in trained)
    loaded = mome.load("shared", FAST).model.trainable_state_dict()
    assert all(torch.equal(loaded[k], trained[k]) for k in trained)
    assert Path("shared/calibration.json").is_file()  # budget="auto" works on the export too
    assert Path("shared/calibration.json.sha256").is_file()  # and is checked like the weights
    card = Path("shared/README.md").read_text()
    assert "a4_v2, a4_v5, a16_v2, a16_v5" in card and "mome.load" in card
    clip = sorted(corpus.glob("synth/test/**/*.mp4"))[0]
    texts = [
        mome.load(p, FAST).transcribe(video=clip, audio=clip.with_suffix(".wav"), rates=(16, 5)).text
        for p in (run, Path("shared"))
    ]
    assert texts[0] == texts[1]


def _base(tmp_path: Path) -> Path:
    llm = tmp_path / "llm"
    llm.mkdir()
    (llm / "config.json").write_text('{"model_type": "llama"}')
    (llm / "model.safetensors").write_bytes(b"weights")
    (llm / "notes.md").write_text("not part of the model")
    return llm


def test_fingerprints_name_the_file_that_changed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MOME_CACHE", str(tmp_path / "cache"))
    llm = _base(tmp_path)
    cfg = load_config("tiny", [f"model.llm.path={llm}"]).model
    saved = fingerprints(cfg)
    assert set(saved) == {"llm"} and set(saved["llm"]["files"]) == {"config.json", "model.safetensors"}
    check(saved, cfg, "run")  # the same files: fine
    (llm / "notes.md").write_text("edited")  # not a model file
    check(saved, cfg, "run")
    (llm / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(
        UserError, match=r"^run: llm .*: model\.safetensors differs \(sha256 [0-9a-f]{12}, trained with"
    ):
        check(saved, cfg, "run")
    (llm / "model.safetensors").unlink()
    with pytest.raises(UserError, match="model.safetensors is missing"):
        check(saved, cfg, "run")


def test_loading_a_checkpoint_onto_other_base_weights_stops_before_the_build(corpus, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MOME_CACHE", str(tmp_path / "cache"))
    llm = _base(tmp_path)
    payload = load_checkpoint(untrained_run(corpus, tmp_path / "run"))
    payload["base_models"] = {"llm": {"path": str(llm), "files": {"config.json": "0" * 64}}}
    with pytest.raises(UserError, match="config.json differs"):
        model_from_payload(payload, [f"model.llm.path={llm}"])  # the check runs first: no LLM is loaded
    assert json.loads((tmp_path / "cache" / "sha256.json").read_text())  # hashes cached per file


# ------------------------------------------------------------------------------------------ integrity
@pytest.fixture
def shared(corpus: Path, tmp_path: Path, monkeypatch) -> Path:
    """An export of an untrained tiny run, written by `mome export run shared` in `tmp_path`."""
    untrained_run(corpus, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    assert main(["export", "run", "shared"]) == 0
    return Path("shared")


def _transcribe(export: Path, corpus: Path, *flags: str) -> int:
    clip = sorted(corpus.glob("synth/test/**/*.mp4"))[0]
    return main(
        [
            "transcribe",
            str(export),
            "--video",
            str(clip),
            "--audio",
            str(clip.with_suffix(".wav")),
            "--rates",
            "16,5",
            *FAST,
            *flags,
        ]
    )


@pytest.mark.parametrize("damage", ["changed byte", "truncated"])
@pytest.mark.parametrize("name", ["adapter.safetensors", "config.yaml", "base_models.json"])
def test_a_damaged_export_file_is_one_line_naming_it(
    shared: Path, corpus: Path, capsys, name: str, damage: str
) -> None:
    assert {p.name for p in shared.glob("*.sha256")} == {
        "adapter.safetensors.sha256",
        "config.yaml.sha256",
        "base_models.json.sha256",
    }
    data = bytearray((shared / name).read_bytes())
    if damage == "changed byte":
        data[len(data) // 2] ^= 0x01  # inside the weights' data, a value of the config, a hash
    else:
        data = data[: len(data) - 7]
    (shared / name).write_bytes(bytes(data))
    assert _transcribe(shared, corpus) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mome: error: {shared / name}: corrupt export file (sha256 differs from {name}.sha256)"


def test_an_export_without_checksums_that_is_truncated_is_one_line(shared: Path) -> None:
    """An export written before checksums loads unverified, as an old checkpoint does, but a broken file is
    still one line, not a safetensors traceback."""
    for side in shared.glob("*.sha256"):
        side.unlink()
    assert load_checkpoint(shared)["model"]  # unverified, intact
    weights = shared / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(UserError, match=r"^shared: not a readable mome export \(SafetensorError"):
        load_checkpoint(shared)


def test_an_export_without_base_models_json_loads_only_when_the_check_is_off(
    shared: Path, corpus: Path, capsys
) -> None:
    (shared / "base_models.json").unlink()
    assert _transcribe(shared, corpus) == 2
    err = capsys.readouterr().err
    assert "base_models.json is missing" in err and "--no-base-model-check" in err and err.count("\n") == 1
    with pytest.raises(UserError, match="base_models.json is missing"):
        mome.load(shared, FAST)
    assert _transcribe(shared, corpus, "--no-base-model-check") == 0
    assert "no base_models.json; loading without the base-model check" in capsys.readouterr().err
    mome.load(shared, FAST, check_base_models=False)


def test_the_base_model_check_off_turns_a_mismatch_into_a_warning(corpus, tmp_path, monkeypatch, capsys) -> None:
    from mome.runs.base_models import unchecked_base_models

    monkeypatch.setenv("MOME_CACHE", str(tmp_path / "cache"))
    llm = _base(tmp_path)
    cfg = load_config("tiny", [f"model.llm.path={llm}"]).model
    saved = {"llm": {"path": str(llm), "files": {"config.json": "0" * 64}}}
    with pytest.raises(UserError, match="config.json differs.*--no-base-model-check"):
        check(saved, cfg, "run")
    with unchecked_base_models():
        check(saved, cfg, "run")
    assert "config.json differs" in capsys.readouterr().err


@pytest.mark.parametrize("out", ["run", "run/checkpoints", "other"])
def test_an_export_into_a_run_directory_is_refused(corpus: Path, tmp_path: Path, monkeypatch, capsys, out: str) -> None:
    """`mome export RUN RUN` would make the run's commands read the stale export instead of its newest
    checkpoint; another run's directory likewise."""
    untrained_run(corpus, tmp_path / "run")
    untrained_run(corpus, tmp_path / "other")
    monkeypatch.chdir(tmp_path)
    assert main(["export", "run", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mome: error: {out}: a run directory;") and err.count("\n") == 1
    assert not list(tmp_path.rglob("adapter.safetensors"))
