"""Video decoding behind one interface, with PyAV and decord backends.

``open_video(path, config)`` returns a :class:`VideoReader`; ``reader.get_frames(indices)``
returns RGB frames as a ``uint8`` array of shape ``(T, H, W, 3)``, upright
(display rotation applied), in the order the indices were given.

Frame index ``i`` is the frame shown at ``start_s + i / fps`` (presentation order);
for constant-frame-rate files both backends return the same frame for the same
index.  Every failure raises a :class:`data.errors.VideoReadError` subclass that
names the file and the reason.

Padding rule (frames missing at the end): when a requested index lies past the
last frame that can actually be decoded (the container's frame count overstates
a truncated file, or ``index >= num_frames``), the last decoded frame is
returned for it and a warning is logged.  Indices below 0 raise ``IndexError``.

Time bound: every ``get_frames`` call (and the probe inside ``open_video``) has a
deadline of ``DecodeConfig.timeout_s`` seconds, checked between decoded frames;
past it :class:`data.errors.DecodeTimeoutError` is raised.
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

import av
import av.error

from data.errors import (
    BackendUnavailableError,
    CorruptVideoError,
    DecodeTimeoutError,
    NoFramesError,
)
from data.probe import ProbeResult, VideoInfo, probe_open

logger = logging.getLogger(__name__)

# Names and the config live in data.decode_config, which does not import PyAV.
from data.decode_config import (  # noqa: E402  (re-exported: the public home of these names is data.decode)
    BACKENDS,
    DECORD,
    DEFAULT_BACKEND,
    DEFAULT_MAX_PIXELS,
    PYAV,
    DecodeConfig,
    SeekMode,
)


def available_backends() -> list[str]:
    """Backends importable on this machine (PyAV always; decord only on x86_64 where installed)."""
    names = [PYAV]
    try:
        import decord  # noqa: F401
    except ImportError:
        pass
    else:
        names.append(DECORD)
    return names


def rotate_upright(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate an ``(H, W, 3)`` frame by ``rotation`` degrees counter-clockwise (0/90/180/270)."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(frame, k=k)) if k else frame


class VideoReader(ABC):
    """An open video file.  Use as a context manager or call :meth:`close`.

    Attributes:
        info: metadata from the probe (:class:`data.probe.VideoInfo`).
        backend: name of the backend ("pyav" or "decord").
    """

    backend: str = ""

    def __init__(self, info: VideoInfo, config: DecodeConfig) -> None:
        self.info = info
        self.config = config

    @property
    def path(self) -> str:
        return self.info.path

    @property
    def num_frames(self) -> int:
        """Number of frames indices may address (``0 .. num_frames - 1``)."""
        return self.info.num_frames

    @property
    def fps(self) -> float:
        return self.info.fps

    @property
    def duration_s(self) -> float:
        return self.info.duration_s

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Decode frames ``indices`` (any order, repeats allowed).

        Returns:
            ``uint8`` array ``(len(indices), H, W, 3)``, RGB, upright.
        Raises:
            IndexError: an index below 0 or an empty ``indices``.
            DecodeTimeoutError, CorruptVideoError, NoFramesError: see module doc.
        """
        wanted = [int(i) for i in indices]
        if not wanted:
            raise IndexError(f"{self.path}: no frame indices requested")
        if min(wanted) < 0:
            raise IndexError(f"{self.path}: negative frame index {min(wanted)}")
        if self.config.seek_mode == "keyframe":
            keys = self.keyframe_indices()
            if keys:
                wanted = [keys[max(bisect.bisect_right(keys, i) - 1, 0)] for i in wanted]
        unique = sorted(set(wanted))
        deadline = time.monotonic() + self.config.timeout_s
        decoded = self._decode_sorted(unique, deadline)
        missing = [i for i in unique if i not in decoded]
        if missing:
            if not decoded:
                raise NoFramesError(self.path, f"none of frames {unique[:4]}... could be decoded")
            last_index = max(decoded)
            logger.warning(
                "%s: frames %s past the last decodable frame %d; repeating it (padding rule)",
                self.path,
                missing if len(missing) <= 4 else f"{missing[:4]}... ({len(missing)})",
                last_index,
            )
            for i in missing:
                decoded[i] = decoded[last_index]
        return np.stack([decoded[i] for i in wanted])

    def keyframe_indices(self) -> list[int]:
        """Sorted frame indices of keyframes (empty when the container has no index)."""
        return []

    @abstractmethod
    def _decode_sorted(self, indices: list[int], deadline: float) -> dict[int, np.ndarray]:
        """Decode sorted unique ``indices``; may omit indices past the decodable end."""

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass


class PyAVReader(VideoReader):
    """Decodes with PyAV, seeking only when a keyframe lies between the current position and the target."""

    backend = PYAV

    def __init__(self, probe: ProbeResult, config: DecodeConfig) -> None:
        super().__init__(probe.info, config)
        self._container = probe.container
        self._stream = probe.stream
        tb = self._stream.time_base
        self._time_base = float(tb) if tb is not None else 1.0 / 90000
        self._start_pts = probe.first_frame.pts if probe.first_frame.pts is not None else 0
        self._frame_pts = 1.0 / (self.info.fps * self._time_base)  # one frame in pts units
        self._keyframe_pts = self._read_keyframe_index()
        self._packets = None  # demux iterator; None when a seek is needed first
        self._last_pts: float | None = None
        # The probe decoded the first frame(s); keep them so index 0 costs nothing.
        self._pending: list[av.VideoFrame] = list(probe.first_frames)
        self._packets = self._container.demux(self._stream)
        self._eof = False
        self._last_frame: av.VideoFrame | None = None
        self._good_pts: float | None = None

    def _read_keyframe_index(self) -> list[float]:
        """Keyframe presentation times in pts units, from the container index (no decoding).

        Index entries carry decode timestamps; with B-frames the first keyframe's dts
        precedes its pts by the reorder delay, so all entries are shifted by that delay.
        """
        try:
            keys = sorted(e.timestamp for e in self._stream.index_entries if e.is_keyframe)
        except (AttributeError, av.error.FFmpegError):
            return []
        if not keys:
            return []
        delay = self._start_pts - keys[0]
        return [k + delay for k in keys]

    def keyframe_indices(self) -> list[int]:
        return sorted(
            {int(round((k - self._start_pts) / self._frame_pts)) for k in self._keyframe_pts if k >= self._start_pts}
        )

    def _target_pts(self, index: int) -> float:
        return self._start_pts + index * self._frame_pts

    def _should_seek(self, target: float) -> bool:
        if self._packets is None:
            return True
        current = self._last_pts if self._last_pts is not None else self._start_pts
        if target < current - 0.5 * self._frame_pts:
            return True  # behind us: must go back
        if self._keyframe_pts:
            k = bisect.bisect_right(self._keyframe_pts, target) - 1
            return k >= 0 and self._keyframe_pts[k] > current + 0.5 * self._frame_pts
        # No index (some WebM/AVI files): seek for gaps over two seconds.
        return (target - current) * self._time_base > 2.0

    def _seek(self, target: float) -> None:
        self._container.seek(int(max(target, 0)), stream=self._stream, backward=True, any_frame=False)
        self._packets = self._container.demux(self._stream)
        self._pending = []
        self._last_pts = None
        self._last_frame = None
        self._eof = False

    def _next_frame(self, deadline: float, errors: list[str]) -> av.VideoFrame | None:
        while not self._pending:
            if self._eof:
                return None
            if time.monotonic() > deadline:
                raise DecodeTimeoutError(self.path, f"decoding exceeded {self.config.timeout_s:.1f} s")
            try:
                packet = next(self._packets)
            except StopIteration:
                self._eof = True
                return None
            except (av.error.InvalidDataError, av.error.FFmpegError) as exc:
                errors.append(str(exc))
                self._check_errors(errors)
                continue
            try:
                self._pending.extend(packet.decode())
            except (av.error.InvalidDataError, av.error.FFmpegError) as exc:
                errors.append(str(exc))
                self._check_errors(errors)
        frame = self._pending.pop(0)
        if frame.pts is not None:
            self._last_pts = frame.pts
        elif self._last_pts is not None:
            self._last_pts += self._frame_pts
        self._last_frame = frame
        if self._last_pts is not None:
            self._good_pts = self._last_pts
        return frame

    def _last_decodable_frame(self, deadline: float, errors: list[str]) -> av.VideoFrame | None:
        """At end of stream: the last frame that decodes.  When a seek overshot the readable
        data (truncated file without index), decode forward from the last good position."""
        tail = self._last_frame
        if tail is None and self._good_pts is not None:
            self._seek(self._good_pts)
            while (frame := self._next_frame(deadline, errors)) is not None:
                tail = frame
        return tail

    def _check_errors(self, errors: list[str]) -> None:
        if len(errors) > self.config.max_decode_errors:
            raise CorruptVideoError(self.path, f"{len(errors)} corrupt packets (last: {errors[-1]})")

    def _to_array(self, frame: av.VideoFrame) -> np.ndarray:
        return rotate_upright(frame.to_ndarray(format="rgb24"), self.info.rotation)

    def _decode_sorted(self, indices: list[int], deadline: float) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        errors: list[str] = []
        half = 0.5 * self._frame_pts
        prev: av.VideoFrame | None = None
        prev_index: int | None = None
        for index in indices:
            target = self._target_pts(index)
            if prev is not None and prev_index is not None and abs((prev.pts or 0) - target) <= half:
                out[index] = out[prev_index]
                continue
            first_after_seek = self._should_seek(target)
            if first_after_seek:
                self._seek(target)
            retries = 0
            while True:
                frame = self._next_frame(deadline, errors)
                if frame is None:  # end of stream before the target: padding rule
                    tail = self._last_decodable_frame(deadline, errors)
                    if tail is not None:
                        logger.warning(
                            "%s: frame %d is past the last decodable frame (t=%.3f s); repeating that frame",
                            self.path, index, float((tail.pts or 0) * self._time_base),
                        )
                        out[index] = self._to_array(tail)
                    return out
                pts = frame.pts if frame.pts is not None else self._last_pts
                if first_after_seek and pts is not None and pts > target + half and retries < 3:
                    # The seek landed past the target: step further back and retry.
                    retries += 1
                    self._seek(target - retries * 2.0 / self._time_base)
                    continue
                first_after_seek = False
                if pts is None or pts >= target - half:
                    out[index] = self._to_array(frame)
                    prev, prev_index = frame, index
                    break
        return out

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()
            self._container = None


class DecordReader(VideoReader):
    """Decodes with decord (x86_64 only).  Rotated videos are not supported by decord:
    :func:`open_video` hands those to PyAV instead."""

    backend = DECORD

    def __init__(self, info: VideoInfo, config: DecodeConfig) -> None:
        try:
            import decord
        except ImportError as exc:
            raise BackendUnavailableError("decord is not installed (it is x86_64 only)") from exc
        try:
            self._reader = decord.VideoReader(info.path, ctx=decord.cpu(0), num_threads=config.num_threads)
        except Exception as exc:  # decord raises RuntimeError / DECORDError for anything
            raise CorruptVideoError(info.path, f"decord cannot open the file ({str(exc).splitlines()[0][:200]})") from exc
        count = len(self._reader)
        if count <= 0:
            raise NoFramesError(info.path, "video stream contains no frames")
        # Presentation time of every frame (seconds), from decord's packet index.  Indices
        # follow the same time-based rule as PyAV (index i = frame shown at first + i / fps),
        # so both backends agree on variable-frame-rate files too.
        self._times = np.asarray(self._reader.get_frame_timestamp(np.arange(count)), dtype=float)[:, 0]
        super().__init__(info, config)

    def _frame_for_index(self, index: int) -> int:
        """decord's frame number for our time-based ``index`` (may be ``>= len``: past the end)."""
        target = self._times[0] + index / self.info.fps - 0.5 / self.info.fps
        return int(np.searchsorted(self._times, target - 1e-9, side="left"))

    def keyframe_indices(self) -> list[int]:
        fps, t0 = self.info.fps, self._times[0]
        return sorted({int(round((self._times[j] - t0) * fps)) for j in self._reader.get_key_indices()})

    def _decode_sorted(self, indices: list[int], deadline: float) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        count = len(self._times)
        cache: dict[int, np.ndarray] = {}
        padded = False
        for index in indices:
            j = self._frame_for_index(index)
            if j >= count:  # past the last decodable frame: padding rule
                if not padded:
                    logger.warning(
                        "%s: frame %d is past the last decodable frame (t=%.3f s); repeating that frame",
                        self.path, index, self._times[-1] - self._times[0],
                    )
                padded = True
                j = count - 1
            if time.monotonic() > deadline:
                raise DecodeTimeoutError(self.path, f"decoding exceeded {self.config.timeout_s:.1f} s")
            if j not in cache:
                try:
                    cache[j] = self._reader.get_batch([j]).asnumpy()[0]
                except Exception as exc:  # DECORDError on damaged data
                    raise CorruptVideoError(
                        self.path, f"decord failed at frame {j} ({str(exc).splitlines()[0][:200]})"
                    ) from exc
            out[index] = cache[j]
        return out

    def close(self) -> None:
        if getattr(self, "_reader", None) is not None:
            self._reader = None


def open_video(path: str | os.PathLike[str], config: DecodeConfig | None = None) -> VideoReader:
    """Probe ``path`` and open it for decoding.

    Args:
        path: video file (any container/codec FFmpeg decodes).
        config: backend and limits; defaults to ``DecodeConfig()``.
    Returns:
        A :class:`VideoReader`; close it (or use ``with``).
    Raises:
        VideoReadError subclasses (file and reason), VideoTooLargeError past
        ``config.max_pixels``, BackendUnavailableError for a missing backend.
    """
    config = config or DecodeConfig()
    backend = config.backend or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise ValueError(f"unknown decoder backend {backend!r}; choose from {BACKENDS}")
    threads = config.num_threads if backend == PYAV else None
    probe = probe_open(path, timeout_s=config.timeout_s, decoder_threads=threads, max_pixels=config.max_pixels)
    info = probe.info
    if backend == PYAV:
        return PyAVReader(probe, config)
    probe.container.close()
    if info.rotation:
        logger.info("%s: rotated video (%d deg); decord cannot rotate, using PyAV", info.path, info.rotation)
        return PyAVReader(probe_open(path, timeout_s=config.timeout_s, decoder_threads=config.num_threads), config)
    return DecordReader(info, config)


def read_frames(
    path: str | os.PathLike[str], indices: Sequence[int], config: DecodeConfig | None = None
) -> np.ndarray:
    """Open ``path``, decode ``indices`` and close it.  Returns ``uint8 (T, H, W, 3)`` RGB."""
    with open_video(path, config) as reader:
        return reader.get_frames(indices)


__all__ = [
    "BACKENDS",
    "DECORD",
    "DEFAULT_BACKEND",
    "DEFAULT_MAX_PIXELS",
    "DecodeConfig",
    "DecordReader",
    "PYAV",
    "PyAVReader",
    "SeekMode",
    "VideoReader",
    "available_backends",
    "open_video",
    "read_frames",
    "rotate_upright",
]
