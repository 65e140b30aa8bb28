"""`mome pretrain-video`: the tiny arch learns visemes on the tiny corpus, and the file loads back frozen."""

from collections import Counter

import torch

from mome.cli import main
from mome.config import VideoEncoderConfig
from mome.data.labels import read_metadata
from mome.models.avhubert_checkpoint import build_video_encoder
from mome.training.pretrain_video import char_targets, greedy_ctc, save_lip_encoder, train_lip_encoder

FAST = dict(arch="tiny", max_frames=150, lr=5e-3, warmup=0.0, num_workers=0, threads=1, progress=False)


def test_loss_goes_down_and_checkpoint_loads_back_frozen(train_corpus, tmp_path):
    encoder, metrics = train_lip_encoder(train_corpus, steps=12, seed=0, objective="both", **FAST)
    history = metrics["loss_history"]
    assert len(history) == 12 and sum(history[-3:]) < sum(history[:3])
    assert {"val_viseme_acc", "val_cer", "train_ce", "train_ctc"} <= set(metrics)  # both heads trained and scored
    assert encoder.arch.frozen and not any(p.requires_grad for p in encoder.parameters())

    path = tmp_path / "lip.pt"
    save_lip_encoder(encoder, path)
    assert [p.name for p in tmp_path.iterdir()] == ["lip.pt"]  # no temporary file left behind
    loaded = build_video_encoder(VideoEncoderConfig(path=str(path)))
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    loaded.train()  # a frozen encoder stays in eval mode
    assert not loaded.training
    video, lengths = torch.randn(2, 12, 1, 88, 88), torch.tensor([12, 9])
    with torch.no_grad():
        torch.testing.assert_close(loaded(video, lengths)[0], encoder(video, lengths)[0], rtol=0, atol=0)


def test_viseme_accuracy_on_unseen_speakers_beats_the_majority_class(train_corpus):
    """Fifty steps on 12 utterances: the val speaker's frames are classified well above the rate of always
    answering the most frequent viseme (what the model reaches when it learns only the label prior)."""
    counts = Counter(v for meta in read_metadata(train_corpus, "val").values() for v in meta["frame_visemes"])
    majority = max(counts.values()) / sum(counts.values())
    options = dict(FAST, lr=3e-3, warmup=0.1)
    _, metrics = train_lip_encoder(train_corpus, steps=50, seed=0, objective="visemes", time_mask=False, **options)
    assert metrics["val_viseme_acc"] > majority + 0.1, (metrics["val_viseme_acc"], majority)


def test_time_mask_option_reaches_the_training_clips(train_corpus):
    """Same seed: masks off twice gives the same losses; masks on changes them (the clips differ)."""

    def losses(time_mask: bool) -> list[float]:
        return train_lip_encoder(
            train_corpus, steps=3, seed=0, objective="visemes", time_mask=time_mask, max_val=1, **FAST
        )[1]["loss_history"]

    off = losses(False)
    assert losses(False) == off and losses(True) != off


def test_command_writes_the_encoder(train_corpus, tmp_path, capsys):
    out = tmp_path / "enc" / "lip_encoder.pt"
    code = main(
        [
            "pretrain-video",
            str(train_corpus),
            "--out",
            str(out),
            "--arch",
            "tiny",
            "--steps",
            "2",
            "--objective",
            "visemes",
            "--workers",
            "0",
            "--no-time-mask",
            "--no-progress",
        ]
    )
    assert code == 0 and out.is_file()
    assert "val viseme accuracy" in capsys.readouterr().out
    assert main(["pretrain-video", str(train_corpus), "--out", str(out), "--objective", "nope"]) == 2


def test_ctc_helpers():
    targets, lengths = char_targets(["Bin  blue", "a2"])
    assert lengths.tolist() == [8, 1] and targets.min() >= 1
    log_probs = torch.full((5, 1, 29), -10.0)
    for t, i in enumerate([3, 3, 0, 3, 1]):  # "bb_b " -> "bb "
        log_probs[t, 0, i] = 0.0
    assert greedy_ctc(log_probs, torch.tensor([5])) == ["bb "]
