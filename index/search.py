"""Search API over a library, and its CLI.

    engine = SearchEngine("library.db")                    # model: the one the library was built with
    page = engine.search_text("a dog catches a frisbee", k=10)
    for hit in page.items: print(hit.path, hit.start_s, hit.end_s, hit.score)
    engine.search_text("...", group_by_video=True, filters=SearchFilters(path_prefix="/videos/2023"))
    engine.video_to_texts("clip.mp4", start_s=5, end_s=15)      # captions of the corpora
    engine.similar_segments("clip.mp4", start_s=5, end_s=15)    # video-to-video

CLI (JSON on stdout)::

    python -m index.search --db library.db text "a red circle moves left" [-k 10] [--offset 0] [--group]
           [--thumbnails] [--path-prefix DIR] [--min-duration S] [--max-duration S]
           [--indexed-after ISO] [--indexed-before ISO]
    python -m index.search --db library.db video FILE [--start S --end S] (--texts | --segments) [-k 10]
    python -m index.search --db library.db stats

Ranking: inner product of the query embedding and the stored vectors (module doc of
``index.encoder``). Segment hits of one video whose spans overlap or lie within
``merge_gap_s`` of each other are merged into one span (score = best member).
Pagination is over these merged spans (or videos with ``group_by_video``); FAISS is
asked for more candidates until a page can be filled. Filters are applied inside
FAISS through an ID selector built from the database, so a selective filter still
returns full pages.

Thread-safe: concurrent calls are fine, also while another process (or thread)
indexes the same library: each call first catches up with committed changes (at
most every ``refresh_interval_s``) and reads metadata from a WAL snapshot; hits
whose rows disappeared meanwhile are dropped.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Sequence, TypeVar

import numpy as np
from sqlalchemy import select

from index.encoder import Encoder, EncoderConfig, default_model_path
from index.errors import (
    EmptyQueryError,
    InvalidQueryError,
    LibraryError,
    ModelMismatchError,
    NotInLibraryError,
    QueryTooLongError,
)
from index.schema import SPACE_SEGMENTS, SPACE_TEXTS, SPACE_VIDEOS, STATUS_INDEXED, Segment, TextEntry, Video, bytes_to_embeddings
from index.store import LibraryConfig, LibraryStore
from index.thumbnails import ThumbnailConfig, cached_thumbnail
from index.walk import stat_entry

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class SearchConfig:
    """Limits and behaviour of the engine.

    Attributes:
        max_query_chars: longer text queries raise :class:`QueryTooLongError`.
        max_k: largest page size.
        max_offset: deepest pagination offset.
        merge_gap_s: hits of one video closer than this (seconds) are merged (0 = touching or overlapping).
        overfetch: FAISS candidates fetched per wanted result at first.
        thumbnails: size/quality/cache folder of thumbnails.
    """

    max_query_chars: int = 1000
    max_k: int = 1000
    max_offset: int = 10_000
    merge_gap_s: float = 0.0
    overfetch: int = 4
    thumbnails: ThumbnailConfig = field(default_factory=ThumbnailConfig)


@dataclass(frozen=True)
class SearchFilters:
    """Restrictions on the videos searched (all optional; datetimes are naive UTC).

    ``path_prefix`` matches whole path components: "/v/a" matches "/v/a/x.mp4" and
    "/v/a" itself, not "/v/ab.mp4".
    """

    path_prefix: str | None = None
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    indexed_after: datetime | None = None
    indexed_before: datetime | None = None

    def is_empty(self) -> bool:
        return all(v is None for v in asdict(self).values())


@dataclass(frozen=True)
class SegmentHit:
    """A time span of one video (one segment or several merged ones)."""

    video_id: int
    path: str
    start_s: float
    end_s: float
    score: float
    segment_ids: tuple[int, ...]
    video_duration_s: float | None = None
    thumbnail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VideoHit:
    """A video with its matching spans (best first); ``score`` is the best span's."""

    video_id: int
    path: str
    score: float
    duration_s: float | None
    spans: tuple[SegmentHit, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TextHit:
    """A caption of a loaded corpus."""

    text_id: int
    text: str
    source: str
    external_id: str | None
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchPage(Generic[T]):
    """One page of results: ``items[i]`` is result number ``offset + i`` (0-based)."""

    items: list[T]
    offset: int
    limit: int
    has_more: bool

    def to_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "limit": self.limit, "has_more": self.has_more,
                "items": [item.to_dict() for item in self.items]}  # type: ignore[attr-defined]


def validate_text_query(query: object, max_chars: int = 1000) -> str:
    """The cleaned query (NFC, stripped), or a :class:`QueryError` subclass saying what is wrong."""
    if isinstance(query, (bytes, bytearray, memoryview)):
        raise InvalidQueryError("the query must be text, not bytes")
    if not isinstance(query, str):
        raise InvalidQueryError(f"the query must be text, not {type(query).__name__}")
    text = unicodedata.normalize("NFC", query).strip()
    if not text:
        raise EmptyQueryError("the query is empty")
    if len(text) > max_chars:
        raise QueryTooLongError(f"the query has {len(text)} characters; the limit is {max_chars}")
    for ch in text:
        category = unicodedata.category(ch)
        if (category == "Cc" and ch not in "\t\n\r") or category in ("Cs", "Co", "Cn"):
            raise InvalidQueryError(f"the query contains a non-text character (U+{ord(ch):04X})")
    if not any(unicodedata.category(ch)[0] in "LN" for ch in text):
        raise InvalidQueryError("the query contains no letters or digits")
    return text


def _check_page(k: int, offset: int, config: SearchConfig) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= config.max_k:
        raise InvalidQueryError(f"k must be an integer from 1 to {config.max_k}, got {k!r}")
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= config.max_offset:
        raise InvalidQueryError(f"offset must be an integer from 0 to {config.max_offset}, got {offset!r}")


def merge_hits(hits: list[SegmentHit], gap_s: float = 0.0) -> list[SegmentHit]:
    """Merge hits of the same video whose spans overlap or are within ``gap_s``; best score first."""
    by_video: dict[int, list[SegmentHit]] = {}
    for hit in hits:
        by_video.setdefault(hit.video_id, []).append(hit)
    merged: list[SegmentHit] = []
    for group in by_video.values():
        group.sort(key=lambda h: (h.start_s, h.end_s))
        current = group[0]
        for hit in group[1:]:
            if hit.start_s <= current.end_s + gap_s:
                current = SegmentHit(current.video_id, current.path, current.start_s, max(current.end_s, hit.end_s),
                                     max(current.score, hit.score), current.segment_ids + hit.segment_ids,
                                     current.video_duration_s)
            else:
                merged.append(current)
                current = hit
        merged.append(current)
    merged.sort(key=lambda h: (-h.score, h.video_id, h.start_s))
    return merged


class SearchEngine:
    """Read-only search over one library (see module doc). Use as a context manager or call :meth:`close`.

    Args:
        library: a :class:`LibraryConfig`, or the database path/URL.
        model: checkpoint path or a loaded :class:`Encoder`; None = the checkpoint the
            library recorded (if that file exists), else ``DEFAULT_MODEL_PATH``.
        config: limits and behaviour.
        device: torch device for the query encoder (None = CUDA if available).

    Raises:
        ModelMismatchError: the model is not the one the library was built with.
        LibraryError: no library at that location.
    """

    def __init__(self, library: LibraryConfig | str, model: str | Encoder | None = None,
                 config: SearchConfig | None = None, device: str | None = None) -> None:
        self.library_config = library if isinstance(library, LibraryConfig) else LibraryConfig(db=str(library))
        self.config = config or SearchConfig()
        self.store = LibraryStore(self.library_config, writable=False)
        try:
            recorded = self.store.library_model()
            if isinstance(model, Encoder):
                self.encoder = model
            else:
                path = model
                if path is None:
                    path = recorded.checkpoint_path if recorded and Path(recorded.checkpoint_path).is_file() \
                        else default_model_path()
                self.encoder = Encoder(EncoderConfig(checkpoint=str(path), device=device))
            self.store.check_model(self.encoder.info)
        except BaseException:
            self.store.close()
            raise
        folder = self.config.thumbnails.folder
        self.thumbnail_folder = Path(folder) if folder else self.store.vectors_dir / f"{self.store.stem}.thumbs"

    def __enter__(self) -> "SearchEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------- embedding

    def _check_library_model(self) -> None:
        current = self.store.model
        if current is not None and current.fingerprint != self.encoder.info.fingerprint:
            raise ModelMismatchError(current.describe(), self.encoder.info.describe(),
                                     self.store.reindex_command(self.encoder.info.checkpoint_path))

    def embed_text(self, query: object) -> np.ndarray:
        """The ``(D,)`` embedding of a validated text query."""
        text = validate_text_query(query, self.config.max_query_chars)
        return self.encoder.encode_texts([text])[0]  # thread-safe: the encoder serialises forward passes

    def embed_video(self, path: str | os.PathLike[str], start_s: float | None = None,
                    end_s: float | None = None) -> np.ndarray:
        """The ``(D,)`` embedding of a file (or its span), decoded like indexed segments.

        Raises:
            InvalidQueryError: not a regular file, or a bad span.
            data.errors.VideoReadError: the file cannot be decoded.
        """
        from data.clip import load_clip

        if not isinstance(path, (str, os.PathLike)):
            raise InvalidQueryError(f"the video must be a file path, not {type(path).__name__}")
        entry = stat_entry(os.path.abspath(os.fspath(path)))
        if entry is None:
            raise InvalidQueryError(f"not a regular video file: {os.fspath(path)!r}")
        for name, value in (("start_s", start_s), ("end_s", end_s)):
            if value is not None and (not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0):
                raise InvalidQueryError(f"{name} must be a finite number >= 0, got {value!r}")
        if start_s is not None and end_s is not None and end_s <= start_s:
            raise InvalidQueryError(f"end_s ({end_s}) must be after start_s ({start_s})")
        clip = load_clip(entry.path, self.encoder.sampling, self.encoder.transform, start_s=start_s, end_s=end_s)
        return self.encoder.encode_clips(clip.unsqueeze(0))[0]

    # ------------------------------------------------------------- internals

    def _allowed_segment_ids(self, filters: SearchFilters | None, exclude_video: int | None) -> np.ndarray | None:
        if (filters is None or filters.is_empty()) and exclude_video is None:
            return None
        query = select(Segment.id).join(Video, Video.id == Segment.video_id).where(Video.status == STATUS_INDEXED)
        query = self._apply_filters(query, filters)
        if exclude_video is not None:
            query = query.where(Video.id != exclude_video)
        with self.store.session() as session:
            return np.array(session.scalars(query).all(), dtype=np.int64)

    @staticmethod
    def _apply_filters(query: Any, filters: SearchFilters | None) -> Any:
        if filters is None:
            return query
        if filters.path_prefix:
            if not isinstance(filters.path_prefix, str) or "\x00" in filters.path_prefix:
                raise InvalidQueryError("path_prefix must be text")
            prefix = os.path.abspath(os.path.expanduser(filters.path_prefix)).rstrip(os.sep)
            query = query.where((Video.path == prefix) |
                                Video.path.startswith(prefix + os.sep, autoescape=True))
        for name in ("min_duration_s", "max_duration_s"):
            value = getattr(filters, name)
            if value is not None and (not isinstance(value, (int, float)) or not np.isfinite(value)):
                raise InvalidQueryError(f"{name} must be a finite number")
        if filters.min_duration_s is not None:
            query = query.where(Video.duration_s >= filters.min_duration_s)
        if filters.max_duration_s is not None:
            query = query.where(Video.duration_s <= filters.max_duration_s)
        if filters.indexed_after is not None:
            query = query.where(Video.indexed_at >= filters.indexed_after)
        if filters.indexed_before is not None:
            query = query.where(Video.indexed_at < filters.indexed_before)
        return query

    def _segment_hits(self, ids: np.ndarray, scores: np.ndarray) -> list[SegmentHit]:
        wanted = [int(i) for i in ids if i >= 0]
        if not wanted:
            return []
        rows: dict[int, Any] = {}
        with self.store.session() as session:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                query = (select(Segment.id, Segment.video_id, Segment.start_s, Segment.end_s, Video.path,
                                Video.duration_s)
                         .join(Video, Video.id == Segment.video_id)
                         .where(Segment.id.in_(chunk), Video.status == STATUS_INDEXED))
                rows.update({r[0]: r for r in session.execute(query)})
        hits = []
        for seg_id, score in zip(ids.tolist(), scores.tolist()):
            row = rows.get(seg_id)
            if row is not None:
                hits.append(SegmentHit(video_id=row[1], path=row[4], start_s=float(row[2]), end_s=float(row[3]),
                                       score=float(score), segment_ids=(int(seg_id),), video_duration_s=row[5]))
        return hits

    def _rank(self, vector: np.ndarray, k: int, offset: int, filters: SearchFilters | None,
              group_by_video: bool, thumbnails: bool, exclude_video: int | None = None) -> SearchPage:
        _check_page(k, offset, self.config)
        self.store.refresh()
        self._check_library_model()
        allowed = self._allowed_segment_ids(filters, exclude_video)
        available = self.store.vector_count(SPACE_SEGMENTS) if allowed is None else len(allowed)
        need = offset + k + 1
        fetch = min(max(need * self.config.overfetch, 16), max(available, 1))
        units: list[Any] = []
        while available > 0:
            scores, ids = self.store.search(SPACE_SEGMENTS, vector[None, :], fetch, allowed)
            hits = self._segment_hits(ids[0], scores[0])
            spans = merge_hits(hits, self.config.merge_gap_s)
            units = self._group(spans) if group_by_video else spans
            if len(units) >= need or fetch >= available:
                break
            fetch = min(fetch * 4, available)
        page = units[offset:offset + k]
        if thumbnails:
            page = [self._with_thumbnails(unit) for unit in page]
        return SearchPage(items=page, offset=offset, limit=k, has_more=len(units) > offset + k)

    @staticmethod
    def _group(spans: list[SegmentHit]) -> list[VideoHit]:
        videos: dict[int, list[SegmentHit]] = {}
        for span in spans:  # spans arrive best first
            videos.setdefault(span.video_id, []).append(span)
        out = [VideoHit(video_id=vid, path=group[0].path, score=group[0].score,
                        duration_s=group[0].video_duration_s, spans=tuple(group)) for vid, group in videos.items()]
        out.sort(key=lambda v: (-v.score, v.video_id))
        return out

    def _with_thumbnails(self, unit: Any) -> Any:
        if isinstance(unit, VideoHit):
            return VideoHit(unit.video_id, unit.path, unit.score, unit.duration_s,
                            tuple(self._with_thumbnails(s) for s in unit.spans))
        path = cached_thumbnail(self.thumbnail_folder, unit.video_id, unit.path, (unit.start_s + unit.end_s) / 2,
                                self.config.thumbnails)
        return SegmentHit(unit.video_id, unit.path, unit.start_s, unit.end_s, unit.score, unit.segment_ids,
                          unit.video_duration_s, path)

    # ------------------------------------------------------------------ API

    def search_text(self, query: str, k: int = 10, offset: int = 0, filters: SearchFilters | None = None,
                    group_by_video: bool = False, thumbnails: bool = False) -> SearchPage:
        """Text -> segments. Items are :class:`SegmentHit` (or :class:`VideoHit` with ``group_by_video``).

        Raises:
            QueryError: empty, overlong or non-text query; bad ``k``/``offset``/filters.
            ModelMismatchError: the library was re-indexed with another model meanwhile.
        """
        vector = self.embed_text(query)
        return self._rank(vector, k, offset, filters, group_by_video, thumbnails)

    def similar_segments(self, video: str | os.PathLike[str], start_s: float | None = None,
                         end_s: float | None = None, k: int = 10, offset: int = 0,
                         filters: SearchFilters | None = None, group_by_video: bool = False,
                         thumbnails: bool = False, exclude_same_video: bool = True) -> SearchPage:
        """Video file (or span) -> similar segments of the library. With ``exclude_same_video``
        a file that is itself in the library does not return its own segments."""
        vector = self.embed_video(video, start_s, end_s)
        exclude = None
        if exclude_same_video:
            with self.store.session() as session:
                exclude = session.scalar(select(Video.id).where(Video.path == os.path.abspath(os.fspath(video))))
        return self._rank(vector, k, offset, filters, group_by_video, thumbnails, exclude)

    def similar_to_segment(self, segment_id: int, k: int = 10, offset: int = 0,
                           filters: SearchFilters | None = None, group_by_video: bool = False,
                           thumbnails: bool = False) -> SearchPage:
        """Library segment -> similar segments of other videos (uses the stored vector, no decoding)."""
        with self.store.session() as session:
            row = session.execute(select(Segment.embedding, Segment.video_id).where(Segment.id == segment_id)).first()
        if row is None:
            raise NotInLibraryError(f"no segment with id {segment_id!r}")
        vector = bytes_to_embeddings([row[0]], self.encoder.embed_dim)[0]
        return self._rank(vector, k, offset, filters, group_by_video, thumbnails, exclude_video=row[1])

    def video_to_texts(self, video: str | os.PathLike[str], start_s: float | None = None, end_s: float | None = None,
                       k: int = 10, offset: int = 0, source: str | None = None) -> SearchPage:
        """Video file (or span) -> captions of the loaded corpora (``source`` restricts to one corpus)."""
        return self._texts(self.embed_video(video, start_s, end_s), k, offset, source)

    def segment_to_texts(self, segment_id: int, k: int = 10, offset: int = 0, source: str | None = None) -> SearchPage:
        """Library segment -> captions."""
        with self.store.session() as session:
            blob = session.scalar(select(Segment.embedding).where(Segment.id == segment_id))
        if blob is None:
            raise NotInLibraryError(f"no segment with id {segment_id!r}")
        return self._texts(bytes_to_embeddings([blob], self.encoder.embed_dim)[0], k, offset, source)

    def _texts(self, vector: np.ndarray, k: int, offset: int, source: str | None) -> SearchPage:
        _check_page(k, offset, self.config)
        self.store.refresh()
        self._check_library_model()
        allowed = None
        if source is not None:
            with self.store.session() as session:
                allowed = np.array(session.scalars(select(TextEntry.id).where(TextEntry.source == source)).all(),
                                   dtype=np.int64)
        fetch = offset + k + 1
        scores, ids = self.store.search(SPACE_TEXTS, vector[None, :], fetch, allowed)
        valid = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        with self.store.session() as session:
            rows = {r.id: r for r in session.scalars(select(TextEntry).where(TextEntry.id.in_([i for i, _ in valid])))}
        hits = [TextHit(i, rows[i].text, rows[i].source, rows[i].external_id, s) for i, s in valid if i in rows]
        return SearchPage(items=hits[offset:offset + k], offset=offset, limit=k, has_more=len(hits) > offset + k)

    def search_videos(self, query: str, k: int = 10, offset: int = 0) -> SearchPage:
        """Text -> whole videos (their mean segment embedding); items are :class:`VideoHit` without spans."""
        vector = self.embed_text(query)
        _check_page(k, offset, self.config)
        self.store.refresh()
        self._check_library_model()
        scores, ids = self.store.search(SPACE_VIDEOS, vector[None, :], offset + k + 1)
        valid = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        with self.store.session() as session:
            rows = {v.id: v for v in session.scalars(select(Video).where(
                Video.id.in_([i for i, _ in valid]), Video.status == STATUS_INDEXED))}
        hits = [VideoHit(i, rows[i].path, s, rows[i].duration_s, ()) for i, s in valid if i in rows]
        return SearchPage(items=hits[offset:offset + k], offset=offset, limit=k, has_more=len(hits) > offset + k)

    def thumbnail(self, video_id: int, time_s: float) -> str | None:
        """JPEG path of the frame at ``time_s`` of a library video (cached)."""
        with self.store.session() as session:
            path = session.scalar(select(Video.path).where(Video.id == video_id))
        if path is None:
            raise NotInLibraryError(f"no video with id {video_id!r}")
        return cached_thumbnail(self.thumbnail_folder, video_id, path, float(time_s), self.config.thumbnails)

    def stats(self) -> dict[str, Any]:
        """Library counts, model and index types."""
        self.store.refresh()
        return self.store.stats()


# ---------------------------------------------------------------------- CLI


def _parse_datetime(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {value!r}") from error


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m index.search", description="Search a video library (JSON out).")
    parser.add_argument("--db", default="library.db")
    parser.add_argument("--vectors-dir", default=None)
    parser.add_argument("--model", default=None, help="checkpoint (default: the one the library was built with)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--log-level", default="WARNING")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-k", type=int, default=10)
        p.add_argument("--offset", type=int, default=0)
        p.add_argument("--group", action="store_true", help="group hits by video")
        p.add_argument("--thumbnails", action="store_true", help="add a JPEG thumbnail path to each hit")
        p.add_argument("--path-prefix", default=None)
        p.add_argument("--min-duration", type=float, default=None)
        p.add_argument("--max-duration", type=float, default=None)
        p.add_argument("--indexed-after", type=_parse_datetime, default=None)
        p.add_argument("--indexed-before", type=_parse_datetime, default=None)

    text = sub.add_parser("text", help="text -> segments")
    text.add_argument("query")
    common(text)
    video = sub.add_parser("video", help="video file or span -> texts or similar segments")
    video.add_argument("file")
    video.add_argument("--start", type=float, default=None)
    video.add_argument("--end", type=float, default=None)
    video.add_argument("--source", default=None, help="restrict captions to one corpus")
    what = video.add_mutually_exclusive_group()
    what.add_argument("--texts", action="store_true", help="video -> captions (default)")
    what.add_argument("--segments", action="store_true", help="video -> similar segments")
    common(video)
    sub.add_parser("stats", help="library statistics")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: one JSON object on stdout; exit 0, or 2 with ``{"error", "error_type"}``."""
    args = _parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from data.errors import VideoReadError

    try:
        with SearchEngine(LibraryConfig(db=args.db, vectors_dir=args.vectors_dir), model=args.model,
                          device=args.device) as engine:
            if args.command == "stats":
                result: Any = engine.stats()
            else:
                filters = SearchFilters(path_prefix=args.path_prefix, min_duration_s=args.min_duration,
                                        max_duration_s=args.max_duration, indexed_after=args.indexed_after,
                                        indexed_before=args.indexed_before)
                if args.command == "text":
                    result = engine.search_text(args.query, k=args.k, offset=args.offset, filters=filters,
                                                group_by_video=args.group, thumbnails=args.thumbnails).to_dict()
                elif args.segments:
                    result = engine.similar_segments(args.file, args.start, args.end, k=args.k, offset=args.offset,
                                                     filters=filters, group_by_video=args.group,
                                                     thumbnails=args.thumbnails).to_dict()
                else:
                    result = engine.video_to_texts(args.file, args.start, args.end, k=args.k, offset=args.offset,
                                                   source=args.source).to_dict()
    except (LibraryError, VideoReadError, FileNotFoundError, ValueError) as error:
        print(json.dumps({"error": str(error), "error_type": type(error).__name__}))
        return 2
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
