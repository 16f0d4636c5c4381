"""``LibraryBackend`` on the ``index`` package's public API.

* searches: :class:`index.search.SearchEngine` (read-only, thread-safe, catches up
  with commits of a concurrent indexing run by itself);
* indexing: :func:`index.build.build_library` on a writable
  :class:`index.store.LibraryStore` opened for the run (the store's writer lock makes
  a concurrent ``python -m index.build`` on the same library fail cleanly with
  ``LibraryBusyError``); one :class:`index.encoder.Encoder` is shared by both;
* captions: :func:`index.texts.add_texts`.

Live progress: ``build_library`` reports only at its end (plus a tqdm bar), so while
it runs the counts shown are read from the library database: video rows under the
folders written since the run started (indexed or failed, with the reason), and their
segments; the file total comes from :func:`index.walk.walk_videos`.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Optional, Sequence

from sqlalchemy import func, or_, select

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
from app.security import UserError
from index import search as index_search
from index.build import BuildConfig, build_library
from index.encoder import Encoder, EncoderConfig
from index.schema import STATUS_FAILED, STATUS_INDEXED, Root, Segment, Video, utcnow
from index.store import LibraryConfig, LibraryStore
from index.texts import add_texts, read_captions
from index.thumbnails import ThumbnailConfig
from index.walk import normalise_root, walk_videos

logger = logging.getLogger(__name__)

PROGRESS_POLL_S = 0.5


def _under(column, folder: str):
    """SQL condition: ``column`` is ``folder`` or a path below it."""
    folder = folder.rstrip(os.sep)
    return or_(column == folder, column.startswith(folder + os.sep, autoescape=True))


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
        roots = []
        with self.engine.store.session() as session:
            for root in self.engine.store.roots():
                counts = dict(session.execute(
                    select(Video.status, func.count()).where(_under(Video.path, root)).group_by(Video.status)).all())
                segments = session.scalar(select(func.count()).select_from(Segment).join(Video)
                                          .where(_under(Video.path, root))) or 0
                roots.append(RootStatus(root, int(counts.get(STATUS_INDEXED, 0)), int(segments),
                                        int(counts.get(STATUS_FAILED, 0))))
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
        roots = [normalise_root(f) for f in folders]
        state = IndexProgress(files_total=sum(1 for _ in walk_videos(roots)))
        progress(state)
        started = utcnow()
        outcome: dict[str, object] = {}

        def run() -> None:
            try:
                with LibraryStore(self.library, writable=True) as store:
                    outcome["summary"] = build_library(store, self.engine.encoder, roots, self.build_config)
            except BaseException as error:  # re-raised in the calling thread
                outcome["error"] = error

        worker = threading.Thread(target=run, name="build-library", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(PROGRESS_POLL_S)
            try:
                self._poll(roots, started, state)
            except Exception as error:  # a busy database must not stop the run
                logger.debug("progress poll failed: %s", error)
            progress(state)
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        summary = outcome["summary"]
        final = IndexProgress(
            files_total=state.files_total,
            files_done=summary.indexed + summary.reindexed + summary.moved + summary.copied + summary.touched,
            files_skipped=summary.unchanged, segments=summary.segments,
            failures=[Failure(f.get("path", ""), f"{f.get('error_type', 'error')}: {f.get('reason', '')}")
                      for f in summary.failed])
        progress(final)
        logger.info("indexing summary: %s", summary.to_dict())
        return final

    def _poll(self, roots: list[str], started, state: IndexProgress) -> None:
        """Counts of this run so far, from the database (see module doc)."""
        under = or_(*[_under(Video.path, r) for r in roots])
        with self.engine.store.session() as session:
            rows = session.execute(select(Video.path, Video.status, Video.error_type, Video.error)
                                   .where(under, Video.indexed_at >= started)).all()
            segments = session.scalar(select(func.count()).select_from(Segment).join(Video)
                                      .where(under, Video.indexed_at >= started)) or 0
        state.files_done = sum(1 for r in rows if r[1] == STATUS_INDEXED)
        state.failures = [Failure(r[0], f"{r[2] or 'error'}: {r[3] or ''}") for r in rows if r[1] == STATUS_FAILED]
        state.segments = int(segments)
        if rows:
            state.current_file = rows[-1][0]

    def add_caption_corpus(self, path: Path, source: str) -> int:
        with LibraryStore(self.library, writable=True) as store:
            summary = add_texts(store, self.engine.encoder, read_captions(path), source)
        return summary.added

    def remove_root(self, folder: Path) -> int:
        raise UserError("removing a library folder is not supported by the library index yet; "
                        "move or delete its files and use “Rescan all folders” instead")

    def close(self) -> None:
        self.engine.close()
