"""``LibraryBackend`` on the ``index`` package's public API.

* searches: :class:`index.search.SearchEngine` (read-only, thread-safe, catches up
  with commits of a concurrent indexing run by itself);
* indexing: :func:`index.build.build_library` on a writable
  :class:`index.store.LibraryStore` opened for the run (the store's writer lock makes
  a concurrent ``python -m index.build`` on the same library fail cleanly with
  ``LibraryBusyError``); one :class:`index.encoder.Encoder` is shared by both;
* captions: :func:`index.texts.add_texts`;
* folders: :func:`index.roots.root_stats` for the per-folder counts,
  :func:`index.roots.remove_roots` to forget a folder.

Live progress: ``build_library`` calls a progress callback with an immutable
:class:`index.progress.BuildProgress` snapshot (files found/done, segments, current
file, failures with reasons) on the thread that runs it, i.e. the app's indexing
thread (``app/jobs.py``). Each event is turned into a fresh :class:`IndexProgress` and
handed to the app's callback, which stores a copy under its lock, so the UI threads
only ever read complete snapshots.

Encoder sharing: searches (Gradio's worker threads) and the indexing thread call the
same :class:`index.encoder.Encoder`; it serialises forward passes with its own lock
(per batch), so a search waits for at most one indexing batch.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

from sqlalchemy import select

from app.backend import (
    Failure,
    IndexProgress,
    LibraryStatus,
    ProgressCallback,
    RootStatus,
    SearchFilters,
    SearchPage,
    SegmentHit,
    TextHit,
)
from app.config import AppConfig
from index import search as index_search
from index.build import BuildConfig, build_library
from index.progress import BuildProgress
from index.roots import remove_roots, root_stats
from index.schema import STATUS_FAILED, STATUS_INDEXED, Video
from index.store import LibraryConfig, LibraryStore
from index.texts import add_texts, read_captions
from index.thumbnails import ThumbnailConfig, remove_cached_thumbnails
from index.walk import normalise_root

logger = logging.getLogger(__name__)


def index_progress(event: BuildProgress) -> IndexProgress:
    """The app's progress record for an index progress event (a new object; the event is not kept).

    ``files_done`` counts files indexed, touched, moved or copied; ``files_skipped``
    unchanged ones; failures carry ``"<error type>: <reason>"``.
    """
    return IndexProgress(
        files_total=event.files_total, files_done=event.files_indexed + event.files_updated,
        files_skipped=event.files_skipped, segments=event.segments_done,
        failures=[Failure(f.path, f"{f.error_type or 'error'}: {f.reason}") for f in event.failures],
        current_file=event.current_file)


class IndexBackend:
    """The app's library: a :class:`SearchEngine` plus indexing runs (see module doc)."""

    def __init__(self, config: AppConfig, library: LibraryConfig, engine: index_search.SearchEngine,
                 build: BuildConfig) -> None:
        self.config = config
        self.library = library
        self.engine = engine
        self.build_config = build

    @classmethod
    def open(cls, config: AppConfig) -> "IndexBackend":
        """Open (creating it if needed) the library at ``config.db_path`` with ``config.model_path``.

        Raises:
            index.errors.ModelMismatchError: the library was built with another model.
            FileNotFoundError: no model checkpoint.
        """
        db = Path(config.db_path)
        library = LibraryConfig(db=str(db))
        if not db.exists():
            db.parent.mkdir(parents=True, exist_ok=True)
            LibraryStore(library, writable=True).close()  # creates the schema
            logger.info("created an empty library at %s", db)
        search_config = index_search.SearchConfig(
            max_query_chars=config.limits.max_query_chars,
            thumbnails=ThumbnailConfig(folder=str(config.resolved_thumbnails_dir() / "index")))
        Path(search_config.thumbnails.folder).mkdir(parents=True, exist_ok=True)
        model = str(config.model_path) if config.model_path else None
        engine = index_search.SearchEngine(library, model=model, config=search_config)
        build = BuildConfig(workers=config.index_workers, progress=False)
        return cls(config, library, engine, build)

    # ------------------------------------------------------------------ conversions
    @staticmethod
    def _filters(filters: SearchFilters) -> Optional[index_search.SearchFilters]:
        converted = index_search.SearchFilters(path_prefix=filters.folder, min_duration_s=filters.min_duration_s,
                                               max_duration_s=filters.max_duration_s)
        return None if converted.is_empty() else converted

    @staticmethod
    def _hit(hit: index_search.SegmentHit) -> SegmentHit:
        return SegmentHit(video_path=hit.path, start_s=hit.start_s, end_s=hit.end_s, score=hit.score,
                          segment_id=hit.segment_ids[0] if hit.segment_ids else None, video_id=hit.video_id,
                          duration_s=hit.video_duration_s, thumbnail=hit.thumbnail)

    def _page(self, result: index_search.SearchPage, page: int, page_size: int) -> SearchPage:
        return SearchPage([self._hit(h) for h in result.items], page, page_size, result.has_more)

    # ------------------------------------------------------------------ LibraryBackend
    def roots(self) -> list[Path]:
        return [Path(p) for p in self.engine.store.roots()]

    def status(self) -> LibraryStatus:
        stats = self.engine.stats()
        videos = stats.get("videos", {})
        roots = [RootStatus(r.path, r.videos, r.segments, r.failed) for r in root_stats(self.engine.store)]
        return LibraryStatus(
            db_path=str(self.config.db_path), model=self.engine.encoder.info.describe(), roots=roots,
            videos=int(videos.get(STATUS_INDEXED, 0)), segments=int(stats.get("segments", 0)),
            failed=int(videos.get(STATUS_FAILED, 0)), texts=int(stats.get("texts", 0)))

    def videos(self, limit: int = 500) -> list[str]:
        with self.engine.store.session() as session:
            return list(session.scalars(select(Video.path).where(Video.status == STATUS_INDEXED)
                                        .order_by(Video.path).limit(limit)))

    def search_text(self, query: str, filters: SearchFilters, page: int, page_size: int) -> SearchPage:
        result = self.engine.search_text(query, k=page_size, offset=(page - 1) * page_size,
                                         filters=self._filters(filters), thumbnails=True)
        return self._page(result, page, page_size)

    def similar_segments(self, segment_id: int, filters: SearchFilters, page: int, page_size: int) -> SearchPage:
        result = self.engine.similar_to_segment(segment_id, k=page_size, offset=(page - 1) * page_size,
                                                filters=self._filters(filters), thumbnails=True)
        return self._page(result, page, page_size)

    def video_to_texts(self, path: Path, start_s: Optional[float], end_s: Optional[float], top_k: int) -> list[TextHit]:
        result = self.engine.video_to_texts(path, start_s, end_s, k=top_k)
        return [TextHit(hit.text, hit.score, hit.source) for hit in result.items]

    def video_to_segments(self, path: Path, start_s: Optional[float], end_s: Optional[float],
                          filters: SearchFilters, top_k: int) -> list[SegmentHit]:
        result = self.engine.similar_segments(path, start_s, end_s, k=top_k, filters=self._filters(filters),
                                              thumbnails=True)
        return [self._hit(h) for h in result.items]

    def index_folders(self, folders: Sequence[Path], progress: ProgressCallback) -> IndexProgress:
        """Index ``folders`` on the calling thread, reporting every progress event of the run to ``progress``.

        Raises:
            index.errors.LibraryBusyError: another process is writing the library.
            NotADirectoryError: a folder does not exist.
        """
        roots = [normalise_root(f) for f in folders]
        last: list[BuildProgress] = []

        def on_event(event: BuildProgress) -> None:
            last[:] = [event]
            progress(index_progress(event))

        with self._writing() as store:
            summary = build_library(store, self.engine.encoder, roots, self.build_config, progress=on_event)
        final = index_progress(last[0])
        logger.info("indexing summary: %s", summary.to_dict())
        return final

    def add_caption_corpus(self, path: Path, source: str) -> int:
        with self._writing() as store:
            summary = add_texts(store, self.engine.encoder, read_captions(path), source)
        return summary.added

    def remove_root(self, folder: Path) -> int:
        """Forget the library root ``folder`` and its videos (one transaction, see ``index.roots``).

        Raises:
            index.errors.NotALibraryRootError: ``folder`` is not a library root.
            index.errors.LibraryBusyError: another process is writing the library.
        """
        with self._writing() as store:
            summary = remove_roots(store, [str(folder)])
        dropped = remove_cached_thumbnails(self.engine.thumbnail_folder, summary.video_ids)
        logger.info("removed %s: %d videos, %d segments, %d thumbnails", ", ".join(summary.roots), summary.videos,
                    summary.segments, dropped)
        return summary.videos

    @contextmanager
    def _writing(self) -> Iterator[LibraryStore]:
        """The library opened for writing. When it closes, the search engine
        catches up at once: its own refresh is rate-limited, and a search right
        after a write (captions added, a folder indexed or removed) must see it."""
        with LibraryStore(self.library, writable=True) as store:
            yield store
        self.engine.store.refresh(force=True)

    def close(self) -> None:
        self.engine.close()
