"""A PyTorch ``Dataset`` of (video clip, caption) items built from :class:`VideoTextRecord`s.

``dataset[i]`` returns a :class:`VideoTextSample` (clip tensor ``(3, T, H, W)``
float32 plus caption), or, when the video cannot be read, a :class:`SkippedSample`
saying which file failed and why.  The collate function in :mod:`data.loader`
drops skipped samples from the batch and reports them, so one broken file never
stops a training run.

Caption modes:
    "first": one item per record, its first caption (evaluation).
    "random": one item per record, a random caption each time (training with
        several captions per video, e.g. MSR-VTT's ~20).
    "all": one item per (record, caption) pair.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from data.errors import VideoReadError
from data.records import VideoTextRecord
from data.sampling import SamplingConfig
from data.transforms import TransformConfig, frames_to_tensor

if TYPE_CHECKING:
    from data.decode import DecodeConfig

logger = logging.getLogger(__name__)

CaptionMode = Literal["first", "random", "all"]


@dataclass
class VideoTextSample:
    """One decoded item.

    Attributes:
        video: ``float32 (3, T, H, W)`` clip.
        caption: the caption chosen for this item.
        video_id: the record's id.
        index: the dataset index of this item.
        caption_index: which of the record's captions was chosen.
    """

    video: torch.Tensor
    caption: str
    video_id: str
    index: int
    caption_index: int


@dataclass(frozen=True)
class SkippedSample:
    """An item whose video could not be turned into a clip."""

    index: int
    video_id: str
    video_path: str
    error_type: str
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "video_id": self.video_id,
            "video_path": self.video_path,
            "error_type": self.error_type,
            "reason": self.reason,
        }


def _torch_seeded_rng() -> np.random.Generator:
    """A numpy generator seeded from torch's RNG: reproducible under ``torch.manual_seed``
    and different in every DataLoader worker and epoch."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


class VideoTextDataset(Dataset):
    """Clips and captions from records.

    Args:
        records: the videos/spans and their captions.
        sampling: frames per clip and sampling mode (default 8 frames, "middle").
        transform: resize/crop/normalise (default 224 short side + centre crop, ImageNet).
        decode: decoder backend and limits.
        caption_mode: "first", "random" or "all" (see module doc).
    """

    def __init__(
        self,
        records: Sequence[VideoTextRecord],
        sampling: SamplingConfig | None = None,
        transform: TransformConfig | None = None,
        decode: DecodeConfig | None = None,
        caption_mode: CaptionMode = "first",
    ) -> None:
        if caption_mode not in ("first", "random", "all"):
            raise ValueError(f"caption_mode must be 'first', 'random' or 'all', got {caption_mode!r}")
        self.records = list(records)
        self.sampling = sampling or SamplingConfig()
        self.transform = transform or TransformConfig()
        self.decode = decode  # None: read_clip_frames' defaults
        self.caption_mode = caption_mode
        # Item offsets per record for caption_mode "all".
        self._offsets = np.cumsum([0] + [len(r.captions) for r in self.records]).tolist()

    def __len__(self) -> int:
        return self._offsets[-1] if self.caption_mode == "all" else len(self.records)

    def locate(self, index: int) -> tuple[int, int | None]:
        """``(record index, caption index)``; the caption index is None in "random" mode."""
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        if self.caption_mode == "all":
            rec = bisect.bisect_right(self._offsets, index) - 1
            return rec, index - self._offsets[rec]
        return index, (0 if self.caption_mode == "first" else None)

    @property
    def captions(self) -> list[str]:
        """The caption of every item in order ("random" mode: each record's first caption)."""
        out = []
        for i in range(len(self)):
            rec, cap = self.locate(i)
            out.append(self.records[rec].captions[cap or 0])
        return out

    @property
    def video_ids(self) -> list[str]:
        """The video id of every item in order."""
        return [self.records[self.locate(i)[0]].video_id for i in range(len(self))]

    def __getitem__(self, index: int) -> VideoTextSample | SkippedSample:
        rec_index, cap_index = self.locate(index)
        record = self.records[rec_index]
        rng = _torch_seeded_rng()
        if cap_index is None:
            cap_index = int(rng.integers(len(record.captions)))
        # Imported here so that in-memory datasets (the synthetic one) work on
        # machines without PyAV, e.g. GPU training nodes given only the wheels they need.
        from data.clip import read_clip_frames

        try:
            clip = read_clip_frames(record.video_path, self.sampling, record.start_s, record.end_s, self.decode, rng)
            video = frames_to_tensor(clip.frames, self.transform)
        except VideoReadError as exc:
            logger.debug("skipping item %d: %s", index, exc)
            return SkippedSample(index, record.video_id, record.video_path, type(exc).__name__, exc.reason)
        except Exception as exc:  # noqa: BLE001
            # Anything else a decoder or transform raises on a strange file (FFmpeg, decord and
            # torch errors have no common base): report it, don't kill the run.  Systematic
            # failures still stop training through BadSampleReport's bad-fraction limit.
            logger.warning("skipping item %d (%s): %s: %s", index, record.video_path, type(exc).__name__, exc)
            return SkippedSample(index, record.video_id, record.video_path, type(exc).__name__, str(exc))
        return VideoTextSample(
            video=video, caption=record.captions[cap_index], video_id=record.video_id, index=index, caption_index=cap_index
        )


__all__ = ["CaptionMode", "SkippedSample", "VideoTextDataset", "VideoTextSample"]
