from __future__ import annotations

import torch
from torch import nn

from mome.models.pooling import MatryoshkaPooler, pool, pooled_lengths


def test_matches_avgpool1d_on_full_clips() -> None:
    x = torch.randn(2, 37, 8)
    out = pool(x, torch.tensor([37, 37]), 4)
    ref = nn.AvgPool1d(4)(x.transpose(1, 2)).transpose(1, 2)  # the reference's op: floor
    assert out.features.shape == ref.shape == (2, 9, 8)
    torch.testing.assert_close(out.features, ref)


def test_padding_never_reaches_the_pooled_tokens() -> None:
    x = torch.randn(3, 40, 6)
    lengths = torch.tensor([40, 23, 9])
    garbage = x.clone()
    for b, n in enumerate(lengths):
        garbage[b, n:] = 1e4  # whatever sits in the padding
    for rate in (2, 4, 5, 16):
        a, g = pool(x, lengths, rate), pool(garbage, lengths, rate)
        torch.testing.assert_close(a.features, g.features)
        assert (a.features[~a.mask] == 0).all()
        # Each clip pooled alone gives the same tokens.
        for b, n in enumerate(lengths.tolist()):
            alone = pool(x[b : b + 1, :n], torch.tensor([n]), rate)
            torch.testing.assert_close(a.features[b, : int(a.lengths[b])], alone.features[0])


def test_lengths_floor_but_never_empty() -> None:
    lengths = torch.tensor([0, 3, 16, 17, 33])
    assert pooled_lengths(lengths, 16).tolist() == [0, 1, 1, 1, 2]
    short = pool(torch.ones(1, 3, 2) * torch.tensor([1.0, 2.0]), torch.tensor([3]), 16)
    assert short.lengths.tolist() == [1]
    torch.testing.assert_close(short.features[0, 0], torch.tensor([1.0, 2.0]))  # mean of the 3 real frames


def test_stack_mode_concatenates_frames() -> None:
    x = torch.arange(2 * 6 * 2, dtype=torch.float).view(2, 6, 2)
    out = pool(x, torch.tensor([6, 4]), 3, mode="stack")
    assert out.features.shape == (2, 2, 6) and out.lengths.tolist() == [2, 1]
    torch.testing.assert_close(out.features[0, 1], x[0, 3:6].reshape(-1))


def test_pooler_returns_every_rate() -> None:
    pooler = MatryoshkaPooler([4, 16])
    out = pooler(torch.randn(2, 50, 4), torch.tensor([50, 20]))
    assert sorted(out) == [4, 16]
    assert out[4].lengths.tolist() == [12, 5] and out[16].lengths.tolist() == [3, 1]
