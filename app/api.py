"""Named JSON API endpoints (``gr.api``) for scripts using ``gradio_client``.

Every endpoint returns plain JSON. Refused requests raise ``gr.Error`` with the
reason, which ``gradio_client`` re-raises as ``AppError``. The list is mirrored in
``docs/app.md``.
"""

from __future__ import annotations

from typing import Any, Optional

import gradio as gr
from gradio.data_classes import FileData

from app.errors import api_error
from app.service import AppService

#: api_name -> one-line description (also used by the docs test).
ENDPOINTS: dict[str, str] = {
    "search": "text -> library segments, one page, best first",
    "similar_segments": "segment id -> most similar segments (\"more like this\")",
    "video_to_text": "uploaded clip or library video (optional span) -> best captions and similar segments",
    "index_folder": "add a folder to the library and index it in the background",
    "rescan": "re-index every library folder in the background (new, changed, moved, deleted files)",
    "remove_folder": "forget a library folder and its videos (files on disk untouched)",
    "index_progress": "state of the current or last indexing run",
    "library_status": "counts per folder, totals, model in use",
    "list_videos": "paths of indexed videos (at most 500)",
}


def register_api(service: AppService) -> None:
    """Declare the endpoints of :data:`ENDPOINTS` inside the current ``gr.Blocks``."""

    def search(query: str, folder: str = "", min_duration_s: Optional[float] = None,
               max_duration_s: Optional[float] = None, page: int = 1, page_size: Optional[int] = None) -> dict[str, Any]:
        """Text search. Returns {page, page_size, has_more, results: [{video_path, name, start_s, end_s,
        score, segment_id, video_id, duration_s, thumbnail, play_url}]}."""
        try:
            return service.page_json(service.search(query, folder, min_duration_s, max_duration_s, page, page_size))
        except Exception as error:
            raise api_error(error) from None

    def similar_segments(segment_id: int, folder: str = "", min_duration_s: Optional[float] = None,
                         max_duration_s: Optional[float] = None, page: int = 1, page_size: Optional[int] = None) -> dict[str, Any]:
        """Segments most like segment `segment_id` (itself excluded); same result format as search."""
        try:
            return service.page_json(service.similar(segment_id, folder, min_duration_s, max_duration_s,
                                                     page, page_size))
        except Exception as error:
            raise api_error(error) from None

    def video_to_text(video: Optional[FileData] = None, library_video: str = "", start_s: Optional[float] = None,
                      end_s: Optional[float] = None, top_k: int = 10) -> dict[str, Any]:
        """Give `video` (an upload: gradio_client.handle_file(path)) or `library_video` (a library path).
        Returns {texts: [{text, score, source}], segments: [...as in search]}."""
        try:
            texts, segments = service.video_to_text(video, library_video, start_s, end_s, top_k)
            return {"texts": [t.to_json() for t in texts], "segments": [service.hit_json(h) for h in segments]}
        except Exception as error:
            raise api_error(error) from None

    def index_folder(folder: str) -> dict[str, Any]:
        """Start indexing `folder` (absolute path); returns the run's state (see index_progress)."""
        try:
            return service.index_folder(folder).to_json()
        except Exception as error:
            raise api_error(error) from None

    def rescan() -> dict[str, Any]:
        """Start re-indexing all library folders; returns the run's state."""
        try:
            return service.rescan().to_json()
        except Exception as error:
            raise api_error(error) from None

    def remove_folder(folder: str) -> dict[str, Any]:
        """Remove a library folder; returns {removed_videos}."""
        try:
            return {"removed_videos": service.remove_folder(folder)}
        except Exception as error:
            raise api_error(error) from None

    def index_progress() -> dict[str, Any]:
        """{state: idle|running|done|failed, files_total, files_done, files_skipped, segments, segments_per_s,
        elapsed_s, current_file, failures: [{file, reason}], error}."""
        try:
            return service.progress().to_json()
        except Exception as error:
            raise api_error(error) from None

    def library_status() -> dict[str, Any]:
        """{db_path, model, roots: [{folder, videos, segments, failed}], videos, segments, failed, texts}."""
        try:
            return service.status().to_json()
        except Exception as error:
            raise api_error(error) from None

    def list_videos() -> list[str]:
        """Indexed video paths (at most 500)."""
        try:
            return service.videos()
        except Exception as error:
            raise api_error(error) from None

    functions = {
        "search": search, "similar_segments": similar_segments, "video_to_text": video_to_text,
        "index_folder": index_folder, "rescan": rescan, "remove_folder": remove_folder,
        "index_progress": index_progress, "library_status": library_status, "list_videos": list_videos,
    }
    assert set(functions) == set(ENDPOINTS)
    for name, fn in functions.items():
        # progress polling must never wait behind searches in the queue
        gr.api(fn, api_name=name, concurrency_limit=None if name in ("index_progress", "library_status") else "default")
