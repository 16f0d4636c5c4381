"""Thumbnail frames of search hits, as JPEG files in a cache folder or as bytes.

File names are built from integers only (``v{video_id}_{milliseconds}_{width}.jpg``),
never from user input, so a hit cannot make the engine write outside the cache.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from data.decode import DecodeConfig, open_video
from data.errors import VideoReadError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThumbnailConfig:
    """Size and quality of thumbnails; ``folder`` None = ``<library>.thumbs`` next to the vector files."""

    folder: str | None = None
    width: int = 320
    quality: int = 85


def frame_jpeg(path: str, time_s: float, width: int = 320, quality: int = 85) -> bytes:
    """The frame shown at ``time_s`` seconds of ``path`` as JPEG bytes, ``width`` pixels wide.

    Raises:
        data.errors.VideoReadError: the file cannot be decoded.
    """
    from PIL import Image

    with open_video(path, DecodeConfig(num_threads=1, seek_mode="exact")) as reader:
        index = min(max(int(round(max(time_s, 0.0) * reader.fps)), 0), max(reader.num_frames - 1, 0))
        frame = reader.get_frames([index])[0]
    image = Image.fromarray(frame)
    if image.width > width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def cached_thumbnail(folder: str | os.PathLike[str], video_id: int, path: str, time_s: float,
                     config: ThumbnailConfig | None = None) -> str | None:
    """Path of the cached JPEG for ``(video_id, time_s)``, written on first use; None if the video cannot be read."""
    config = config or ThumbnailConfig()
    target = Path(folder) / f"v{int(video_id)}_{int(round(time_s * 1000))}_{int(config.width)}.jpg"
    if target.is_file():
        return str(target)
    try:
        data = frame_jpeg(path, time_s, config.width, config.quality)
    except (VideoReadError, OSError) as error:
        logger.warning("no thumbnail for %s at %.2f s: %s", path, time_s, error)
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, target)
    return str(target)


def remove_cached_thumbnails(folder: str | os.PathLike[str], video_ids: Iterable[int]) -> int:
    """Delete the cached thumbnails of ``video_ids`` in ``folder`` (e.g. after their videos were
    removed from the library); returns how many files were deleted. A missing folder is fine."""
    base = Path(folder)
    if not base.is_dir():
        return 0
    removed = 0
    for video_id in video_ids:
        for path in base.glob(f"v{int(video_id)}_*.jpg"):
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                continue
    return removed


__all__ = ["ThumbnailConfig", "cached_thumbnail", "frame_jpeg", "remove_cached_thumbnails"]
