"""Generic (video, caption[, start, end]) pairs from a JSONL or CSV file.

Accepted fields (first match wins):
    video path: ``video``, ``video_path``, ``path``
    caption:    ``caption``, ``text``, ``sentence``
    span (optional, seconds): ``start`` / ``start_s`` and ``end`` / ``end_s``
    id (optional): ``video_id``, ``id`` (default: file stem, plus ``@start-end`` for spans)

Relative video paths are resolved against ``video_root`` (default: the directory
of the pairs file).  Each row becomes one record with one caption; rows sharing
a video are kept as separate items.  Malformed rows raise ``ValueError`` naming
the file and line.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from data.dataset import VideoTextDataset
from data.decode_config import DecodeConfig
from data.records import VideoTextRecord
from data.sampling import SamplingConfig
from data.transforms import TransformConfig

_PATH_KEYS = ("video", "video_path", "path")
_CAPTION_KEYS = ("caption", "text", "sentence")
_START_KEYS = ("start", "start_s")
_END_KEYS = ("end", "end_s")
_ID_KEYS = ("video_id", "id")


def _first(row: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        value = row.get(k)
        if value is not None and value != "":
            return value
    return None


def _seconds(value: Any, where: str, name: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} {value!r} is not a number of seconds") from None


def _row_to_record(row: dict[str, Any], root: Path, where: str) -> VideoTextRecord:
    video = _first(row, _PATH_KEYS)
    caption = _first(row, _CAPTION_KEYS)
    if video is None:
        raise ValueError(f"{where}: no video path (one of {_PATH_KEYS})")
    if caption is None:
        raise ValueError(f"{where}: no caption (one of {_CAPTION_KEYS})")
    start = _seconds(_first(row, _START_KEYS), where, "start")
    end = _seconds(_first(row, _END_KEYS), where, "end")
    if start is not None and end is not None and end < start:
        raise ValueError(f"{where}: end {end} s is before start {start} s")
    path = Path(str(video)).expanduser()
    if not path.is_absolute():
        path = root / path
    video_id = _first(row, _ID_KEYS)
    if video_id is None:
        if start is None and end is None:
            video_id = path.stem
        else:
            end_text = f"{end:g}" if end is not None else "end"
            video_id = f"{path.stem}@{start or 0:g}-{end_text}"
    return VideoTextRecord(str(path), (str(caption).strip(),), str(video_id), start, end)


def read_pairs(path: str | os.PathLike[str], video_root: str | os.PathLike[str] | None = None) -> list[VideoTextRecord]:
    """Records from a ``.jsonl`` (one JSON object per line) or ``.csv`` (with header) file.

    The format is chosen by the suffix (``.jsonl``/``.json`` vs ``.csv``/``.tsv``).
    """
    p = Path(path)
    root = Path(video_root) if video_root is not None else p.parent
    suffix = p.suffix.lower()
    records: list[VideoTextRecord] = []
    if suffix in (".jsonl", ".json", ".ndjson"):
        with p.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = f"{p}:{lineno}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{where}: invalid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{where}: expected a JSON object")
                records.append(_row_to_record(row, root, where))
    elif suffix in (".csv", ".tsv"):
        with p.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            for lineno, row in enumerate(reader, start=2):
                records.append(_row_to_record(row, root, f"{p}:{lineno}"))
    else:
        raise ValueError(f"{p}: unknown pairs format {suffix!r} (use .jsonl or .csv)")
    return records


class VideoTextPairsDataset(VideoTextDataset):
    """A :class:`data.dataset.VideoTextDataset` over the pairs of one JSONL/CSV file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        sampling: SamplingConfig | None = None,
        transform: TransformConfig | None = None,
        decode: DecodeConfig | None = None,
        video_root: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path = str(path)
        super().__init__(read_pairs(path, video_root), sampling, transform, decode, "first")


__all__ = ["VideoTextPairsDataset", "read_pairs"]
