"""What the UI needs from a library, as a protocol and plain result records.

The UI (``app/ui.py``) and the JSON API (``app/api.py``) talk only to a
:class:`LibraryBackend`; ``app/index_backend.py`` implements it on the ``index``
package's public API. Keeping this seam small means the app never touches the
database or FAISS itself, and UI tests can run against any implementation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence


@dataclass(frozen=True)
class SearchFilters:
    """Restrictions on which segments a search may return."""

    folder: Optional[str] = None
    """Only videos under this folder (absolute path prefix)."""
    min_duration_s: Optional[float] = None
    """Only videos at least this long."""
    max_duration_s: Optional[float] = None
    """Only videos at most this long."""


@dataclass(frozen=True)
class SegmentHit:
    """One search result: a time span of a library video."""

    video_path: str
    start_s: float
    end_s: float
    score: float
    segment_id: Optional[int] = None
    video_id: Optional[int] = None
    duration_s: Optional[float] = None
    thumbnail: Optional[str] = None
    """A JPEG/PNG of a frame of the span, if one was made."""

    @property
    def name(self) -> str:
        """The video's file name."""
        return Path(self.video_path).name

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (the API's result format)."""
        return {**asdict(self), "name": self.name}


@dataclass(frozen=True)
class TextHit:
    """One caption matching a video, from a loaded caption corpus."""

    text: str
    score: float
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class SearchPage:
    """One page of results."""

    hits: list[SegmentHit]
    page: int
    page_size: int
    has_more: bool

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"page": self.page, "page_size": self.page_size, "has_more": self.has_more,
                "results": [hit.to_json() for hit in self.hits]}


@dataclass(frozen=True)
class RootStatus:
    """Counts for one library folder."""

    folder: str
    videos: int
    segments: int
    failed: int


@dataclass(frozen=True)
class LibraryStatus:
    """The library at a glance."""

    db_path: str
    model: str
    roots: list[RootStatus]
    videos: int
    segments: int
    failed: int
    texts: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Failure:
    """A file that could not be indexed, and why.

    (Result dicts never use the key ``path``: ``gradio_client`` would take them for files.)
    """

    file: str
    reason: str


@dataclass
class IndexProgress:
    """Live counters of an indexing run, updated by the backend's callback."""

    files_total: int = 0
    files_done: int = 0
    files_skipped: int = 0
    segments: int = 0
    failures: list[Failure] = field(default_factory=list)
    current_file: str = ""


ProgressCallback = Callable[[IndexProgress], None]


class LibraryBackend(Protocol):
    """A searchable video library (see module doc)."""

    def roots(self) -> list[Path]:
        """The library folders (resolved)."""

    def status(self) -> LibraryStatus:
        """Counts and the model in use."""

    def videos(self, limit: int = 500) -> list[str]:
        """Paths of indexed videos (for pickers), at most ``limit``."""

    def search_text(self, query: str, filters: SearchFilters, page: int, page_size: int) -> SearchPage:
        """Segments matching a text query, best first."""

    def similar_segments(self, segment_id: int, filters: SearchFilters, page: int, page_size: int) -> SearchPage:
        """Segments most like a library segment ("more like this"), best first, itself excluded."""

    def video_to_texts(self, path: Path, start_s: Optional[float], end_s: Optional[float], top_k: int) -> list[TextHit]:
        """Captions from the loaded corpora that best describe the video (or span)."""

    def video_to_segments(self, path: Path, start_s: Optional[float], end_s: Optional[float],
                          filters: SearchFilters, top_k: int) -> list[SegmentHit]:
        """Library segments most like the video (or span)."""

    def index_folders(self, folders: Sequence[Path], progress: ProgressCallback) -> IndexProgress:
        """Add ``folders`` as roots if new and (re)index them incrementally; blocking."""

    def add_caption_corpus(self, path: Path, source: str) -> int:
        """Load a caption file (one caption per line, JSONL or MSR-VTT) for video-to-text; returns captions added."""

    def remove_root(self, folder: Path) -> int:
        """Forget a library folder and its videos; returns how many videos were removed."""

    def close(self) -> None:
        """Release files and threads."""
