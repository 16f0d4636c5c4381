"""Finding the video files of a library.

Every path is untrusted: the walk never follows symbolic links (neither to folders
nor to files), skips anything that is not a regular file (FIFOs, sockets, devices
would block or misbehave when opened), skips hidden entries unless asked, skips
names that are not valid text in the file system encoding (they cannot be stored
as text), and only keeps known video extensions.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from typing import Iterable, Iterator

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS: frozenset[str] = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".flv", ".mpg", ".mpeg", ".ts", ".mts",
    ".m2ts", ".3gp", ".ogv", ".vob",
})


@dataclass(frozen=True)
class WalkConfig:
    """Which files count as videos.

    Attributes:
        extensions: lower-case suffixes with the dot.
        include_hidden: also enter/keep names starting with ".".
        max_depth: folders deeper than this below a root are not entered.
    """

    extensions: frozenset[str] = VIDEO_EXTENSIONS
    include_hidden: bool = False
    max_depth: int = 64


@dataclass(frozen=True)
class FileEntry:
    """A candidate video: absolute path, size in bytes, modification time in ns."""

    path: str
    size: int
    mtime_ns: int


def normalise_root(root: str | os.PathLike[str]) -> str:
    """Absolute, symlink-resolved form of a library root.

    Raises:
        NotADirectoryError: the root is not an existing folder.
    """
    path = os.path.realpath(os.path.expanduser(os.fspath(root)))
    if not os.path.isdir(path):
        raise NotADirectoryError(f"library root is not a folder: {root}")
    return path


def _storable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in path


def stat_entry(path: str) -> FileEntry | None:
    """The :class:`FileEntry` of a regular, non-symlink file, else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return FileEntry(path, int(st.st_size), int(st.st_mtime_ns))


def walk_videos(roots: Iterable[str], config: WalkConfig | None = None) -> Iterator[FileEntry]:
    """Every video file under ``roots`` (already normalised), in sorted order per folder."""
    config = config or WalkConfig()
    seen: set[str] = set()
    for root in roots:
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            folder, depth = stack.pop()
            try:
                with os.scandir(folder) as entries:
                    items = sorted(entries, key=lambda e: e.name)
            except OSError as error:
                logger.warning("cannot list %s: %s", folder, error)
                continue
            subfolders: list[str] = []
            for entry in items:
                if not config.include_hidden and entry.name.startswith("."):
                    continue
                if not _storable(entry.path):
                    logger.warning("skipping a name that is not valid text: %r", entry.path)
                    continue
                try:
                    if entry.is_symlink():
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if depth < config.max_depth:
                            subfolders.append(entry.path)
                        continue
                except OSError:
                    continue
                if os.path.splitext(entry.name)[1].lower() not in config.extensions:
                    continue
                found = stat_entry(entry.path)
                if found is not None and found.path not in seen:
                    seen.add(found.path)
                    yield found
            stack.extend((sub, depth + 1) for sub in reversed(subfolders))


__all__ = ["FileEntry", "VIDEO_EXTENSIONS", "WalkConfig", "normalise_root", "stat_entry", "walk_videos"]
