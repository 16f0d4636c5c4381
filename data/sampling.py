"""Choosing which frames of a video (or of a time span of it) to decode.

All functions return frame indices (``int``, 0-based, presentation order,
non-decreasing) into a video of ``num_frames`` frames at ``fps`` frames/s, where
frame ``i`` is shown at ``i / fps`` seconds from the start of the stream.

Modes:
    "middle": split the span into ``num_frames`` equal segments and take the
        frame at the centre of each (the retrieval test protocol; deterministic).
    "random": one uniformly random frame inside each of the ``num_frames`` equal
        segments (training augmentation).
    "fps": frames every ``1 / target_fps`` seconds from the span start; the count
        depends on the span length (at least 1, at most ``max_frames`` when set,
        in which case the ``max_frames`` are spread as in "middle").

Padding rule for short videos: when the span holds fewer than ``num_frames``
frames, "middle" and "random" still place ``num_frames`` positions on equal
segments of the span, so every available frame is repeated in temporal order
(each about ``num_frames / n`` times).  No black frames are invented and the
result always has exactly ``num_frames`` indices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

SamplingMode = Literal["middle", "random", "fps"]
SAMPLING_MODES: tuple[str, ...] = ("middle", "random", "fps")


@dataclass(frozen=True)
class SamplingConfig:
    """Which frames to take from a clip.

    Attributes:
        num_frames: frames per clip (T) for "middle" and "random".
        mode: "middle", "random" or "fps" (see module doc).
        target_fps: frames per second for mode "fps".
        max_frames: cap on the frame count in mode "fps" (None: no cap).
    """

    num_frames: int = 8
    mode: SamplingMode = "middle"
    target_fps: float = 1.0
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in SAMPLING_MODES:
            raise ValueError(f"unknown sampling mode {self.mode!r}; choose from {SAMPLING_MODES}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.mode == "fps" and not self.target_fps > 0:
            raise ValueError(f"target_fps must be > 0, got {self.target_fps}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 or None, got {self.max_frames}")


def span_to_frame_range(
    num_frames: int, fps: float, start_s: float | None = None, end_s: float | None = None
) -> tuple[int, int]:
    """Frames shown in ``[start_s, end_s)`` as ``(first, count)`` with ``count >= 1``.

    ``None`` means the start / end of the video.  Spans outside the video are
    clamped to it; a span shorter than one frame gives the single frame nearest
    to ``start_s``.
    """
    if num_frames < 1:
        raise ValueError(f"video has no frames (num_frames={num_frames})")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if start_s is not None and end_s is not None and end_s < start_s:
        raise ValueError(f"span end {end_s} s is before its start {start_s} s")
    first = 0 if start_s is None else int(math.ceil(max(start_s, 0.0) * fps - 1e-6))
    stop = num_frames if end_s is None else int(math.ceil(end_s * fps - 1e-6))
    first = min(max(first, 0), num_frames - 1)
    stop = min(max(stop, 0), num_frames)
    if stop <= first:
        nearest = 0 if start_s is None else int(round(max(start_s, 0.0) * fps))
        return min(nearest, num_frames - 1), 1
    return first, stop - first


def middle_indices(first: int, count: int, num_samples: int) -> list[int]:
    """Centres of ``num_samples`` equal segments over frames ``first .. first+count-1``."""
    positions = (np.arange(num_samples) + 0.5) * count / num_samples
    return [first + min(int(p), count - 1) for p in positions]


def random_indices(first: int, count: int, num_samples: int, rng: np.random.Generator) -> list[int]:
    """One uniform frame inside each of ``num_samples`` equal segments of ``first .. first+count-1``."""
    positions = (np.arange(num_samples) + rng.random(num_samples)) * count / num_samples
    return [first + min(int(p), count - 1) for p in positions]


def fps_indices(
    first: int, count: int, fps: float, target_fps: float, max_frames: int | None = None
) -> list[int]:
    """Frames every ``1 / target_fps`` s from frame ``first`` within ``count`` frames."""
    span_s = count / fps
    n = max(1, int(math.ceil(span_s * target_fps - 1e-6)))
    if max_frames is not None and n > max_frames:
        return middle_indices(first, count, max_frames)
    return [first + min(int(math.floor(k * fps / target_fps + 1e-6)), count - 1) for k in range(n)]


def sample_frame_indices(
    num_frames: int,
    fps: float,
    config: SamplingConfig | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    rng: np.random.Generator | None = None,
) -> list[int]:
    """Indices of the frames to decode for one clip.

    Args:
        num_frames: frames in the video (>= 1).
        fps: frames per second of the video.
        config: sampling mode and count (default: 8 frames, "middle").
        start_s, end_s: optional time span in seconds; None = whole video.
        rng: random generator for mode "random" (default: a fresh unseeded one).
    Returns:
        Non-decreasing ``list[int]`` in ``[0, num_frames)``; length ``config.num_frames``
        for "middle"/"random" (see the padding rule in the module doc).
    """
    config = config or SamplingConfig()
    first, count = span_to_frame_range(num_frames, fps, start_s, end_s)
    if config.mode == "middle":
        return middle_indices(first, count, config.num_frames)
    if config.mode == "random":
        return random_indices(first, count, config.num_frames, rng or np.random.default_rng())
    return fps_indices(first, count, fps, config.target_fps, config.max_frames)


__all__ = [
    "SAMPLING_MODES",
    "SamplingConfig",
    "SamplingMode",
    "fps_indices",
    "middle_indices",
    "random_indices",
    "sample_frame_indices",
    "span_to_frame_range",
]
