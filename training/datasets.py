"""Training datasets and retrieval evaluation sets, built from the ``data`` package.

Training items are :class:`data.dataset.VideoTextSample` (``video`` float32
``(3, T, H, W)``, ``caption``, ``video_id``) or ``SkippedSample`` for unreadable files,
batched by :func:`data.loader.collate_video_text`.

An evaluation set (:class:`RetrievalEvalSet`) separates the gallery from the queries:
one dataset item per distinct video, and a flat caption list with the index of each
caption's video, so several captions per video are handled by the metrics.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from data.dataset import VideoTextDataset
from data.msrvtt import MSRVTTLayout, MSRVTTTrainDataset, load_test_records, load_train_records
from data.pairs import VideoTextPairsDataset, read_pairs
from data.records import VideoTextRecord
from data.sampling import SamplingConfig
from data.synthetic import SyntheticConfig, SyntheticTemporalDataset, make_scene
from data.transforms import TransformConfig
from training.config import DataConfig
from encoders.dual_encoder import DualEncoderConfig

logger = logging.getLogger(__name__)


@dataclass
class RetrievalEvalSet:
    """A retrieval test set.

    Attributes:
        videos: dataset whose item ``i`` is video ``i`` (a ``VideoTextSample``; its caption
            is ignored) or a ``SkippedSample`` when the file cannot be read.
        video_ids: ``len(videos)`` ids.
        captions: all query captions.
        text_to_video: int64 ``(len(captions),)``: index into ``videos`` of each caption's video.
        name: a label for logs and result files.
        twin: optional int64 ``(len(videos),)``: index of the video that shows the same
            frames in reverse order (synthetic forward/backward pairs), -1 for none.
            Used for the order-sensitivity score of :mod:`training.retrieval_eval`.
    """

    videos: Dataset
    video_ids: list[str]
    captions: list[str]
    text_to_video: np.ndarray
    name: str = "eval"
    twin: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.text_to_video = np.asarray(self.text_to_video, dtype=np.int64)
        if self.twin is not None:
            self.twin = np.asarray(self.twin, dtype=np.int64)
            if self.twin.shape != (len(self.video_ids),):
                raise ValueError("twin must have one entry per video")
        if len(self.video_ids) != len(self.videos):  # type: ignore[arg-type]
            raise ValueError(f"{len(self.video_ids)} video ids for {len(self.videos)} videos")  # type: ignore[arg-type]
        if self.text_to_video.shape != (len(self.captions),):
            raise ValueError("text_to_video must have one entry per caption")
        if len(self.captions) and (self.text_to_video.min() < 0 or self.text_to_video.max() >= len(self.video_ids)):
            raise ValueError("text_to_video points outside the video list")


def _eval_transform(model: DualEncoderConfig) -> TransformConfig:
    # The model's own test preprocessing (e.g. OpenGVLab's square resize, no crop).
    return model.transform_config()


def records_to_eval_set(records: Sequence[VideoTextRecord], model: DualEncoderConfig, name: str,
                        captions: str = "all") -> RetrievalEvalSet:
    """Group records by video (path and span) and build the eval set ("middle" sampling,
    the model's frame count and size). ``captions``: "all" or "first" per video."""
    grouped: "OrderedDict[tuple, list[VideoTextRecord]]" = OrderedDict()
    for record in records:
        grouped.setdefault((record.video_path, record.start_s, record.end_s), []).append(record)
    videos: list[VideoTextRecord] = []
    texts: list[str] = []
    owners: list[int] = []
    for position, group in enumerate(grouped.values()):
        all_captions = [c for r in group for c in r.captions]
        videos.append(VideoTextRecord(group[0].video_path, tuple(all_captions), group[0].video_id,
                                      group[0].start_s, group[0].end_s, dict(group[0].meta)))
        chosen = all_captions if captions == "all" else all_captions[:1]
        texts.extend(chosen)
        owners.extend([position] * len(chosen))
    dataset = VideoTextDataset(videos, SamplingConfig(num_frames=model.num_frames, mode="middle"),
                               _eval_transform(model), caption_mode="first")
    return RetrievalEvalSet(dataset, [v.video_id for v in videos], texts, np.array(owners), name,
                            _twins_from_pair_ids(videos))


def _twins_from_pair_ids(videos: Sequence[VideoTextRecord]) -> Optional[np.ndarray]:
    """Twin indices from ``meta["pair_id"]`` (synthetic data); None when no video has one."""
    members: dict[object, list[int]] = {}
    for position, video in enumerate(videos):
        if "pair_id" in video.meta:
            members.setdefault(video.meta["pair_id"], []).append(position)
    if not members:
        return None
    twin = np.full(len(videos), -1, dtype=np.int64)
    for group in members.values():
        if len(group) == 2:
            twin[group[0]], twin[group[1]] = group[1], group[0]
    return twin


def synthetic_config(data: DataConfig, model: DualEncoderConfig, num_videos: int, seed: int) -> SyntheticConfig:
    """Synthetic clips rendered at the model's frame count and resolution."""
    return SyntheticConfig(num_videos=num_videos, seed=seed, num_frames=model.num_frames,
                           height=model.img_size, width=model.img_size,
                           min_events=data.synthetic_min_events, max_events=data.synthetic_max_events)


def synthetic_eval_set(data: DataConfig, model: DualEncoderConfig, max_videos: Optional[int] = None) -> RetrievalEvalSet:
    """The held-out synthetic split (seed ``synthetic_eval_seed``) in memory; every video's
    paraphrases are its captions (or only the main one with ``eval_captions: first``)."""
    count = data.synthetic_eval_videos if max_videos is None else min(max_videos, data.synthetic_eval_videos)
    config = synthetic_config(data, model, count, data.synthetic_eval_seed)
    dataset = SyntheticTemporalDataset(config, TransformConfig(size=model.img_size))
    texts: list[str] = []
    owners: list[int] = []
    for index in range(count):
        paraphrases = make_scene(config, index)[0].captions()
        chosen = paraphrases if data.eval_captions == "all" else paraphrases[:1]
        texts.extend(chosen)
        owners.extend([index] * len(chosen))
    twin = np.array([i ^ 1 if i ^ 1 < count else -1 for i in range(count)]) if config.reversed_pairs else None
    return RetrievalEvalSet(dataset, [f"video{i}" for i in range(count)], texts, np.array(owners),
                            f"synthetic(seed={data.synthetic_eval_seed})", twin)


def build_train_dataset(data: DataConfig, model: DualEncoderConfig) -> Dataset:
    """The training dataset named by ``data.dataset`` at the model's frames and size."""
    sampling = SamplingConfig(num_frames=model.num_frames, mode=data.train_sampling)
    transform = model.transform_config()
    if data.dataset == "synthetic":
        config = synthetic_config(data, model, data.synthetic_train_videos, data.synthetic_seed)
        return SyntheticTemporalDataset(config, transform)
    if data.dataset == "pairs":
        return VideoTextPairsDataset(data.train_file, sampling, transform, video_root=data.root)
    if data.dataset == "msrvtt":
        return MSRVTTTrainDataset(MSRVTTLayout(data.root), data.msrvtt_train_split, sampling, transform)
    raise ValueError(f"unknown dataset {data.dataset!r}")


def build_eval_set(data: DataConfig, model: DualEncoderConfig, max_videos: Optional[int] = None) -> Optional[RetrievalEvalSet]:
    """The held-out split for periodic evaluation, or None when the dataset has none
    ("pairs" without ``eval_file``)."""
    if data.dataset == "synthetic":
        return synthetic_eval_set(data, model, max_videos)
    if data.dataset == "pairs":
        if not data.eval_file:
            return None
        records = read_pairs(data.eval_file, data.root)
        name = f"pairs({data.eval_file})"
    elif data.dataset == "msrvtt":
        records = load_test_records(MSRVTTLayout(data.root))
        name = "msrvtt-1kA"
    else:
        raise ValueError(f"unknown dataset {data.dataset!r}")
    eval_set = records_to_eval_set(records, model, name, data.eval_captions)
    return limit_eval_set(eval_set, max_videos)


def limit_eval_set(eval_set: RetrievalEvalSet, max_videos: Optional[int]) -> RetrievalEvalSet:
    """The first ``max_videos`` videos and their captions (None: unchanged)."""
    if max_videos is None or max_videos >= len(eval_set.video_ids):
        return eval_set
    from torch.utils.data import Subset

    keep = eval_set.text_to_video < max_videos
    twin = None
    if eval_set.twin is not None:
        twin = eval_set.twin[:max_videos].copy()
        twin[twin >= max_videos] = -1
    return RetrievalEvalSet(Subset(eval_set.videos, range(max_videos)), eval_set.video_ids[:max_videos],
                            [c for c, k in zip(eval_set.captions, keep) if k], eval_set.text_to_video[keep],
                            eval_set.name, twin)


def train_caption_bank(data: DataConfig, model: DualEncoderConfig, limit: int = 5000) -> list[str]:
    """Training captions used as the QB-Norm query bank (at most ``limit``)."""
    if data.dataset == "synthetic":
        config = synthetic_config(data, model, min(limit, data.synthetic_train_videos), data.synthetic_seed)
        return [make_scene(config, i)[0].captions()[0] for i in range(config.num_videos)]
    if data.dataset == "pairs":
        return [r.captions[0] for r in read_pairs(data.train_file, data.root)][:limit]
    records = load_train_records(MSRVTTLayout(data.root), data.msrvtt_train_split)
    return [c for r in records for c in r.captions][:limit]


# ------------------------------------------------------------ on-disk evaluation


def synthetic_disk_records(root: str | Path, split: Optional[str]) -> tuple[list[VideoTextRecord], str]:
    """Records of a dataset written by ``python -m data.synthetic`` (``captions.jsonl``).

    ``split`` "train", "test" or "all"; None means "test" if the file has a test split,
    else all rows. Returns the records (all paraphrases as captions) and the split used.
    """
    root = Path(root)
    path = root / "captions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; write the dataset with python -m data.synthetic --out {root}")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    splits = {row.get("split", "train") for row in rows}
    if split is None:
        split = "test" if "test" in splits else "all"
    if split != "all":
        rows = [row for row in rows if row.get("split", "train") == split]
        if not rows:
            raise ValueError(f"{path} has no rows of split {split!r} (splits present: {sorted(splits)})")
    records = [VideoTextRecord(str(root / row["video"]), tuple(row.get("captions") or [row["caption"]]),
                               row["video_id"], meta={"pair_id": row["pair_id"]} if "pair_id" in row else {})
               for row in rows]
    return records, split


def disk_eval_set(dataset: str, root: str, model: DualEncoderConfig, split: Optional[str] = None,
                  pairs_file: Optional[str] = None, captions: str = "all") -> RetrievalEvalSet:
    """An evaluation set read from files, for ``python -m training.evaluate``.

    Args:
        dataset: "msrvtt" (1k-A test split under ``root``), "pairs" (``pairs_file``, default
            ``root/pairs.jsonl``) or "synthetic" (``root/captions.jsonl``, see
            :func:`synthetic_disk_records`).
        split: "synthetic" only; see :func:`synthetic_disk_records`.
    """
    if dataset == "msrvtt":
        records, name = load_test_records(MSRVTTLayout(root)), "msrvtt-1kA"
    elif dataset == "pairs":
        path = Path(pairs_file) if pairs_file else Path(root) / "pairs.jsonl"
        records, name = read_pairs(path, root if pairs_file else None), f"pairs({path})"
    elif dataset == "synthetic":
        records, used = synthetic_disk_records(root, split)
        name = f"synthetic({root}, split={used})"
    else:
        raise ValueError(f"unknown dataset {dataset!r}; expected msrvtt, pairs or synthetic")
    return records_to_eval_set(records, model, name, captions)


__all__ = [
    "RetrievalEvalSet",
    "build_eval_set",
    "build_train_dataset",
    "disk_eval_set",
    "limit_eval_set",
    "records_to_eval_set",
    "synthetic_config",
    "synthetic_disk_records",
    "synthetic_eval_set",
    "train_caption_bank",
]
