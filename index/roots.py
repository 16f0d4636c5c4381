"""Library folders (roots): per-root counts, and removing a root with everything indexed under it.

    python -m index.roots list [--db FILE]               # JSON: every root with its counts
    python -m index.roots remove PATH... [--db FILE]     # JSON: what was removed

Which videos belong to a root: those whose path is the root or lies below it (path
components, not string prefixes: ``/v/a`` does not contain ``/v/ab``). Roots may nest;
a video under two roots counts for both in :func:`root_stats`, and :func:`remove_roots`
keeps the videos still covered by a root that stays (their ``root_id`` moves to the
deepest remaining root), since the next scan of that root would index them again.

Removal follows the store's consistency protocol (``index/store.py``): the roots, their
videos, segments and whole-video embeddings are deleted in **one** write transaction,
which logs the removal of every segment and video vector in ``vector_log`` and bumps the
generation; the FAISS indexes are changed in memory after the commit and the files are
written last. A crash before the commit leaves everything as it was; a crash after it
leaves files that the next open repairs by replaying the log. Readers (a running
``SearchEngine``) pick the removal up on their next refresh. Caption corpora are not
tied to roots and are kept. Files on disk are never touched.

Roots are matched after ``expanduser`` and ``realpath`` (as ``index.build`` stores them);
the folder need not exist any more. A path that is not a root raises
:class:`NotALibraryRootError` and changes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import Connection

from index.errors import LibraryError, NotALibraryRootError
from index.schema import STATUS_FAILED, STATUS_INDEXED, Root, Segment, Video
from index.store import LibraryConfig, LibraryStore, delete_videos

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RootStats:
    """Counts of one library root.

    Attributes:
        path: the root as stored (absolute, symlinks resolved).
        videos: indexed videos under it.
        segments: segments of those videos.
        failed: files under it recorded as failed (see ``failures`` of ``index.build`` for reasons).
        added_at: when the root was first indexed (UTC, naive).
        last_scan_at: when it was last scanned (UTC, naive), None if never.
    """

    path: str
    videos: int
    segments: int
    failed: int
    added_at: datetime | None = None
    last_scan_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (datetimes as ISO text)."""
        out = asdict(self)
        for key in ("added_at", "last_scan_at"):
            out[key] = out[key].isoformat() if out[key] is not None else None
        return out


@dataclass
class RemoveSummary:
    """What :func:`remove_roots` did.

    Attributes:
        roots: the roots removed (as stored).
        videos: video rows deleted (indexed and failed).
        segments: segment rows deleted (each one FAISS vector).
        video_ids: ids of the deleted videos (e.g. to drop their cached thumbnails).
        kept: videos under a removed root kept because a remaining root covers them.
    """

    roots: list[str] = field(default_factory=list)
    videos: int = 0
    segments: int = 0
    video_ids: list[int] = field(default_factory=list)
    kept: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (without the id list)."""
        return {"roots": list(self.roots), "videos": self.videos, "segments": self.segments, "kept": self.kept}


def _under(column: Any, folder: str) -> Any:
    """SQL condition: ``column`` is ``folder`` or a path below it (LIKE wildcards escaped)."""
    folder = folder.rstrip(os.sep) or os.sep
    if folder == os.sep:
        return column.startswith(os.sep)
    return or_(column == folder, column.startswith(folder + os.sep, autoescape=True))


def _is_under(path: str, folder: str) -> bool:
    folder = folder.rstrip(os.sep)
    return path == folder or path.startswith(folder + os.sep) or folder == ""


def canonical_root(path: str | os.PathLike[str]) -> str:
    """``path`` as ``index.build`` stores roots (``expanduser`` + ``realpath``); it need not exist."""
    return os.path.realpath(os.path.expanduser(os.fspath(path)))


def _root_stats(connection: Connection) -> list[RootStats]:
    out = []
    roots = connection.execute(select(Root.path, Root.added_at, Root.last_scan_at).order_by(Root.id)).all()
    for path, added_at, last_scan_at in roots:
        counts = dict(connection.execute(
            select(Video.status, func.count()).where(_under(Video.path, path)).group_by(Video.status)).all())
        segments = connection.scalar(
            select(func.count()).select_from(Segment).join(Video, Video.id == Segment.video_id)
            .where(_under(Video.path, path)))
        out.append(RootStats(path=path, videos=int(counts.get(STATUS_INDEXED, 0)), segments=int(segments or 0),
                             failed=int(counts.get(STATUS_FAILED, 0)), added_at=added_at, last_scan_at=last_scan_at))
    return out


def root_stats(store: LibraryStore) -> list[RootStats]:
    """Counts of every root, in the order they were added, all read from one committed snapshot."""
    with store.snapshot() as connection:
        return _root_stats(connection)


def remove_roots(store: LibraryStore, paths: Sequence[str | os.PathLike[str]], save: bool = True) -> RemoveSummary:
    """Forget the library roots ``paths`` and everything indexed under them (see the module doc).

    Args:
        store: a writable store (holds the writer lock, so no indexing run is going on).
        paths: roots as given to ``index.build`` (or their symlinked/``~`` forms).
        save: write the vector files afterwards (as an indexing run does at its end).

    Returns:
        what was removed.

    Raises:
        NotALibraryRootError: a path is not a root of this library (nothing is removed).
        LibraryError: the store was opened read-only.
    """
    if not store.writable:
        raise LibraryError("removing library folders needs a writable library store")
    wanted = {canonical_root(p): os.fspath(p) for p in paths}
    summary = RemoveSummary()
    with store.transaction() as tx:
        session = tx.session
        rows = {r.path: r for r in session.scalars(select(Root))}
        for canonical, given in wanted.items():
            if canonical not in rows and given not in rows:
                raise NotALibraryRootError(given, sorted(rows))
        removed = [rows[c] if c in rows else rows[g] for c, g in wanted.items()]
        removed_paths = {r.path for r in removed}
        remaining = sorted((p for p in rows if p not in removed_paths), key=len, reverse=True)  # deepest first
        removed_ids = [r.id for r in removed]
        candidates = session.execute(select(Video.id, Video.path).where(
            or_(Video.root_id.in_(removed_ids), *[_under(Video.path, p) for p in removed_paths]))).all()
        doomed: list[int] = []
        for video_id, path in candidates:
            keeper = next((p for p in remaining if _is_under(path, p)), None)
            if keeper is None:
                doomed.append(int(video_id))
            else:
                session.execute(update(Video).where(Video.id == video_id).values(root_id=rows[keeper].id))
                summary.kept += 1
        for start in range(0, len(doomed), 500):
            summary.segments += int(session.scalar(select(func.count()).select_from(Segment).where(
                Segment.video_id.in_(doomed[start:start + 500]))) or 0)
        summary.videos = delete_videos(tx, doomed)
        summary.video_ids = sorted(doomed)
        for root in removed:
            session.delete(root)
        summary.roots = sorted(removed_paths)
    logger.info("removed library folder(s) %s: %d videos, %d segments (%d videos kept under other folders)",
                ", ".join(summary.roots), summary.videos, summary.segments, summary.kept)
    if save:
        store.save()
    return summary


# ---------------------------------------------------------------------- CLI


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m index.roots",
                                     description="List or remove library folders (JSON out).")
    parser.add_argument("--db", default="library.db", help="SQLite file or SQLAlchemy URL (default: library.db)")
    parser.add_argument("--vectors-dir", default=None, help="folder of the FAISS files (default: next to the db)")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every library folder with its counts")
    remove = sub.add_parser("remove", help="forget folders and their videos (files on disk are untouched)")
    remove.add_argument("paths", nargs="+", help="library folders, as given to index.build")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: one JSON object on stdout; exit 0, or 2 with ``{"error", "error_type"}``
    (not a library folder, no library, another process is writing it)."""
    args = _parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = LibraryConfig(db=args.db, vectors_dir=args.vectors_dir)
    try:
        if args.command == "list":
            with LibraryStore(config) as store:
                result: dict[str, Any] = {"roots": [r.to_dict() for r in root_stats(store)]}
        else:
            LibraryStore(config).close()  # refuses a missing library instead of creating an empty one
            with LibraryStore(config, writable=True) as store:
                result = remove_roots(store, args.paths).to_dict()
    except LibraryError as error:
        logger.error("%s", error)
        print(json.dumps({"error": str(error), "error_type": type(error).__name__}))
        return 2
    print(json.dumps(result))
    return 0


__all__ = ["RemoveSummary", "RootStats", "canonical_root", "main", "remove_roots", "root_stats"]

if __name__ == "__main__":
    sys.exit(main())
