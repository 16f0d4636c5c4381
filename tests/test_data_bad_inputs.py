"""Bad input: each case gives a specific exception naming the file and the reason, or the
documented padding rule; nothing hangs; the CLI and datasets report instead of crashing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from data.decode import DecodeConfig, available_backends, open_video, read_frames
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
from data.probe import probe_video
from data_fixtures import (
    read_frame_index,
    with_unknown_codec,
    write_audio_only,
    write_indexed_video,
    write_video,
    write_zero_frame_video,
)

BACKENDS = available_backends()


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    good = write_indexed_video(d / "good.mp4", num_frames=30)
    files = {"good": good}
    files["missing"] = d / "missing.mp4"
    files["empty"] = d / "empty.mp4"
    files["empty"].write_bytes(b"")
    files["truncated"] = d / "truncated.mp4"
    files["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files["text"] = d / "notes.mp4"
    files["text"].write_text("this is not a video\n" * 20)
    files["audio_only"] = write_audio_only(d / "sound.m4a")
    files["unsupported_codec"] = with_unknown_codec(good, d / "unknown_codec.mp4")
    files["zero_frames"] = write_zero_frame_video(d / "zero_frames.mkv", good)
    return files


EXPECTED = {
    "missing": (VideoNotFoundError, "does not exist"),
    "empty": (EmptyVideoFileError, "0 bytes"),
    "truncated": (CorruptVideoError, "truncated"),
    "text": (NotAVideoError, "not a recognised video container"),
    "audio_only": (NoVideoStreamError, "no video stream"),
    "unsupported_codec": (UnsupportedCodecError, "no decoder"),
    "zero_frames": (NoFramesError, "no frames"),
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
@pytest.mark.parametrize("backend", BACKENDS)
def test_specific_exception_names_file_and_reason(bad_files: dict[str, Path], case: str, backend: str) -> None:
    exc_type, reason = EXPECTED[case]
    path = bad_files[case]
    start = time.monotonic()
    with pytest.raises(exc_type) as info:
        read_frames(path, [0, 1], DecodeConfig(backend=backend))
    assert time.monotonic() - start < 10
    assert str(path) in str(info.value) and reason in str(info.value)
    assert info.value.path == str(path) and reason in info.value.reason
    # Every one of them is catchable as the common base class.
    with pytest.raises(VideoReadError):
        probe_video(path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_resolution_is_refused_before_decoding(bad_files: dict[str, Path], backend: str) -> None:
    with pytest.raises(VideoTooLargeError, match="64x32 exceeds"):
        open_video(bad_files["good"], DecodeConfig(backend=backend, max_pixels=32 * 32))


def test_default_pixel_limit_refuses_a_frame_larger_than_8k(tmp_path: Path) -> None:
    # One black 9000x4000 frame: more pixels than 8K UHD (7680x4320), refused before decoding.
    path = write_video(tmp_path / "huge.mkv", np.zeros((1, 4000, 9000, 3), dtype=np.uint8), fps=1)
    start = time.monotonic()
    with pytest.raises(VideoTooLargeError, match="9000x4000 exceeds"):
        open_video(path)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout_bounds_decoding_time(bad_files: dict[str, Path], backend: str) -> None:
    start = time.monotonic()
    with pytest.raises(DecodeTimeoutError) as info:
        read_frames(bad_files["good"], list(range(30)), DecodeConfig(backend=backend, timeout_s=0.0))
    assert time.monotonic() - start < 5
    assert str(bad_files["good"]) in str(info.value)


def test_truncated_streamable_file_pads_with_last_decodable_frame(tmp_path: Path) -> None:
    # Matroska keeps its header in front, so a cut file still opens; the frames lost at
    # the end are replaced by the last frame that decodes (documented padding rule),
    # the same one for every backend.
    full = write_indexed_video(tmp_path / "full.mkv", num_frames=60, gop=10)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    results = []
    for backend in BACKENDS:
        with open_video(cut, DecodeConfig(backend=backend)) as reader:
            assert reader.num_frames == 60  # what the header promises
            results.append([read_frame_index(f) for f in reader.get_frames([0, 10, 45, 59])])
    got = results[0]
    assert got[:2] == [0, 10]
    assert 10 < got[2] < 45 and got[3] == got[2]
    assert all(r == got for r in results)


def test_corrupted_middle_does_not_hang_or_crash(tmp_path: Path) -> None:
    good = write_indexed_video(tmp_path / "good.mp4", num_frames=60, gop=10)
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(0)
    lo, hi = len(data) // 3, 2 * len(data) // 3
    data[lo:hi] = rng.integers(0, 256, size=hi - lo, dtype=np.uint8).tobytes()
    bad = tmp_path / "garbled.mp4"
    bad.write_bytes(bytes(data))
    start = time.monotonic()
    for backend in BACKENDS:
        try:
            frames = read_frames(bad, [0, 30, 59], DecodeConfig(backend=backend, timeout_s=20))
            assert frames.shape == (3, 32, 64, 3)
        except VideoReadError as exc:
            assert str(bad) in str(exc)
    assert time.monotonic() - start < 30


def test_probe_cli_prints_one_json_object_per_file(bad_files: dict[str, Path]) -> None:
    files = [bad_files["good"], bad_files["text"], bad_files["missing"]]
    proc = subprocess.run(
        [sys.executable, "-m", "data.probe", *map(str, files)], capture_output=True, text=True, timeout=60
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 3 and proc.returncode == 1
    good, text, missing = lines
    assert "error" not in good
    assert good["num_frames"] == 30 and good["fps"] == 10.0 and good["codec"] == "h264"
    assert (good["width"], good["height"], good["rotation"]) == (64, 32, 0)
    assert good["duration_s"] == pytest.approx(3.0, abs=0.1)
    assert text["error_type"] == "NotAVideoError" and text["path"] == str(files[1]) and text["error"]
    assert missing["error_type"] == "VideoNotFoundError"
