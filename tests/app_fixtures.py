"""Helpers for the app tests: free ports, tiny videos and models, a launched app, and an
in-memory library backend for the tests of the app's own logic (paths, validation, paging).

:class:`MemoryBackend` implements ``app.backend.LibraryBackend`` over a list of video
files with fixed segments; its "search" ranks segments by how many query words occur in
the file name. It lets the security and validation tests run without a model; the
end-to-end tests use the real ``index``-backed library.
"""

from __future__ import annotations

import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

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
from app.config import AppConfig, LimitsConfig
from app.launcher import AppHandle, create_app

TINY_TEXT = {"kind": "clip", "width": 64, "layers": 2, "heads": 2, "context_length": 24}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_clip(path: Path, colour: tuple[int, int, int], num_frames: int = 20, fps: float = 10.0,
               size: int = 32, moving: bool = True) -> Path:
    """A tiny H.264 MP4 (PyAV): a coloured square moving over grey."""
    from data.synthetic import encode_mp4

    frames = np.full((num_frames, size, size, 3), 80, dtype=np.uint8)
    side = size // 3
    for i in range(num_frames):
        x = (i * (size - side)) // max(num_frames - 1, 1) if moving else (size - side) // 2
        frames[i, side:2 * side, x:x + side] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_mp4(path, frames, fps)
    return path


def write_library_folder(folder: Path) -> list[Path]:
    """Three tiny clips with telling names, one in a subfolder."""
    return [
        write_clip(folder / "red_square.mp4", (230, 20, 20)),
        write_clip(folder / "blue_square.mp4", (20, 20, 230)),
        write_clip(folder / "sub" / "green_square.mp4", (20, 230, 20), num_frames=30),
    ]


def make_tiny_model(path: Path) -> Path:
    """A random tiny DualEncoder checkpoint (VideoMamba depth 2, 32-d, 32 px, 4 frames, 2-layer text)."""
    from training.checkpoint import save_model
    from training.dual_encoder import create_dual_encoder

    model = create_dual_encoder(dict(
        video_tower="videomamba", num_frames=4, img_size=32, video_overrides={"depth": 2, "embed_dim": 32},
        text=dict(TINY_TEXT), pooling="cls", embed_dim=32))
    return save_model(model, path)


@dataclass
class MemoryVideo:
    path: Path
    duration_s: float


class MemoryBackend:
    """In-memory ``LibraryBackend`` (see module doc). ``index_folders`` registers every
    ``.mp4`` under the folders, one 1-second segment per second of a 2-second video."""

    def __init__(self, db_path: Path, texts: Sequence[str] = ()) -> None:
        self.db_path = db_path
        self._roots: list[Path] = []
        self._videos: list[MemoryVideo] = []
        self._texts = list(texts)
        self.closed = False

    # -- helpers for tests
    def add_video(self, path: Path, duration_s: float = 2.0) -> None:
        self._videos.append(MemoryVideo(path, duration_s))

    def add_root(self, path: Path) -> None:
        self._roots.append(Path(path).resolve())

    def _segments(self, filters: SearchFilters) -> list[SegmentHit]:
        hits = []
        for vid, video in enumerate(self._videos):
            if filters.folder and not str(video.path).startswith(filters.folder):
                continue
            if filters.min_duration_s is not None and video.duration_s < filters.min_duration_s:
                continue
            if filters.max_duration_s is not None and video.duration_s > filters.max_duration_s:
                continue
            for s in range(int(video.duration_s)):
                hits.append(SegmentHit(str(video.path), float(s), float(s + 1), 0.0, vid * 100 + s, vid,
                                       video.duration_s))
        return hits

    @staticmethod
    def _page(hits: list[SegmentHit], page: int, page_size: int) -> SearchPage:
        start = (page - 1) * page_size
        return SearchPage(hits[start:start + page_size], page, page_size, len(hits) > start + page_size)

    # -- LibraryBackend
    def roots(self) -> list[Path]:
        return list(self._roots)

    def status(self) -> LibraryStatus:
        roots = [RootStatus(str(r), sum(str(v.path).startswith(str(r)) for v in self._videos), 0, 0)
                 for r in self._roots]
        segments = len(self._segments(SearchFilters()))
        return LibraryStatus(str(self.db_path), "memory", roots, len(self._videos), segments, 0, len(self._texts))

    def videos(self, limit: int = 500) -> list[str]:
        return [str(v.path) for v in self._videos][:limit]

    def search_text(self, query: str, filters: SearchFilters, page: int, page_size: int) -> SearchPage:
        words = query.lower().split()
        scored = [SegmentHit(**{**h.__dict__, "score": float(sum(w in Path(h.video_path).name for w in words))})
                  for h in self._segments(filters)]
        scored.sort(key=lambda h: (-h.score, h.video_path, h.start_s))
        return self._page(scored, page, page_size)

    def similar_segments(self, segment_id: int, filters: SearchFilters, page: int, page_size: int) -> SearchPage:
        hits = [h for h in self._segments(filters) if h.segment_id != segment_id]
        return self._page(hits, page, page_size)

    def video_to_texts(self, path: Path, start_s: Optional[float], end_s: Optional[float], top_k: int) -> list[TextHit]:
        return [TextHit(t, 1.0 / (i + 1), "memory") for i, t in enumerate(self._texts[:top_k])]

    def video_to_segments(self, path: Path, start_s: Optional[float], end_s: Optional[float],
                          filters: SearchFilters, top_k: int) -> list[SegmentHit]:
        return self._segments(filters)[:top_k]

    def index_folders(self, folders: Sequence[Path], progress: ProgressCallback) -> IndexProgress:
        state = IndexProgress()
        for folder in folders:
            if Path(folder).resolve() not in self._roots:
                self.add_root(folder)
            files = sorted(Path(folder).rglob("*"))
            state.files_total += len([f for f in files if f.is_file()])
            for file in files:
                if not file.is_file():
                    continue
                state.current_file = str(file)
                if file.suffix == ".mp4":
                    self.add_video(file)
                    state.files_done += 1
                    state.segments += 2
                else:
                    state.failures.append(Failure(str(file), "not a video"))
                progress(state)
        return state

    def add_caption_corpus(self, path: Path, source: str) -> int:
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        self._texts += lines
        return len(lines)

    def remove_root(self, folder: Path) -> int:
        before = len(self._videos)
        self._videos = [v for v in self._videos if not str(v.path).startswith(str(folder))]
        self._roots = [r for r in self._roots if r != Path(folder)]
        return before - len(self._videos)

    def close(self) -> None:
        self.closed = True


@contextmanager
def launched(config: AppConfig, backend=None) -> Iterator[tuple[AppHandle, str]]:
    """The app launched in-process on a free port; yields (handle, url) and closes it."""
    handle = create_app(config, backend)
    url = handle.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port())
    try:
        yield handle, url
    finally:
        handle.close()


def memory_config(tmp: Path, **limits) -> AppConfig:
    """An AppConfig with everything under ``tmp``."""
    return AppConfig(db_path=tmp / "db" / "library.sqlite", thumbnails_dir=tmp / "thumbs",
                     limits=LimitsConfig(**limits))
