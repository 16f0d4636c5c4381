"""Frame sampling and transforms (pure functions, no video files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data.sampling import SamplingConfig, sample_frame_indices, span_to_frame_range
from data.transforms import IMAGENET_MEAN, IMAGENET_STD, TransformConfig, frames_to_tensor, output_shape, tensor_to_frames


def test_middle_takes_segment_centres() -> None:
    # 100 frames, 4 segments of 25: centres at 12.5, 37.5, 62.5, 87.5.
    assert sample_frame_indices(100, 25.0, SamplingConfig(4, "middle")) == [12, 37, 62, 87]


def test_middle_is_deterministic_and_sorted() -> None:
    cfg = SamplingConfig(16, "middle")
    a = sample_frame_indices(1000, 30.0, cfg)
    assert a == sample_frame_indices(1000, 30.0, cfg)
    assert a == sorted(a) and len(set(a)) == 16 and 0 <= a[0] and a[-1] < 1000


def test_random_stays_inside_its_segment_and_varies() -> None:
    cfg = SamplingConfig(5, "random")
    rng = np.random.default_rng(0)
    draws = [sample_frame_indices(100, 25.0, cfg, rng=rng) for _ in range(50)]
    for draw in draws:
        for k, index in enumerate(draw):
            assert 20 * k <= index < 20 * (k + 1)
    assert len({tuple(d) for d in draws}) > 10


def test_random_is_reproducible_with_a_seeded_generator() -> None:
    cfg = SamplingConfig(8, "random")
    a = sample_frame_indices(500, 30.0, cfg, rng=np.random.default_rng(7))
    b = sample_frame_indices(500, 30.0, cfg, rng=np.random.default_rng(7))
    assert a == b


def test_fixed_fps_sampling() -> None:
    # 10 s at 30 fps, 2 frames/s -> 20 frames every 15 frames.
    idx = sample_frame_indices(300, 30.0, SamplingConfig(mode="fps", target_fps=2.0))
    assert idx == list(range(0, 300, 15))
    capped = sample_frame_indices(300, 30.0, SamplingConfig(mode="fps", target_fps=2.0, max_frames=5))
    assert len(capped) == 5 and capped == sorted(capped)


def test_time_span_selects_frames_inside_it() -> None:
    # 30 fps, span [2 s, 4 s) = frames 60..119.
    assert span_to_frame_range(300, 30.0, 2.0, 4.0) == (60, 60)
    idx = sample_frame_indices(300, 30.0, SamplingConfig(4, "middle"), start_s=2.0, end_s=4.0)
    assert idx == [67, 82, 97, 112]
    idx = sample_frame_indices(300, 30.0, SamplingConfig(mode="fps", target_fps=1.0), start_s=2.0, end_s=4.0)
    assert idx == [60, 90]


def test_span_outside_video_is_clamped() -> None:
    assert span_to_frame_range(100, 10.0, 5.0, 50.0) == (50, 50)
    assert span_to_frame_range(100, 10.0, 20.0, 30.0) == (99, 1)
    assert span_to_frame_range(100, 10.0, 3.0, 3.01) == (30, 1)  # shorter than a frame
    with pytest.raises(ValueError):
        span_to_frame_range(100, 10.0, 4.0, 3.0)
    with pytest.raises(ValueError):
        span_to_frame_range(0, 10.0)


def test_padding_rule_repeats_frames_in_order() -> None:
    # 3 frames, 8 wanted: every frame repeated, order kept, exactly 8 indices.
    idx = sample_frame_indices(3, 10.0, SamplingConfig(8, "middle"))
    assert idx == [0, 0, 0, 1, 1, 2, 2, 2]
    rnd = sample_frame_indices(3, 10.0, SamplingConfig(8, "random"), rng=np.random.default_rng(1))
    assert len(rnd) == 8 and rnd == sorted(rnd) and set(rnd) <= {0, 1, 2}
    assert sample_frame_indices(1, 10.0, SamplingConfig(4, "middle")) == [0, 0, 0, 0]


def test_bad_sampling_config_is_rejected() -> None:
    with pytest.raises(ValueError):
        SamplingConfig(0)
    with pytest.raises(ValueError):
        SamplingConfig(8, "uniformish")  # type: ignore[arg-type]


def _frames(t: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def test_short_side_resize_with_centre_crop() -> None:
    x = frames_to_tensor(_frames(3, 48, 80), TransformConfig(size=24))
    assert x.shape == (3, 3, 24, 24) and x.dtype == torch.float32


def test_short_side_resize_without_crop_keeps_aspect() -> None:
    cfg = TransformConfig(size=24, center_crop=False)
    x = frames_to_tensor(_frames(2, 48, 80), cfg)
    assert x.shape == (3, 2, 24, 40) == (3, 2, *output_shape(48, 80, cfg))
    y = frames_to_tensor(_frames(2, 80, 48), cfg)
    assert y.shape == (3, 2, 40, 24)


def test_square_resize() -> None:
    x = frames_to_tensor(_frames(2, 48, 80), TransformConfig(size=32, resize="square", center_crop=False))
    assert x.shape == (3, 2, 32, 32)


def test_normalisation_uses_imagenet_statistics() -> None:
    frames = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    frames[..., 0] = 255  # pure red
    x = frames_to_tensor(frames, TransformConfig(size=8))
    expected = [(1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], -IMAGENET_MEAN[1] / IMAGENET_STD[1], -IMAGENET_MEAN[2] / IMAGENET_STD[2]]
    for c in range(3):
        assert torch.allclose(x[c], torch.full_like(x[c], expected[c]), atol=1e-5)
    raw = frames_to_tensor(frames, TransformConfig(size=8, normalize=False))
    assert float(raw[0].min()) == 1.0 and float(raw[1].max()) == 0.0


def test_channels_first_layout_keeps_frame_order() -> None:
    frames = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    for t in range(4):
        frames[t] = 60 * t
    x = frames_to_tensor(frames, TransformConfig(size=8, normalize=False))
    assert [round(float(x[:, t].mean()) * 255) for t in range(4)] == [0, 60, 120, 180]


def test_bicubic_resize_of_flat_image_is_flat_and_roundtrips() -> None:
    frames = np.full((2, 40, 60, 3), 100, dtype=np.uint8)
    x = frames_to_tensor(frames, TransformConfig(size=20))
    back = tensor_to_frames(x, TransformConfig(size=20))
    assert back.shape == (2, 20, 20, 3)
    assert np.abs(back.astype(int) - 100).max() <= 1


def test_transform_rejects_wrong_layout() -> None:
    with pytest.raises(ValueError):
        frames_to_tensor(np.zeros((3, 8, 8), dtype=np.uint8))
