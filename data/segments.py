"""Splitting long videos into segments (each indexed and searched on its own).

Two methods, each giving :class:`SegmentRecord`s with start/end in seconds:

* "window": fixed windows of ``window_s`` seconds every ``stride_s`` seconds.
  Windows start at 0, s, 2s, ... and the last window ends at the video's end.
  A tail shorter than ``min_segment_s`` is merged into the previous window.
  A video shorter than one window is one segment ``[0, duration]``.
* "shots": shot changes found by PySceneDetect's ``ContentDetector``; shots
  longer than ``max_segment_s`` (when set) are split further into fixed windows.
  A video without a detected cut is one segment.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Literal

from data.errors import VideoReadError
from data.probe import probe_video

logger = logging.getLogger(__name__)

SegmentMethod = Literal["window", "shots"]


@dataclass(frozen=True)
class SegmentationConfig:
    """How to split a video.

    Attributes:
        method: "window" or "shots".
        window_s: window length in seconds ("window"; also the split length for
            over-long shots).
        stride_s: distance between window starts in seconds (None = ``window_s``,
            i.e. no overlap).
        min_segment_s: a final window shorter than this is merged into the previous one.
        shot_threshold: ContentDetector threshold (higher = fewer cuts).
        min_shot_s: shortest shot in seconds.
        max_segment_s: shots longer than this are split into windows (None = never).
    """

    method: SegmentMethod = "window"
    window_s: float = 10.0
    stride_s: float | None = None
    min_segment_s: float = 1.0
    shot_threshold: float = 27.0
    min_shot_s: float = 0.5
    max_segment_s: float | None = 30.0

    def __post_init__(self) -> None:
        if self.method not in ("window", "shots"):
            raise ValueError(f"method must be 'window' or 'shots', got {self.method!r}")
        if not self.window_s > 0:
            raise ValueError(f"window_s must be > 0, got {self.window_s}")
        if self.stride_s is not None and not self.stride_s > 0:
            raise ValueError(f"stride_s must be > 0, got {self.stride_s}")


@dataclass(frozen=True)
class SegmentRecord:
    """One segment of a video: ``[start_s, end_s)`` seconds from the first frame."""

    video_path: str
    index: int
    start_s: float
    end_s: float
    method: str

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def fixed_window_spans(
    duration_s: float, window_s: float, stride_s: float | None = None, min_segment_s: float = 1.0
) -> list[tuple[float, float]]:
    """``(start_s, end_s)`` windows covering ``[0, duration_s]`` (see module doc for the rule)."""
    if duration_s <= 0:
        return [(0.0, max(duration_s, 0.0))]
    stride = window_s if stride_s is None else stride_s
    if duration_s <= window_s:
        return [(0.0, float(duration_s))]
    spans: list[tuple[float, float]] = []
    k = 0
    while True:
        start = k * stride
        if start >= duration_s:
            break
        end = min(start + window_s, duration_s)
        if spans and end - start < min_segment_s and end <= spans[-1][1] + min_segment_s:
            spans[-1] = (spans[-1][0], float(duration_s))
            break
        spans.append((float(round(start, 6)), float(round(end, 6))))
        if end >= duration_s:
            break
        k += 1
    # A stride larger than the window leaves gaps; the last span still ends at the video end.
    return spans


def _split_long(start: float, end: float, max_len: float | None, min_segment_s: float) -> list[tuple[float, float]]:
    if max_len is None or end - start <= max_len:
        return [(start, end)]
    pieces = fixed_window_spans(end - start, max_len, None, min_segment_s)
    return [(start + a, start + b) for a, b in pieces]


def _seconds(timecode: object) -> float:
    """Seconds of a PySceneDetect FrameTimecode (``seconds`` property in 0.7, ``get_seconds()`` before)."""
    value = getattr(timecode, "seconds", None)
    if value is None or callable(value):
        value = timecode.get_seconds()  # type: ignore[attr-defined]
    return float(value)


def detect_shot_spans(
    path: str | os.PathLike[str], threshold: float = 27.0, min_shot_s: float = 0.5
) -> list[tuple[float, float]]:
    """Shots of ``path`` as ``(start_s, end_s)`` via PySceneDetect (PyAV backend, auto downscale).

    Raises :class:`data.errors.VideoReadError` subclasses for unreadable files.
    """
    from scenedetect import ContentDetector, SceneManager, open_video

    info = probe_video(path)  # classifies unreadable files with our exceptions
    try:
        video = open_video(info.path, backend="pyav")
        fps = float(video.frame_rate)
        manager = SceneManager()
        manager.auto_downscale = True
        manager.add_detector(ContentDetector(threshold=threshold, min_scene_len=max(1, int(round(min_shot_s * fps)))))
        manager.detect_scenes(video=video, show_progress=False)
        scenes = manager.get_scene_list(start_in_scene=True)
    except Exception as exc:  # scenedetect wraps decoder failures in several types
        raise VideoReadError(info.path, f"shot detection failed ({exc})") from exc
    spans = [(_seconds(a), _seconds(b)) for a, b in scenes]
    if not spans:
        return [(0.0, info.duration_s)]
    return spans


def segment_video(path: str | os.PathLike[str], config: SegmentationConfig | None = None) -> list[SegmentRecord]:
    """Split ``path`` into :class:`SegmentRecord`s according to ``config`` (default: 10 s windows)."""
    config = config or SegmentationConfig()
    if config.method == "window":
        info = probe_video(path)
        spans = fixed_window_spans(info.duration_s, config.window_s, config.stride_s, config.min_segment_s)
        p = info.path
    else:
        p = os.fspath(path)
        spans = []
        for start, end in detect_shot_spans(p, config.shot_threshold, config.min_shot_s):
            spans.extend(_split_long(start, end, config.max_segment_s, config.min_segment_s))
    records = [
        SegmentRecord(video_path=p, index=i, start_s=float(a), end_s=float(b), method=config.method)
        for i, (a, b) in enumerate(spans)
        if math.isfinite(a) and math.isfinite(b)
    ]
    logger.debug("%s: %d %s segments", p, len(records), config.method)
    return records


__all__ = [
    "SegmentMethod",
    "SegmentRecord",
    "SegmentationConfig",
    "detect_shot_spans",
    "fixed_window_spans",
    "segment_video",
]
