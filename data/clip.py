"""One call from a video file (and optional time span) to a model-ready clip tensor.

    >>> clip = load_clip("video.mp4")                       # (3, 8, 224, 224) float32
    >>> clip = load_clip("video.mp4", start_s=30, end_s=40,
    ...                  sampling=SamplingConfig(num_frames=16, mode="middle"))
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from data.decode import DecodeConfig, VideoReader, open_video
from data.probe import VideoInfo
from data.sampling import SamplingConfig, sample_frame_indices
from data.transforms import TransformConfig, frames_to_tensor


@dataclass
class ClipFrames:
    """Decoded frames of one clip.

    Attributes:
        frames: ``uint8 (T, H, W, 3)`` RGB, upright.
        indices: the frame index of each of the T frames.
        info: metadata of the video.
    """

    frames: np.ndarray
    indices: list[int]
    info: VideoInfo

    @property
    def timestamps_s(self) -> list[float]:
        """Time of each frame in seconds from the first frame."""
        return [i / self.info.fps for i in self.indices]


def sample_clip_frames(
    reader: VideoReader,
    sampling: SamplingConfig | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    rng: np.random.Generator | None = None,
) -> ClipFrames:
    """Sample and decode one clip from an open reader (``start_s``/``end_s`` in seconds, None = whole video)."""
    indices = sample_frame_indices(reader.num_frames, reader.fps, sampling, start_s, end_s, rng)
    return ClipFrames(frames=reader.get_frames(indices), indices=indices, info=reader.info)


def read_clip_frames(
    path: str | os.PathLike[str],
    sampling: SamplingConfig | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    decode: DecodeConfig | None = None,
    rng: np.random.Generator | None = None,
) -> ClipFrames:
    """Open ``path``, sample and decode one clip, close the file.

    Raises :class:`data.errors.VideoReadError` subclasses for unreadable files.
    """
    with open_video(path, decode) as reader:
        return sample_clip_frames(reader, sampling, start_s, end_s, rng)


def load_clip(
    path: str | os.PathLike[str],
    sampling: SamplingConfig | None = None,
    transform: TransformConfig | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    decode: DecodeConfig | None = None,
    rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """Decode, sample and transform one clip.

    Returns:
        ``float32`` tensor ``(3, T, H, W)``; T = ``sampling.num_frames`` (default 8)
        for "middle"/"random", H = W = ``transform.size`` (default 224) with the
        default centre crop.
    Raises:
        :class:`data.errors.VideoReadError` subclasses naming the file and reason.
    """
    clip = read_clip_frames(path, sampling, start_s, end_s, decode, rng)
    return frames_to_tensor(clip.frames, transform)


__all__ = ["ClipFrames", "load_clip", "read_clip_frames", "sample_clip_frames"]
