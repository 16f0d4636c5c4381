"""Probe a video file: duration, fps, frame count, size, rotation, codec.

Probing always uses PyAV (FFmpeg), whatever decoder backend later decodes the
file, so every backend sees the same metadata and the same error classification.
A probe opens the container and decodes the first frame: a file that probes
successfully has at least one decodable video frame.

CLI::

    python -m data.probe FILE [FILE ...]

prints one JSON object per file and line.  Files that cannot be read give an
object with ``path``, ``error`` (the reason) and ``error_type`` (the exception
class name).  The exit status is 0 when every file probed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import av
import av.error

from data.errors import (
    CorruptVideoError,
    DecodeTimeoutError,
    EmptyVideoFileError,
    NoFramesError,
    NotAVideoError,
    NoVideoStreamError,
    UnsupportedCodecError,
    VideoNotFoundError,
    VideoReadError,
    VideoTooLargeError,
)

logger = logging.getLogger(__name__)

# Leading bytes of containers FFmpeg reads.  A file that starts like one of these
# but fails to open is "corrupt/truncated"; anything else is "not a video".
_CONTAINER_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),  # MP4 / MOV / 3GP
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"free"),
    (4, b"wide"),
    (4, b"skip"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM (EBML)
    (0, b"RIFF"),  # AVI
    (0, b"OggS"),
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
    (0, b"\x30\x26\xb2\x75"),  # ASF / WMV
)

# Give up looking for the first frame after this many packets: a stream whose
# first few hundred packets decode to nothing is not usable.
_MAX_PACKETS_FOR_FIRST_FRAME = 600


@dataclass(frozen=True)
class VideoInfo:
    """Metadata of one video stream.

    Units: seconds for times, frames per second for ``fps``, pixels for sizes.
    ``width``/``height`` are the coded (stored) frame size; decoded frames are
    returned upright, i.e. of size ``display_height x display_width``.
    ``rotation`` is the display rotation in degrees counter-clockwise
    (FFmpeg's display-matrix convention), normalised to 0, 90, 180 or 270.
    ``num_frames`` is the container's frame count, or ``round(duration_s * fps)``
    when the container does not store one (WebM, some AVI); it may overstate
    the decodable frames of a truncated file (see the padding rule in
    ``docs/data.md``).
    """

    path: str
    duration_s: float
    fps: float
    num_frames: int
    width: int
    height: int
    rotation: int
    codec: str
    container: str
    start_s: float
    has_audio: bool
    size_bytes: int

    @property
    def display_width(self) -> int:
        return self.height if self.rotation in (90, 270) else self.width

    @property
    def display_height(self) -> int:
        return self.width if self.rotation in (90, 270) else self.height

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["display_width"] = self.display_width
        out["display_height"] = self.display_height
        return out


def check_path(path: str | os.PathLike[str]) -> str:
    """Return ``path`` as ``str`` after checking it names a non-empty regular file.

    Raises:
        VideoNotFoundError: missing path or a directory.
        EmptyVideoFileError: zero bytes.
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise VideoNotFoundError(p, "file does not exist")
    if not os.path.isfile(p):
        raise VideoNotFoundError(p, "not a regular file")
    if os.path.getsize(p) == 0:
        raise EmptyVideoFileError(p, "file is empty (0 bytes)")
    return p


def _looks_like_container(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return False
    if head[:1] == b"\x47" and len(head) >= 1:  # MPEG-TS sync byte
        return True
    return any(head[off : off + len(sig)] == sig for off, sig in _CONTAINER_SIGNATURES)


def open_container(path: str) -> av.container.InputContainer:
    """Open ``path`` with PyAV, translating FFmpeg errors into :mod:`data.errors` classes."""
    try:
        return av.open(path, mode="r", metadata_errors="ignore")
    except av.error.FileNotFoundError as exc:
        raise VideoNotFoundError(path, "file does not exist") from exc
    except av.error.PermissionError as exc:
        raise VideoReadError(path, "permission denied") from exc
    except (av.error.InvalidDataError, av.error.EOFError, av.error.FFmpegError) as exc:
        detail = getattr(exc, "strerror", None) or str(exc)
        if _looks_like_container(path):
            raise CorruptVideoError(path, f"truncated or damaged container ({detail})") from exc
        raise NotAVideoError(path, f"not a recognised video container ({detail})") from exc


def _frame_rate(stream: av.video.stream.VideoStream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            value = float(rate)
            if 0.1 <= value <= 1000.0:
                return value
    return None


def _stream_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def decode_first_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    path: str,
    deadline: float,
) -> list[av.VideoFrame]:
    """Decode until ``stream`` yields frames; return them (the first frame first).

    More than one frame comes back when the first output happens at a decoder flush
    (very short files with B-frames); callers must keep all of them.

    Raises NoFramesError when the stream ends without a frame, CorruptVideoError
    when its first packets are all undecodable, DecodeTimeoutError past ``deadline``
    (a ``time.monotonic()`` value).
    """
    errors = 0
    packets = 0
    last_error = ""
    for packet in container.demux(stream):
        packets += 1
        if time.monotonic() > deadline:
            raise DecodeTimeoutError(path, "timed out looking for the first frame")
        try:
            frames = packet.decode()
        except (av.error.InvalidDataError, av.error.FFmpegError) as exc:
            errors += 1
            last_error = str(exc)
            frames = []
        if frames:
            return list(frames)
        if packets >= _MAX_PACKETS_FOR_FIRST_FRAME:
            break
    if errors:
        raise CorruptVideoError(path, f"no decodable frame in the first {packets} packets ({last_error})")
    raise NoFramesError(path, "video stream contains no frames")


@dataclass
class ProbeResult:
    """An open container positioned after its first frame, with the probed metadata.

    Internal hand-over from probing to the PyAV decoder, so a file is opened once.
    """

    info: VideoInfo
    container: av.container.InputContainer
    stream: av.video.stream.VideoStream
    first_frames: list[av.VideoFrame]

    @property
    def first_frame(self) -> av.VideoFrame:
        return self.first_frames[0]


def probe_open(
    path: str | os.PathLike[str],
    timeout_s: float = 30.0,
    decoder_threads: int | None = None,
    max_pixels: int | None = None,
) -> ProbeResult:
    """Open and probe ``path``; the caller owns (and must close) ``result.container``.

    ``decoder_threads``: None leaves FFmpeg's single-threaded default (enough for
    a probe); otherwise threading is set to "AUTO" with that many threads
    (0 = FFmpeg chooses) before the first frame opens the decoder.
    ``max_pixels``: raise :class:`VideoTooLargeError` before decoding anything when
    the coded ``width * height`` exceeds it (None = no limit).

    Raises a :class:`data.errors.VideoReadError` subclass naming the file and reason.
    """
    p = check_path(path)
    deadline = time.monotonic() + timeout_s
    container = open_container(p)
    try:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise NoVideoStreamError(p, f"no video stream (streams: {', '.join(kinds)})")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise UnsupportedCodecError(p, "no decoder available for the video codec")
        codec = stream.codec_context.name
        if decoder_threads is not None:
            stream.codec_context.thread_type = "AUTO"
            stream.codec_context.thread_count = decoder_threads
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        if max_pixels is not None and width * height > max_pixels:
            raise VideoTooLargeError(p, f"frame size {width}x{height} exceeds the limit of {max_pixels} pixels")
        first_frames = decode_first_frames(container, stream, p, deadline)
        first = first_frames[0]
        if width <= 0 or height <= 0:
            width, height = first.width, first.height
        fps = _frame_rate(stream)
        duration = _stream_duration(container, stream)
        frames = int(stream.frames or 0)
        if fps is None:
            if frames > 0 and duration:
                fps = frames / duration
            else:
                logger.warning("%s: frame rate unknown, assuming 25 fps", p)
                fps = 25.0
        if frames <= 0:
            frames = max(1, int(round((duration or 0.0) * fps)))
        if duration is None:
            duration = frames / fps
        start_s = float(first.time) if first.time is not None else 0.0
        rotation = int(round(getattr(first, "rotation", 0) or 0)) % 360
        rotation = (rotation + 45) // 90 * 90 % 360
        info = VideoInfo(
            path=p,
            duration_s=float(duration),
            fps=float(fps),
            num_frames=int(frames),
            width=width,
            height=height,
            rotation=rotation,
            codec=codec,
            container=container.format.name,
            start_s=start_s,
            has_audio=bool(container.streams.audio),
            size_bytes=os.path.getsize(p),
        )
        return ProbeResult(info=info, container=container, stream=stream, first_frames=first_frames)
    except VideoReadError:
        container.close()
        raise
    except (av.error.FFmpegError, ValueError, AttributeError) as exc:
        container.close()
        raise CorruptVideoError(p, f"cannot read stream parameters ({exc})") from exc


def probe_video(path: str | os.PathLike[str], timeout_s: float = 30.0) -> VideoInfo:
    """Return the :class:`VideoInfo` of ``path``.

    Raises a :class:`data.errors.VideoReadError` subclass (file name and reason)
    for missing, empty, non-video, truncated, audio-only, undecodable or
    frameless files.
    """
    result = probe_open(path, timeout_s=timeout_s)
    result.container.close()
    return result.info


def probe_to_json(path: str) -> dict[str, Any]:
    """Probe ``path`` and return a JSON-ready dict; failures become ``{"path", "error", "error_type"}``."""
    try:
        info = probe_video(path)
    except VideoReadError as exc:
        return {"path": path, "error": exc.reason, "error_type": type(exc).__name__}
    out = info.to_dict()
    for key in ("duration_s", "fps", "start_s"):
        value = out[key]
        out[key] = round(value, 6) if math.isfinite(value) else None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data.probe",
        description="Print one JSON object per video file: duration, fps, frame count, size, rotation, codec.",
    )
    parser.add_argument("files", nargs="+", help="video files")
    args = parser.parse_args(argv)
    failed = 0
    for path in args.files:
        result = probe_to_json(path)
        failed += "error" in result
        print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "VideoInfo",
    "ProbeResult",
    "check_path",
    "open_container",
    "decode_first_frames",
    "probe_open",
    "probe_video",
    "probe_to_json",
    "main",
]
