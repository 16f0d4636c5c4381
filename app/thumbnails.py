"""Thumbnail images for result cards: one JPEG per (video, time), cached on disk.

Pure presentation: the frame shown at the middle of a segment, decoded with
``data.decode`` and scaled to at most ``max_side`` pixels. The cache key hashes the
resolved path, the file's size and mtime and the time, so an edited video gets new
thumbnails. A video that cannot be decoded gets no thumbnail (the card then shows a
grey placeholder), never an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from data.decode import DecodeConfig, open_video
from data.errors import VideoReadError

logger = logging.getLogger(__name__)


class ThumbnailCache:
    """Makes and keeps thumbnails in ``folder``."""

    def __init__(self, folder: Path, max_side: int = 320, quality: int = 85) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_side = max_side
        self.quality = quality
        self._lock = threading.Lock()
        self._placeholder: Optional[Path] = None

    def _key(self, video: Path, time_s: float) -> str:
        stat = video.stat()
        raw = f"{os.path.realpath(video)}|{stat.st_size}|{stat.st_mtime_ns}|{time_s:.3f}|{self.max_side}"
        return hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()

    def placeholder(self) -> Path:
        """A grey image for videos without a thumbnail."""
        with self._lock:
            if self._placeholder is None or not self._placeholder.exists():
                path = self.folder / "placeholder.png"
                Image.new("RGB", (self.max_side, self.max_side * 9 // 16), (96, 96, 96)).save(path)
                self._placeholder = path
            return self._placeholder

    def get(self, video: Path, time_s: float) -> Path:
        """The thumbnail of ``video`` at ``time_s`` seconds (made on first use), or the placeholder."""
        try:
            target = self.folder / f"{self._key(video, time_s)}.jpg"
        except OSError:
            return self.placeholder()
        if target.exists():
            return target
        try:
            with open_video(video, DecodeConfig(timeout_s=20.0, seek_mode="keyframe")) as reader:
                index = int(max(0.0, time_s - reader.info.start_s) * reader.fps) if reader.fps else 0
                index = min(max(index, 0), max(reader.num_frames - 1, 0))
                frame = reader.get_frames([index])[0]
        except (VideoReadError, OSError, IndexError, ValueError) as error:
            logger.warning("no thumbnail for %s at %.2fs: %s", video, time_s, error)
            return self.placeholder()
        image = Image.fromarray(np.ascontiguousarray(frame))
        image.thumbnail((self.max_side, self.max_side))
        temporary = target.with_suffix(f".{threading.get_ident()}.tmp")
        image.save(temporary, format="JPEG", quality=self.quality)
        os.replace(temporary, target)
        return target
