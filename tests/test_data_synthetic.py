"""The synthetic temporal dataset: order-dependent captions, reproducibility, files on disk."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from data.decode import read_frames
from data.msrvtt import MSRVTTLayout, MSRVTTTestDataset, MSRVTTTrainDataset, read_test_pairs
from data.pairs import VideoTextPairsDataset
from data.sampling import SamplingConfig
from data.synthetic import (
    COLOURS,
    SceneEvent,
    ObjectState,
    SyntheticConfig,
    SyntheticTemporalDataset,
    make_item,
    make_scene,
    render_scene,
    write_synthetic_dataset,
)
from data.transforms import TransformConfig

CFG = SyntheticConfig(num_videos=24, seed=5, num_frames=12, height=32, width=32)


def test_same_seed_same_dataset_different_seed_different_dataset() -> None:
    a = [make_item(CFG, i) for i in range(6)]
    b = [make_item(CFG, i) for i in range(6)]
    assert [x.captions for x in a] == [y.captions for y in b]
    assert all(np.array_equal(x.frames, y.frames) for x, y in zip(a, b))
    other = SyntheticConfig(num_videos=24, seed=6, num_frames=12, height=32, width=32)
    assert [make_item(other, i).caption for i in range(6)] != [x.caption for x in a]


def test_pairs_have_identical_frame_sets_but_different_captions() -> None:
    """A model that pools frames without order cannot tell the members of a pair apart."""
    for pair in range(CFG.num_videos // 2):
        fwd, bwd = make_item(CFG, 2 * pair), make_item(CFG, 2 * pair + 1)
        assert np.array_equal(fwd.frames[::-1], bwd.frames)
        assert np.array_equal(fwd.frames.mean(axis=0), bwd.frames.mean(axis=0))
        assert fwd.caption != bwd.caption
        assert (fwd.pair_id, bwd.pair_id, fwd.is_reversed, bwd.is_reversed) == (pair, pair, False, True)


def test_captions_list_events_in_the_order_they_happen() -> None:
    for i in range(0, CFG.num_videos, 2):
        fwd, bwd = make_item(CFG, i), make_item(CFG, i + 1)
        f_events = fwd.scene.event_phrases()
        b_events = bwd.scene.event_phrases()
        assert 2 <= len(f_events) <= 3 and len(f_events) == len(b_events)
        assert fwd.caption == ", then ".join(f_events)
        # Reversed: the last event comes first, with the inverse verb.
        inverse = {"appears": "disappears", "disappears": "appears", "grows": "shrinks", "shrinks": "grows",
                   "moves left": "moves right", "moves right": "moves left", "moves up": "moves down", "moves down": "moves up"}
        last_verb = fwd.scene.events[-1].verb()
        if last_verb in inverse:
            assert b_events[0].endswith(inverse[last_verb])
        else:  # colour change: turns back to the colour it had
            assert b_events[0].endswith(f"turns {fwd.scene.events[-1].before.colour}")


def test_rendering_follows_the_scene_description() -> None:
    # One red square moving right from x=0.25 to x=0.55, then turning blue.
    start = ObjectState(0.25, 0.5, 0.14, "red")
    moved = ObjectState(0.55, 0.5, 0.14, "red")
    blue = ObjectState(0.55, 0.5, 0.14, "blue")
    from data.synthetic import SceneSpec

    scene = SceneSpec(("square",), (start,), (SceneEvent(0, start, moved), SceneEvent(0, moved, blue)))
    assert scene.captions()[0] == "a red square moves right, then a red square turns blue"
    frames = render_scene(scene, 8, 40, 40)
    red = np.array(COLOURS["red"])

    def centre_x(frame: np.ndarray, colour: np.ndarray) -> float:
        mask = np.abs(frame.astype(int) - colour).sum(-1) < 30
        return float(np.nonzero(mask)[1].mean())

    xs = [centre_x(frames[t], red) for t in range(4)]
    assert xs == sorted(xs) and xs[-1] - xs[0] > 6  # moving right during the first half
    last = frames[-1][20, 22]
    assert np.abs(last.astype(int) - np.array(COLOURS["blue"])).sum() < 60  # blue at the end
    assert scene.reversed().captions()[0] == "a blue square turns red, then a red square moves left"
    assert np.array_equal(render_scene(scene.reversed(), 8, 40, 40), frames[::-1])


def test_in_memory_dataset_gives_model_ready_tensors() -> None:
    ds = SyntheticTemporalDataset(CFG)
    sample = ds[3]
    assert sample.video.shape == (3, 12, 32, 32) and sample.video.dtype == torch.float32
    assert sample.caption == make_item(CFG, 3).caption == ds.captions[3]
    assert len(ds) == 24
    with pytest.raises(IndexError):
        ds[24]


def test_on_disk_dataset_with_msrvtt_layout(tmp_path: Path) -> None:
    cfg = SyntheticConfig(num_videos=8, seed=1, num_frames=8, height=32, width=32, fps=4)
    records = write_synthetic_dataset(tmp_path, cfg, msrvtt_layout=True, test_fraction=0.5)
    assert len(records) == 8
    for name in ("MSRVTT_data.json", "MSRVTT_JSFUSION_test.csv", "MSRVTT_train.9k.csv", "MSRVTT_train.7k.csv", "captions.jsonl"):
        assert (tmp_path / name).is_file()
    assert sorted(p.name for p in (tmp_path / "videos" / "all").iterdir()) == sorted(f"video{i}.mp4" for i in range(8))
    rows = [json.loads(x) for x in (tmp_path / "captions.jsonl").read_text().splitlines()]
    assert [r["video_id"] for r in rows] == [f"video{i}" for i in range(8)]
    # Whole forward/backward pairs go to the test split (the temporal test).
    test_pairs = read_test_pairs(tmp_path / "MSRVTT_JSFUSION_test.csv")
    assert [v for v, _ in test_pairs] == ["video4", "video5", "video6", "video7"]
    layout = MSRVTTLayout(str(tmp_path))
    train = MSRVTTTrainDataset(layout, "9k", SamplingConfig(4, "random"), TransformConfig(size=32))
    test = MSRVTTTestDataset(layout, SamplingConfig(4), TransformConfig(size=32))
    assert len(train) == 4 and len(test) == 4
    assert test.captions == [r["caption"] for r in rows[4:]]
    assert len(train.records[0].captions) == 3  # paraphrases, like MSR-VTT's many captions
    assert test[0].video.shape == (3, 4, 32, 32)
    # The encoded video matches the rendering (lossy, small error).
    decoded = read_frames(tmp_path / "videos" / "all" / "video5.mp4", range(8))
    rendered = make_item(cfg, 5).frames
    assert np.abs(decoded.astype(float) - rendered.astype(float)).mean() < 6


def test_cli_writes_videos_and_captions(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    proc = subprocess.run(
        [sys.executable, "-m", "data.synthetic", "--out", str(out), "--num", "4", "--seed", "3", "--frames", "8", "--size", "32"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["videos"] == 4
    ds = VideoTextPairsDataset(out / "captions.jsonl", SamplingConfig(8), TransformConfig(size=32))
    cfg = SyntheticConfig(num_videos=4, seed=3, num_frames=8, height=32, width=32)
    assert ds.captions == [make_item(cfg, i).caption for i in range(4)]
    assert ds[0].video.shape == (3, 8, 32, 32)
    assert re.fullmatch(r"(a \w+ \w+ [a-z ]+)(, then a \w+ \w+ [a-z ]+)+", ds.captions[0])


def test_scene_generation_covers_every_event_kind() -> None:
    cfg = SyntheticConfig(num_videos=200, seed=0)
    verbs = set()
    for i in range(0, 200, 2):
        scene, _, _ = make_scene(cfg, i)
        verbs.update(e.verb().split()[0] + (" " + e.verb().split()[1] if e.verb().startswith("moves") else "") for e in scene.events)
    assert {"appears", "disappears", "turns", "grows", "shrinks", "moves left", "moves right", "moves up", "moves down"} <= verbs
