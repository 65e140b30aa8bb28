"""Frame-budget batch sampler: batches of similar length whose padded size fits a budget of video frames.

Per epoch (seeded by `seed` and the epoch set with `set_epoch`):
1. utterances go to `num_buckets` length buckets (equal-width, over the frame counts, as auto_avsr does);
2. inside each bucket they are shuffled and packed greedily while `batch_size * longest <= max_frames`
   (the padded cost, which is what memory sees);
3. the batch order is shuffled, and the batches are dealt to ranks round-robin.

Unlike the reference, batch composition changes every epoch. Every utterance is in exactly one batch of
exactly one rank per epoch. When the number of batches does not divide by `world_size`, the largest
batches are split in two (which keeps the budget) so that every rank gets the same number of steps, as
DDP requires. An utterance longer than the budget gets a batch of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class FrameBudgetBatchSampler(Sampler[list[int]]):
    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        shuffle: bool = True,
        seed: int = 0,
        num_buckets: int = 10,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.max_frames, self.shuffle, self.seed = max_frames, shuffle, seed
        self.num_buckets, self.rank, self.world_size = num_buckets, rank, world_size
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def all_batches(self) -> list[list[int]]:
        """Every rank's batches of the current epoch, before sharding (rank r gets items r, r+W, ...)."""
        if self._cache and self._cache[0] == self.epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.lengths)
        if n == 0:
            return []
        edges = np.linspace(self.lengths.min(), self.lengths.max(), self.num_buckets + 1)[1:-1]
        bucket_of = np.searchsorted(edges, self.lengths, side="right")
        batches: list[list[int]] = []
        for b in range(self.num_buckets):
            idx = np.flatnonzero(bucket_of == b)
            if self.shuffle:
                idx = rng.permutation(idx)
            else:
                idx = idx[np.argsort(-self.lengths[idx], kind="stable")]
            current: list[int] = []
            longest = 0
            for i in idx.tolist():
                new_longest = max(longest, int(self.lengths[i]))
                if current and new_longest * (len(current) + 1) > self.max_frames:
                    batches.append(current)
                    current, new_longest = [], int(self.lengths[i])
                current.append(i)
                longest = new_longest
            if current:
                batches.append(current)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        batches = self._even_out(batches)
        self._cache = (self.epoch, batches)
        return batches

    def _even_out(self, batches: list[list[int]]) -> list[list[int]]:
        """Split the largest batches until the count divides by `world_size` (each split keeps the budget)."""
        while len(batches) % self.world_size:
            sizes = [len(b) for b in batches]
            j = int(np.argmax(sizes))
            if sizes[j] < 2:  # nothing left to split: fewer utterances than ranks
                break
            half = sizes[j] // 2
            batches[j : j + 1] = [batches[j][:half], batches[j][half:]]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.all_batches()[self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self.all_batches()[self.rank :: self.world_size])


class SkipFirst(Sampler[list[int]]):
    """The epoch's batches minus those already consumed before a resume."""

    def __init__(self, sampler: FrameBudgetBatchSampler, skip: int) -> None:
        self.sampler, self.skip = sampler, skip

    def __iter__(self) -> Iterator[list[int]]:
        for i, batch in enumerate(self.sampler):
            if i >= self.skip:
                yield batch

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)
