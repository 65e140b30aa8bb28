"""`mome export`: a shareable folder that loads like the run it came from, and the base-model check that
refuses adapters loaded onto other frozen weights, in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mome
from mome.base_models import check, fingerprints
from mome.cli import main
from mome.config import config_from_dict, load_config
from mome.errors import UserError
from mome.training.checkpoint import load_checkpoint, model_from_payload, save_checkpoint
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
    card = Path("shared/README.md").read_text()
    assert "a4_v2, a4_v5, a16_v2, a16_v5" in card and "mome.load" in card
    clip = sorted(corpus.glob("synth/test/**/*.mp4"))[0]
    texts = [mome.load(p, FAST).transcribe(video=clip, audio=clip.with_suffix(".wav"), rates=(16, 5)).text
             for p in (run, Path("shared"))]  # fmt: skip
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
