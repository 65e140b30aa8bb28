"""`projector.dropout` and `label_smoothing`: two regularisers that act in training only. Off, the model is the
paper's; on, a training forward changes and an evaluation forward (decoding, validation losses) does not."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mome.models.avsr import AVSRModel, Features
from mome.models.losses import per_combination_ce
from tiny import tiny_model_config

TEXTS = ["red g nine", "bin a two"]


def _model(dropout: float = 0.0, smoothing: float = 0.0) -> AVSRModel:
    torch.manual_seed(0)
    cfg = tiny_model_config("mome")
    cfg.projector.dropout = dropout
    cfg.label_smoothing = smoothing
    return AVSRModel.from_config(cfg, audio_dim=12, video_dim=10)


def _features() -> Features:
    torch.manual_seed(1)
    lengths_v = torch.tensor([48, 40])
    return Features(torch.randn(2, 96, 12), 2 * lengths_v, torch.randn(2, 48, 10), lengths_v)


def _loss(model: AVSRModel, seed: int = 3) -> torch.Tensor:
    features = _features()
    torch.manual_seed(seed)  # the dropout's draws
    return model(features, TEXTS).lm_loss


def test_projector_dropout_acts_in_training_only_and_keeps_the_state_keys() -> None:
    plain, dropped = _model(), _model(dropout=0.5)
    assert plain.state_dict().keys() == dropped.state_dict().keys()  # checkpoints load either way
    dropped.load_state_dict(plain.state_dict())
    plain.eval(), dropped.eval()
    torch.testing.assert_close(_loss(dropped), _loss(plain))
    plain.train(), dropped.train()
    assert not torch.allclose(_loss(dropped), _loss(plain))
    assert not torch.allclose(_loss(dropped, seed=3), _loss(dropped, seed=4))  # a fresh mask per forward


def test_label_smoothing_is_the_smoothed_cross_entropy_in_training_and_plain_ce_in_evaluation() -> None:
    plain, smoothed = _model(), _model(smoothing=0.2)
    smoothed.load_state_dict(plain.state_dict())
    plain.eval(), smoothed.eval()
    torch.testing.assert_close(_loss(smoothed), _loss(plain))
    plain.train(), smoothed.train()
    assert _loss(smoothed) > _loss(plain)  # an untrained model is far from the smoothed target too


def test_per_combination_ce_smooths_each_token_as_torch_does() -> None:
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 11, bias=False)
    hidden = torch.randn(2, 5, 8)
    labels = torch.tensor([[-100, 3, 4, -100, -100], [-100, -100, 7, 1, 2]])
    sums, counts = per_combination_ce(hidden, labels, head, torch.tensor([0, 1]), 2, label_smoothing=0.3)
    logits = head(hidden[:, :-1])  # position t predicts labels[t + 1]
    expected = [F.cross_entropy(logits[row], labels[row, 1:], label_smoothing=0.3, reduction="sum") for row in (0, 1)]
    torch.testing.assert_close(sums, torch.stack(expected))
    assert counts.tolist() == [2, 3]
