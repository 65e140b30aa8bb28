"""A tiny synthetic corpus shared by the data tests (built once per session, about 2 s)."""

import pytest

from mome.data.synthetic import synthesize_corpus

TINY = dict(split_fractions={"train": 0.5, "val": 0.25, "test": 0.25},
            speakers_per_split={"train": 3, "val": 2, "test": 2, "noise": 2},
            babble_seconds=6.0, babble_talkers=3, workers=1, progress=False)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    report = synthesize_corpus(root, 8, seed=5, **TINY)
    assert report["written"] == 8, report
    return root
