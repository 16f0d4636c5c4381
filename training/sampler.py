"""Resumable, rank-aware batch order and per-item seeding for exact resume.

:class:`ResumableDistributedSampler`, a ``torch.utils.data.Sampler`` that yields
``(epoch, index)`` keys, used with ``DataLoader(batch_size=B, drop_last=True)``,
and :class:`SeededItems`, a dataset wrapper that turns each key into the wrapped
dataset's item with torch's RNG seeded from ``(seed, epoch, index)``. Together:

* the order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone;
* global batch ``b`` of an epoch is ``perm[b*B*W:(b+1)*B*W]`` and rank ``r`` takes the
  ``r``-th slice of ``B`` keys, so the global batch is the same for any world size W
  with the same ``B*W``;
* an item's random choices (frame positions, caption choice) depend only on
  ``(seed, epoch, index)``, not on which worker process loaded it or on what ran
  before, so resuming at ``(epoch, batch)`` reproduces the remaining batches exactly.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Dataset, Sampler


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 steps), stable across processes and runs."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (value & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        state = (state ^ (state >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 31
    return state & 0x7FFFFFFFFFFFFFFF


class ResumableDistributedSampler(Sampler):
    """Yields this rank's ``(epoch, index)`` keys of one epoch, starting at a given batch.

    Args:
        num_items: length of the dataset.
        batch_size: items per batch on each rank (B).
        world_size, rank: the process group.
        seed: base of the per-epoch permutation.
        shuffle: False keeps index order (every epoch the same).

    Every epoch has ``batches_per_epoch = num_items // (B * W)`` batches per rank; the
    remainder of the permutation is dropped (a different remainder each epoch).
    """

    def __init__(self, num_items: int, batch_size: int, world_size: int = 1, rank: int = 0,
                 seed: int = 0, shuffle: bool = True) -> None:
        self.num_items = num_items
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.shuffle = shuffle
        self.batches_per_epoch = num_items // (batch_size * world_size)
        if self.batches_per_epoch < 1:
            raise ValueError(f"{num_items} training items are fewer than one global batch "
                             f"({batch_size} x {world_size} ranks)")
        self.epoch = 0
        self.start_batch = 0

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        """The next iteration yields epoch ``epoch`` from batch ``start_batch`` on."""
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start_batch {start_batch} outside [0, {self.batches_per_epoch}]")
        self.epoch, self.start_batch = epoch, start_batch

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The full permutation of epoch ``epoch`` (int64, ``num_items``)."""
        if not self.shuffle:
            return torch.arange(self.num_items)
        generator = torch.Generator()
        generator.manual_seed(_mix(self.seed, epoch))
        return torch.randperm(self.num_items, generator=generator)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self.epoch_order(self.epoch)
        global_batch = self.batch_size * self.world_size
        for batch in range(self.start_batch, self.batches_per_epoch):
            begin = batch * global_batch + self.rank * self.batch_size
            for index in order[begin:begin + self.batch_size].tolist():
                yield self.epoch, index

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size


class SeededItems(Dataset):
    """``dataset[(epoch, index)]`` = ``inner[index]`` computed with torch's global RNG seeded
    from ``(seed, epoch, index)``; the caller's RNG state is saved and restored around it,
    so loading in the main process does not disturb training randomness."""

    def __init__(self, inner: Dataset, seed: int) -> None:
        self.inner = inner
        self.seed = seed

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_mix(self.seed, epoch, index))
            return self.inner[index]


__all__ = ["ResumableDistributedSampler", "SeededItems"]
