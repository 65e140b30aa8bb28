"""Every kind of bad input is named (file and reason), skipped, and never stops an epoch."""

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from mome.config import DataConfig
from mome.data.bucketing import FrameBudgetBatchSampler
from mome.data.collate import collate
from mome.data.dataset import AVDataset
from mome.data.labels import LabelError, LabelRow, read_labels, write_labels
from mome.data.media import MediaError, read_audio, read_video


@pytest.fixture
def broken(corpus, tmp_path):
    """A copy of the test split where each utterance but the first is broken in a different way."""
    root = tmp_path / "c"
    shutil.copytree(corpus, root)
    rows, _ = read_labels(root / "labels" / "train.csv")
    rows += read_labels(root / "labels" / "test.csv")[0]
    stems = [root / r.rel_path for r in rows]
    stems[1].with_suffix(".wav").unlink()  # missing
    stems[2].with_suffix(".mp4").write_bytes(b"")  # empty
    data = stems[3].with_suffix(".mp4").read_bytes()
    stems[3].with_suffix(".mp4").write_bytes(data[: len(data) // 2])  # truncated
    stems[4].with_suffix(".wav").write_bytes(b"RIFF not really a wav" * 20)  # undecodable
    audio, sr = sf.read(stems[5].with_suffix(".wav"))
    sf.write(stems[5].with_suffix(".wav"), np.concatenate([audio, np.zeros(640 * 10)]), sr)  # A/V mismatch
    write_labels(root / "labels" / "broken.csv", rows)
    with open(root / "labels" / "broken.csv", "a") as f:
        f.write("synth,only,three\n")  # too few columns
        f.write("synth,synth/x,notanumber,hello\n")  # bad length
        f.write("synth,synth/x,12,\n")  # empty transcript
    expected = {
        rows[1].rel_path: "missing",
        rows[2].rel_path: "empty",
        rows[3].rel_path: "",
        rows[4].rel_path: "undecodable",
        rows[5].rel_path: "frames long",
    }
    return root, expected


def test_loader_names_file_and_reason(tmp_path):
    with pytest.raises(MediaError, match="missing file"):
        read_video(tmp_path / "nope.mp4")
    (tmp_path / "e.wav").write_bytes(b"")
    with pytest.raises(MediaError, match=r"e\.wav: empty file"):
        read_audio(tmp_path / "e.wav")
    sf.write(tmp_path / "8k.wav", np.zeros(800), 8000)
    with pytest.raises(MediaError, match="sample rate 8000"):
        read_audio(tmp_path / "8k.wav")


def test_malformed_rows_are_named_and_skipped(broken):
    root, _ = broken
    rows, problems = read_labels(root / "labels" / "broken.csv")
    assert len(problems) == 3 and all("broken.csv:" in p for p in problems)
    assert any("columns" in p for p in problems) and any("not an integer" in p for p in problems)
    assert any("empty transcript" in p for p in problems)
    with pytest.raises(LabelError, match="broken.csv"):
        read_labels(root / "labels" / "broken.csv", strict=True)


def test_commas_and_quotes_in_transcripts_round_trip(tmp_path):
    rows = [LabelRow("lrs3", "a/b", 10, 'well, he said "no", then left')]
    write_labels(tmp_path / "l.csv", rows)
    assert read_labels(tmp_path / "l.csv")[0] == rows
    (tmp_path / "llm.csv").write_text("lrs3,lrs3/x/00001.mp4,143,0,hello there\n")  # LLM-AVSR 5-column form
    assert read_labels(tmp_path / "llm.csv")[0] == [LabelRow("lrs3", "lrs3/x/00001", 143, "hello there")]


def test_epoch_survives_bad_files(broken, caplog):
    root, expected = broken
    ds = AVDataset(root / "labels/broken.csv", root, DataConfig(root=str(root)), train=True)
    sampler = FrameBudgetBatchSampler(ds.lengths, 400, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate)
    ids = [i for batch in loader if batch is not None for i in batch["ids"]]
    assert len(ids) == len(ds) - len(expected)
    assert set(ds.bad) == set(expected)
    for rel, reason in expected.items():
        assert rel in ds.bad[rel] and reason in ds.bad[rel]
        assert any(rel in rec.getMessage() for rec in caplog.records)
