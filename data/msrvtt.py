"""MSR-VTT in the files everyone uses (the CLIP4Clip / JSFusion layout).

* ``MSRVTT_train.9k.csv`` or ``MSRVTT_train.7k.csv``: header ``video_id``, one id per row.
* ``MSRVTT_data.json``: ``{"videos": [{"video_id", ..., "split"}],
  "sentences": [{"video_id", "caption", "sen_id"}]}``, ~20 captions per video.
* ``MSRVTT_JSFUSION_test.csv``: the 1k-A test split, header
  ``key,vid_key,video_id,sentence``, one caption per video.
* videos ``{video_id}.mp4``, falling back to ``{video_id}.webm``.

:class:`MSRVTTLayout` holds the paths (defaults relative to one root directory);
:class:`MSRVTTTrainDataset` gives one item per training video with a random one of
its captions each time (``caption_mode="random"``, the default) or one item per
caption (``"all"``); :class:`MSRVTTTestDataset` gives the 1000 test pairs in file order.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from data.dataset import CaptionMode, VideoTextDataset
from data.decode_config import DecodeConfig
from data.records import VideoTextRecord
from data.sampling import SamplingConfig
from data.transforms import TransformConfig

logger = logging.getLogger(__name__)

TrainSplit = Literal["9k", "7k"]
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".webm")


@dataclass(frozen=True)
class MSRVTTLayout:
    """Paths of the MSR-VTT files; unset paths default to names under ``root``.

    Defaults: ``root/MSRVTT_train.{9k,7k}.csv``, ``root/MSRVTT_data.json``,
    ``root/MSRVTT_JSFUSION_test.csv``, videos in ``root/videos/all``.
    """

    root: str
    video_dir: str | None = None
    data_json: str | None = None
    test_csv: str | None = None
    train_csv_9k: str | None = None
    train_csv_7k: str | None = None

    def _path(self, value: str | None, default: str) -> Path:
        return Path(value) if value is not None else Path(self.root) / default

    @property
    def videos(self) -> Path:
        return self._path(self.video_dir, "videos/all")

    @property
    def captions_json(self) -> Path:
        return self._path(self.data_json, "MSRVTT_data.json")

    @property
    def test(self) -> Path:
        return self._path(self.test_csv, "MSRVTT_JSFUSION_test.csv")

    def train_csv(self, split: TrainSplit = "9k") -> Path:
        if split == "9k":
            return self._path(self.train_csv_9k, "MSRVTT_train.9k.csv")
        if split == "7k":
            return self._path(self.train_csv_7k, "MSRVTT_train.7k.csv")
        raise ValueError(f"split must be '9k' or '7k', got {split!r}")


def resolve_video_path(video_dir: str | os.PathLike[str], video_id: str) -> Path:
    """``video_dir/{video_id}.mp4`` if it exists, else ``.webm`` if that exists, else the ``.mp4`` path
    (so the dataset reports it as missing)."""
    base = Path(video_dir)
    for ext in VIDEO_EXTENSIONS:
        candidate = base / f"{video_id}{ext}"
        if candidate.is_file():
            return candidate
    return base / f"{video_id}{VIDEO_EXTENSIONS[0]}"


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MSR-VTT file not found")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; header is {reader.fieldnames}")
        return list(reader)


def read_train_ids(csv_path: str | os.PathLike[str]) -> list[str]:
    """Video ids of a ``MSRVTT_train.{9k,7k}.csv`` (header ``video_id``), in file order."""
    return [row["video_id"].strip() for row in _read_csv(Path(csv_path), ("video_id",))]


def read_captions(json_path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """All captions per video id from ``MSRVTT_data.json``, ordered by ``sen_id``."""
    path = Path(json_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MSR-VTT file not found")
    with path.open(encoding="utf-8") as fh:
        data = json.load(fh)
    if "sentences" not in data:
        raise ValueError(f"{path}: no 'sentences' list")
    grouped: dict[str, list[tuple[int, str]]] = {}
    for i, s in enumerate(data["sentences"]):
        grouped.setdefault(str(s["video_id"]), []).append((int(s.get("sen_id", i)), str(s["caption"]).strip()))
    return {vid: [c for _, c in sorted(caps)] for vid, caps in grouped.items()}


def read_test_pairs(csv_path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(video_id, sentence)`` rows of ``MSRVTT_JSFUSION_test.csv``, in file order."""
    rows = _read_csv(Path(csv_path), ("video_id", "sentence"))
    return [(row["video_id"].strip(), row["sentence"].strip()) for row in rows]


def load_train_records(layout: MSRVTTLayout, split: TrainSplit = "9k") -> list[VideoTextRecord]:
    """One record per training video with all its captions.  Videos without captions are dropped (logged)."""
    ids = read_train_ids(layout.train_csv(split))
    captions = read_captions(layout.captions_json)
    records, missing = [], []
    for vid in ids:
        caps = captions.get(vid)
        if not caps:
            missing.append(vid)
            continue
        records.append(VideoTextRecord(str(resolve_video_path(layout.videos, vid)), tuple(caps), vid))
    if missing:
        logger.warning("%d training videos have no caption in %s (e.g. %s)", len(missing), layout.captions_json, missing[:3])
    return records


def load_test_records(layout: MSRVTTLayout) -> list[VideoTextRecord]:
    """The 1k-A test pairs, one record (one caption) per row, in file order."""
    return [
        VideoTextRecord(str(resolve_video_path(layout.videos, vid)), (sentence,), vid)
        for vid, sentence in read_test_pairs(layout.test)
    ]


class MSRVTTTrainDataset(VideoTextDataset):
    """MSR-VTT training videos (9k or 7k split) with their captions.

    Items: :class:`data.dataset.VideoTextSample` (or ``SkippedSample`` for unreadable videos).
    Default sampling is "random" frames within segments and a random caption per item.
    """

    def __init__(
        self,
        layout: MSRVTTLayout,
        split: TrainSplit = "9k",
        sampling: SamplingConfig | None = None,
        transform: TransformConfig | None = None,
        decode: DecodeConfig | None = None,
        caption_mode: CaptionMode = "random",
    ) -> None:
        self.layout = layout
        self.split = split
        super().__init__(
            load_train_records(layout, split),
            sampling or SamplingConfig(num_frames=8, mode="random"),
            transform,
            decode,
            caption_mode,
        )


class MSRVTTTestDataset(VideoTextDataset):
    """The MSR-VTT 1k-A (JSFusion) test split: 1000 (video, caption) pairs, "middle" sampling."""

    def __init__(
        self,
        layout: MSRVTTLayout,
        sampling: SamplingConfig | None = None,
        transform: TransformConfig | None = None,
        decode: DecodeConfig | None = None,
    ) -> None:
        self.layout = layout
        super().__init__(load_test_records(layout), sampling or SamplingConfig(num_frames=8, mode="middle"), transform, decode, "first")


__all__ = [
    "MSRVTTLayout",
    "MSRVTTTestDataset",
    "MSRVTTTrainDataset",
    "TrainSplit",
    "read_captions",
    "read_test_pairs",
    "read_train_ids",
    "resolve_video_path",
    "load_test_records",
    "load_train_records",
]
