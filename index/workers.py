"""Work done in decoder processes during indexing: probe + segment a file, decode clips.

Functions here run in ``spawn``-started worker processes of a
:class:`index.worker_pool.SupervisedPool` (or inline with ``workers=0``). They
never raise: every outcome is a :class:`WorkResult`, and errors keep their class
name and reason. What they cannot report themselves - the decoder crashing the
process, or a call that never returns - the pool turns into a failed result of
that one task (:func:`task_outcome`), so one bad file cannot stop the run.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from data.decode import DecodeConfig
from data.sampling import SamplingConfig
from data.segments import SegmentationConfig
from data.transforms import TransformConfig
from index.worker_pool import SupervisedPool, WorkerLostError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkResult:
    """``value`` on success; otherwise ``error_type`` (exception class name) and ``reason``."""

    value: Any = None
    error_type: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_type is None


@dataclass(frozen=True)
class VideoPlan:
    """Probe metadata and the ``(start_s, end_s)`` segments of one file."""

    duration_s: float
    fps: float
    width: int
    height: int
    codec: str
    spans: tuple[tuple[float, float], ...]


def _failure(error: BaseException) -> WorkResult:
    reason = getattr(error, "reason", None) or str(error) or type(error).__name__
    return WorkResult(error_type=type(error).__name__, reason=str(reason)[:2000])


def plan_video(path: str, segmentation: SegmentationConfig, decode: DecodeConfig) -> WorkResult:
    """Probe and segment ``path`` -> :class:`VideoPlan` (in a worker)."""
    from data.probe import probe_video
    from data.segments import segment_video

    try:
        info = probe_video(path)
        if info.width * info.height > decode.max_pixels:
            from data.errors import VideoTooLargeError

            raise VideoTooLargeError(path, f"{info.width}x{info.height} exceeds the pixel limit")
        records = segment_video(path, segmentation)
        spans = tuple((float(r.start_s), float(r.end_s)) for r in records if r.end_s > r.start_s or len(records) == 1)
        if not spans:
            return WorkResult(error_type="NoSegmentsError", reason="segmentation produced no segment")
        return WorkResult(VideoPlan(float(info.duration_s), float(info.fps), int(info.display_width),
                                    int(info.display_height), str(info.codec), spans))
    except Exception as error:  # noqa: BLE001 - every failure is reported, none crashes the pool
        return _failure(error)


def decode_clips(path: str, spans: tuple[tuple[float, float], ...], sampling: SamplingConfig,
                 transform: TransformConfig, decode: DecodeConfig) -> WorkResult:
    """Decode one clip per span -> float32 ``(len(spans), 3, T, H, W)`` (in a worker)."""
    from data.clip import sample_clip_frames
    from data.decode import open_video
    from data.transforms import frames_to_tensor

    try:
        clips = []
        with open_video(path, decode) as reader:
            for start, end in spans:
                frames = sample_clip_frames(reader, sampling, start, end if end > start else None)
                clips.append(frames_to_tensor(frames.frames, transform).numpy())
        return WorkResult(np.stack(clips).astype(np.float32, copy=False))
    except Exception as error:  # noqa: BLE001
        return _failure(error)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)


class InlineExecutor(Executor):
    """Runs each call at submit time in this process (``workers=0``)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # pragma: no cover - worker functions do not raise
            future.set_exception(error)
        return future


def make_executor(workers: int, task_timeout_s: Optional[float] = None) -> Executor:
    """``workers`` supervised spawn-started processes (one torch thread each), or inline for 0.

    ``task_timeout_s``: a task still running after this many seconds is killed
    with its process (None: no limit; not enforced inline)."""
    if workers <= 0:
        return InlineExecutor()
    return SupervisedPool(workers, task_timeout_s=task_timeout_s, initializer=_init_worker)


def task_outcome(future: Future) -> WorkResult:
    """The :class:`WorkResult` of a submitted task; a lost worker (crash, timeout) is a failed result."""
    try:
        return future.result()
    except WorkerLostError as error:
        return _failure(error)


def default_workers() -> int:
    """Decoder processes by default: CPUs minus one for the encoder, at most 8, at least 1."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


__all__ = ["InlineExecutor", "VideoPlan", "WorkResult", "decode_clips", "default_workers", "make_executor",
           "plan_video", "task_outcome"]
