"""A tiny synthetic corpus for the training tests (built once per session, a few seconds)."""

import pytest

from mome.synthetic.corpus import synthesize_corpus


@pytest.fixture(scope="session")
def train_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_corpus")
    report = synthesize_corpus(
        root,
        16,
        seed=11,
        split_fractions={"train": 0.75, "val": 0.125, "test": 0.125},
        speakers_per_split={"train": 3, "val": 1, "test": 1, "noise": 2},
        babble_seconds=6.0,
        babble_talkers=2,
        workers=1,
        progress=False,
    )
    assert report["written"] == 16, report
    return root
