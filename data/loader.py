"""Batching video-text samples: a collate that drops unreadable items, a DataLoader recipe,
and a report of what was skipped.

Recipe (keeps the GPU fed by decoding in worker processes)::

    loader = make_video_text_loader(dataset, LoaderConfig(batch_size=32, num_workers=8))
    report = BadSampleReport()
    for batch in iter_batches(loader, report):        # never yields an empty batch
        video = batch.video.to(device, non_blocking=True)   # (B, 3, T, H, W)
        ...
    logger.info(report.summary())

Each worker decodes whole clips with one decoder thread (set automatically when
the dataset's ``DecodeConfig.num_threads`` is 0), batches are prefetched
``prefetch_factor`` deep per worker and pinned when CUDA is available.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from data.dataset import SkippedSample, VideoTextSample

logger = logging.getLogger(__name__)


@dataclass
class VideoTextBatch:
    """A batch of valid samples plus the samples that were skipped.

    Attributes:
        video: ``float32 (B, 3, T, H, W)``; ``B`` may be smaller than the batch size
            when items were skipped, and is 0 (tensor of shape ``(0,)``) when all were.
        captions: ``B`` captions.
        video_ids: ``B`` video ids.
        indices: ``int64 (B,)`` dataset indices.
        skipped: the items dropped from this batch.
    """

    video: torch.Tensor
    captions: list[str]
    video_ids: list[str]
    indices: torch.Tensor
    skipped: list[SkippedSample] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.captions)

    def pin_memory(self) -> "VideoTextBatch":
        """Called by DataLoader when ``pin_memory=True``."""
        return replace(self, video=self.video.pin_memory(), indices=self.indices.pin_memory())

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "VideoTextBatch":
        return replace(
            self,
            video=self.video.to(device, non_blocking=non_blocking),
            indices=self.indices.to(device, non_blocking=non_blocking),
        )


def collate_video_text(items: Sequence[VideoTextSample | SkippedSample]) -> VideoTextBatch:
    """Stack valid samples into a :class:`VideoTextBatch`; collect skipped ones in ``batch.skipped``.

    Raises ValueError when valid clips differ in shape (use a centre crop or "square" resize).
    """
    valid = [s for s in items if isinstance(s, VideoTextSample)]
    skipped = [s for s in items if isinstance(s, SkippedSample)]
    if valid:
        shapes = {tuple(s.video.shape) for s in valid}
        if len(shapes) > 1:
            raise ValueError(f"clips in a batch have different shapes {sorted(shapes)}; enable center_crop")
        video = torch.stack([s.video for s in valid])
    else:
        video = torch.empty(0)
    return VideoTextBatch(
        video=video,
        captions=[s.caption for s in valid],
        video_ids=[s.video_id for s in valid],
        indices=torch.tensor([s.index for s in valid], dtype=torch.long),
        skipped=skipped,
    )


@dataclass(frozen=True)
class LoaderConfig:
    """DataLoader settings.

    Attributes:
        batch_size: items per batch (before skipping).
        num_workers: decoding processes (0 = decode in the main process).
        shuffle: reshuffle every epoch (training).
        drop_last: drop the last incomplete batch.
        pin_memory: pin batches for fast host-to-GPU copies; None = when CUDA is available.
        prefetch_factor: batches prefetched per worker.
        persistent_workers: keep workers alive between epochs.
        seed: seed for the shuffle order (None = from torch's global RNG).
    """

    batch_size: int = 32
    num_workers: int = min(8, os.cpu_count() or 1)
    shuffle: bool = True
    drop_last: bool = True
    pin_memory: bool | None = None
    prefetch_factor: int = 4
    persistent_workers: bool = True
    seed: int | None = None


def _init_decode_worker(worker_id: int) -> None:
    """One intra-op thread and one decoder thread per worker: workers are the parallelism."""
    torch.set_num_threads(1)
    info = get_worker_info()
    dataset = info.dataset if info is not None else None
    decode = getattr(dataset, "decode", None)
    if decode is not None and getattr(decode, "num_threads", None) == 0:
        dataset.decode = replace(decode, num_threads=1)  # the worker's own copy


def make_video_text_loader(dataset: Dataset, config: LoaderConfig | None = None) -> DataLoader:
    """A DataLoader over a :class:`data.dataset.VideoTextDataset` (or any dataset of the same samples)."""
    config = config or LoaderConfig()
    workers = max(0, config.num_workers)
    pin = torch.cuda.is_available() if config.pin_memory is None else config.pin_memory
    generator = None
    if config.seed is not None:
        generator = torch.Generator()
        generator.manual_seed(config.seed)
    kwargs: dict = {}
    if workers > 0:
        kwargs.update(
            prefetch_factor=config.prefetch_factor,
            persistent_workers=config.persistent_workers,
            worker_init_fn=_init_decode_worker,
        )
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=config.shuffle,
        drop_last=config.drop_last,
        num_workers=workers,
        pin_memory=pin,
        collate_fn=collate_video_text,
        generator=generator,
        **kwargs,
    )


class TooManyBadSamplesError(RuntimeError):
    """More than the allowed fraction of items could not be read: the data, not single files, is broken."""


class BadSampleReport:
    """Counts items seen and collects the skipped ones.

    Args:
        max_bad_fraction: :meth:`update` raises :class:`TooManyBadSamplesError` when the
            skipped fraction exceeds this after at least ``min_seen`` items (None = never).
        min_seen: items to see before the fraction is enforced.
    """

    def __init__(self, max_bad_fraction: float | None = 0.5, min_seen: int = 64) -> None:
        self.max_bad_fraction = max_bad_fraction
        self.min_seen = min_seen
        self.seen = 0
        self.skipped: list[SkippedSample] = []

    @property
    def bad_fraction(self) -> float:
        return len(self.skipped) / self.seen if self.seen else 0.0

    def update(self, batch: VideoTextBatch) -> None:
        """Account for one batch (valid and skipped items)."""
        self.seen += len(batch) + len(batch.skipped)
        self.skipped.extend(batch.skipped)
        if (
            self.max_bad_fraction is not None
            and self.seen >= self.min_seen
            and self.bad_fraction > self.max_bad_fraction
        ):
            raise TooManyBadSamplesError(
                f"{len(self.skipped)} of {self.seen} items could not be read; last: "
                f"{self.skipped[-1].video_path}: {self.skipped[-1].reason}"
            )

    def summary(self) -> str:
        """One line: how many were skipped, by error type."""
        counts: dict[str, int] = {}
        for s in self.skipped:
            counts[s.error_type] = counts.get(s.error_type, 0) + 1
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"
        return f"skipped {len(self.skipped)} of {self.seen} items ({kinds})"

    def write_jsonl(self, path: str | os.PathLike[str]) -> None:
        """Write one JSON object per skipped item (index, video_id, video_path, error_type, reason)."""
        with Path(path).open("w", encoding="utf-8") as fh:
            for s in self.skipped:
                fh.write(json.dumps(s.to_dict(), ensure_ascii=False) + "\n")


def iter_batches(loader: Iterable[VideoTextBatch], report: BadSampleReport | None = None) -> Iterator[VideoTextBatch]:
    """Yield the loader's batches that hold at least one valid item, accounting skips in ``report``."""
    report = report if report is not None else BadSampleReport()
    for batch in loader:
        report.update(batch)
        for s in batch.skipped:
            logger.warning("skipped item %d (%s): %s: %s", s.index, s.video_path, s.error_type, s.reason)
        if len(batch):
            yield batch


__all__ = [
    "BadSampleReport",
    "LoaderConfig",
    "TooManyBadSamplesError",
    "VideoTextBatch",
    "collate_video_text",
    "iter_batches",
    "make_video_text_loader",
]
