import itertools

import numpy as np
import pytest

from mome.data.bucketing import FrameBudgetBatchSampler

LENGTHS = np.random.default_rng(0).integers(20, 160, size=257).tolist()


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_every_sample_once_budget_and_disjoint_shards(world_size):
    samplers = [FrameBudgetBatchSampler(LENGTHS, 600, seed=1, rank=r, world_size=world_size) for r in range(world_size)]
    for epoch in range(3):
        shards = []
        for s in samplers:
            s.set_epoch(epoch)
            shards.append(list(s))
        seen = [i for shard in shards for batch in shard for i in batch]
        assert sorted(seen) == list(range(len(LENGTHS)))  # exactly once, over all ranks
        for a, b in itertools.combinations(shards, 2):
            assert not ({i for bt in a for i in bt} & {i for bt in b for i in bt})
        assert len({len(sh) for sh in shards}) == 1  # same number of steps on every rank (DDP)
        for shard in shards:
            for batch in shard:
                assert len(batch) * max(LENGTHS[i] for i in batch) <= 600


def test_reshuffles_every_epoch_and_is_deterministic():
    s = FrameBudgetBatchSampler(LENGTHS, 600, seed=1)
    first = list(s)
    s.set_epoch(1)
    second = list(s)
    assert first != second
    assert {frozenset(b) for b in first} != {frozenset(b) for b in second}  # composition changes, too
    again = FrameBudgetBatchSampler(LENGTHS, 600, seed=1)
    again.set_epoch(1)
    assert list(again) == second and len(again) == len(second)


def test_oversized_utterance_gets_its_own_batch():
    s = FrameBudgetBatchSampler([10, 900, 20], 100, seed=0)
    batches = list(s)
    assert [1] in batches and sorted(i for b in batches for i in b) == [0, 1, 2]


def test_no_shuffle_is_sorted_and_fixed():
    s = FrameBudgetBatchSampler(LENGTHS, 600, shuffle=False)
    first = list(s)
    s.set_epoch(5)
    assert list(s) == first
