"""The app's operations, shared by the UI and the JSON API: validate, call the backend, check paths.

Nothing here knows about Gradio components. Every input from a user is checked
(``app/security.py``) before it reaches the backend, and every path going out
(thumbnails, videos to play) is checked against the served folders.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import quote

from app.backend import LibraryBackend, LibraryStatus, SearchFilters, SearchPage, SegmentHit, TextHit
from app.config import AppConfig
from app.jobs import IndexingJobs, JobSnapshot
from app.security import (
    PathGuard,
    UserError,
    check_folder,
    check_upload,
    uploaded_path,
    validate_count,
    validate_query,
    validate_span,
)
from app.thumbnails import ThumbnailCache

logger = logging.getLogger(__name__)


def gradio_upload_folder() -> Path:
    """Where Gradio stores uploaded files (``GRADIO_TEMP_DIR`` or ``<tmp>/gradio``)."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder())


def file_url(path: Path) -> str:
    """The URL (relative to the page) under which Gradio serves an allowed file."""
    return "gradio_api/file=" + quote(str(path), safe="/")


class AppService:
    """Validated operations on one library (see module doc).

    Args:
        config: app settings (limits, paths).
        backend: the library.
        on_served_folders_changed: called with the new list of served folders whenever
            library roots change (the UI sets Gradio's ``allowed_paths`` from it).
    """

    def __init__(self, config: AppConfig, backend: LibraryBackend,
                 on_served_folders_changed: Optional[Callable[[list[str]], None]] = None) -> None:
        self.config = config
        self.backend = backend
        self.thumbnails = ThumbnailCache(config.resolved_thumbnails_dir())
        self.library_guard = PathGuard()
        self.thumbnail_guard = PathGuard([self.thumbnails.folder], what="the thumbnail cache")
        self.upload_guard = PathGuard([gradio_upload_folder()], what="the upload folder (it was not uploaded)")
        self._roots_lock = threading.Lock()
        self._on_served_folders_changed = on_served_folders_changed
        self.refresh_roots()
        self.jobs = IndexingJobs(backend, on_finished=self.refresh_roots)

    # ----------------------------------------------------------------- folders served
    def set_served_folders_listener(self, listener: Callable[[list[str]], None]) -> None:
        """Register the callback told about served folders (called once right away)."""
        self._on_served_folders_changed = listener
        listener(self.served_folders())

    def served_folders(self) -> list[str]:
        """Folders whose files may be sent to browsers: library roots and the thumbnail cache."""
        return [str(f) for f in self.library_guard.folders] + [os.path.realpath(self.thumbnails.folder)]

    def refresh_roots(self) -> None:
        """Re-read the library roots from the backend into the path guards."""
        with self._roots_lock:
            self.library_guard.replace(self.backend.roots())
            folders = self.served_folders()
        if self._on_served_folders_changed is not None:
            self._on_served_folders_changed(folders)

    # ----------------------------------------------------------------- helpers
    def _filters(self, folder: Any, min_duration_s: Any, max_duration_s: Any) -> SearchFilters:
        folder_text: Optional[str] = None
        if folder not in (None, ""):
            if not isinstance(folder, str) or "\x00" in folder or not os.path.isabs(os.path.expanduser(folder.strip())):
                raise UserError("the folder filter must be an absolute folder path")
            folder_text = os.path.realpath(os.path.expanduser(folder.strip()))
        low, high = validate_span(min_duration_s, max_duration_s)
        return SearchFilters(folder=folder_text, min_duration_s=low, max_duration_s=high)

    def _page(self, page: Any, page_size: Any) -> tuple[int, int]:
        limits = self.config.limits
        return (validate_count(page, "page", 1, limits.max_pages),
                validate_count(page_size, "page_size", 1, limits.max_top_k))

    def _with_thumbnail(self, hit: SegmentHit) -> SegmentHit:
        """The hit with a checked thumbnail path (made here if the backend gave none)."""
        video = self.library_guard.check(hit.video_path)
        if hit.thumbnail:
            try:
                thumbnail = self.thumbnail_guard.check(hit.thumbnail)
                return replace(hit, video_path=str(video), thumbnail=str(thumbnail))
            except UserError:
                pass  # a thumbnail from elsewhere is not served; make our own
        middle = hit.start_s + max(hit.end_s - hit.start_s, 0.0) / 2
        return replace(hit, video_path=str(video), thumbnail=str(self.thumbnails.get(video, middle)))

    def _checked_hits(self, hits: list[SegmentHit]) -> list[SegmentHit]:
        out = []
        for hit in hits:
            try:
                out.append(self._with_thumbnail(hit))
            except UserError:
                logger.warning("dropping a result outside the library roots: %s", hit.video_path)
        return out

    def play_url(self, hit: SegmentHit) -> str:
        """URL of the hit's video, starting at the segment (media fragment ``#t=start,end``)."""
        video = self.library_guard.check(hit.video_path)
        return f"{file_url(video)}#t={hit.start_s:.2f},{hit.end_s:.2f}"

    def hit_json(self, hit: SegmentHit) -> dict[str, Any]:
        """A hit as returned by the API (with its play URL)."""
        return {**hit.to_json(), "play_url": self.play_url(hit)}

    def page_json(self, page: SearchPage) -> dict[str, Any]:
        """A page as returned by the API."""
        out = page.to_json()
        out["results"] = [self.hit_json(hit) for hit in page.hits]
        return out

    # ----------------------------------------------------------------- operations
    def search(self, query: Any, folder: Any = None, min_duration_s: Any = None, max_duration_s: Any = None,
               page: Any = 1, page_size: Any = None) -> SearchPage:
        """Text -> segments, one page, each hit with a thumbnail."""
        text = validate_query(query, self.config.limits.max_query_chars)
        filters = self._filters(folder, min_duration_s, max_duration_s)
        page_no, size = self._page(page, page_size or self.config.limits.page_size)
        result = self.backend.search_text(text, filters, page_no, size)
        return replace(result, hits=self._checked_hits(result.hits))

    def similar(self, segment_id: Any, folder: Any = None, min_duration_s: Any = None, max_duration_s: Any = None,
                page: Any = 1, page_size: Any = None) -> SearchPage:
        """"More like this": segments similar to a library segment."""
        seg = validate_count(segment_id, "segment_id", 0, 2**62)
        filters = self._filters(folder, min_duration_s, max_duration_s)
        page_no, size = self._page(page, page_size or self.config.limits.page_size)
        result = self.backend.similar_segments(seg, filters, page_no, size)
        return replace(result, hits=self._checked_hits(result.hits))

    def resolve_clip(self, upload: Any, library_video: Any) -> Path:
        """The file a video-to-text request is about: an upload, or a library video."""
        path = uploaded_path(upload)
        if path is not None:
            limits = self.config.limits
            return check_upload(path, self.upload_guard, limits.max_upload_bytes, limits.upload_suffixes)
        if library_video not in (None, ""):
            return self.library_guard.check(library_video)
        raise UserError("upload a video or pick one from the library")

    def video_to_text(self, upload: Any = None, library_video: Any = None, start_s: Any = None, end_s: Any = None,
                      top_k: Any = 10) -> tuple[list[TextHit], list[SegmentHit]]:
        """Best captions and most similar library segments for a clip (or a span of it)."""
        clip = self.resolve_clip(upload, library_video)
        start, end = validate_span(start_s, end_s)
        k = validate_count(top_k, "top_k", 1, self.config.limits.max_top_k)
        texts = self.backend.video_to_texts(clip, start, end, k)
        segments = self.backend.video_to_segments(clip, start, end, SearchFilters(), k)
        return texts, self._checked_hits(segments)

    def index_folder(self, folder: Any) -> JobSnapshot:
        """Start indexing a folder (added as a library root) in the background."""
        real = check_folder(folder)
        snapshot = self.jobs.start([real])
        return snapshot

    def rescan(self) -> JobSnapshot:
        """Start re-indexing every library root (new, changed, moved and deleted files)."""
        roots = self.backend.roots()
        if not roots:
            raise UserError("the library has no folders yet; add one first")
        return self.jobs.start(roots)

    def remove_folder(self, folder: Any) -> int:
        """Forget a library root and its videos (files on disk are not touched); returns videos removed.

        Raises:
            UserError: ``folder`` is empty or not a library root (the message lists the roots),
                or an indexing run is in progress.
        """
        if not isinstance(folder, str) or not folder.strip() or "\x00" in folder:
            raise UserError("pick a library folder to remove")
        text = os.path.expanduser(folder.strip())
        if not os.path.isabs(text):
            raise UserError("the folder to remove must be an absolute path (one of the library folders)")
        real = Path(os.path.realpath(text))
        with self.jobs.exclusive("removing a folder"):
            roots = [Path(os.path.realpath(r)) for r in self.backend.roots()]
            if real not in roots:
                known = ", ".join(str(r) for r in roots) or "none yet"
                raise UserError(f"{folder} is not a library folder (the library folders are: {known})")
            try:
                removed = self.backend.remove_root(real)
            finally:
                self.refresh_roots()
        return removed

    def status(self) -> LibraryStatus:
        """Counts and model."""
        return self.backend.status()

    def progress(self) -> JobSnapshot:
        """The current or last indexing run."""
        return self.jobs.snapshot()

    def videos(self) -> list[str]:
        """Library videos for the picker (only those inside the roots)."""
        out = []
        for path in self.backend.videos(limit=500):
            try:
                out.append(str(self.library_guard.check(path)))
            except UserError:
                continue
        return out

    def close(self) -> None:
        """Wait briefly for a running index job, then close the backend."""
        self.jobs.wait(timeout=5.0)
        self.backend.close()
