"""Incremental, resumable indexing of video folders.

    python -m index.build PATH... [--db FILE] [--model CKPT] [--window S --stride S | --shots]
                          [--workers N] [--factory auto|STRING] [--reindex] [--retry-failed]

What a run does (``build_library``):

1. Checks the model against the library's (:class:`ModelMismatchError` unless
   ``--reindex``; with ``--reindex`` the captions are re-encoded, every vector is
   dropped and every video queued again, in one transaction).
2. Walks the roots (``index.walk``) and sorts each file into
   * unchanged: same path, size, mtime (and segmentation), already indexed or
     already failed: skipped without reading it;
   * touched: same path and content fingerprint, new mtime: metadata updated;
   * moved: its fingerprint belongs to a row whose file is gone: the row takes the new path;
   * copied: its fingerprint belongs to an indexed file that still exists: rows and
     vectors are duplicated without decoding;
   * new or changed: queued for indexing.
   Rows under the walked roots whose files were not seen are removed.
3. Queued files are probed and segmented, then decoded clip by clip in worker
   processes; clips are encoded in batches (GPU if present) and each video is
   committed in one transaction (video row, whole-video embedding = mean of its
   segment embeddings, segment rows, vector log). Unreadable files are recorded as
   ``failed`` with the error class and reason and skipped.
4. Vector files are written every ``save_interval_s`` and at the end.

Progress: ``build_library(..., progress=callback)`` sends immutable
:class:`index.progress.BuildProgress` snapshots (files found/done, segments, rate,
current file, failures with reasons) while it runs; the CLI's tqdm bar is fed by the
same events (``index/progress.py``). Removing a library folder is ``index.roots``.

A run killed at any point loses at most the videos not yet committed; the next run
re-queues exactly those (their rows are missing or stale), see ``index/store.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
from sqlalchemy import delete, select, update

from data.decode import DecodeConfig
from data.segments import SegmentationConfig
from index.encoder import DEFAULT_MODEL_PATH, Encoder, EncoderConfig, default_model_path
from index.errors import LibraryError, ModelMismatchError
from index.fingerprint import FingerprintConfig, file_fingerprint
from index.progress import ProgressCallback, ProgressTracker, TqdmProgress
from index.schema import (
    SPACE_SEGMENTS,
    SPACE_TEXTS,
    SPACE_VIDEOS,
    SPACES,
    STATUS_FAILED,
    STATUS_INDEXED,
    Root,
    Segment,
    TextEntry,
    Video,
    embedding_to_bytes,
    utcnow,
)
from index.store import LibraryConfig, LibraryStore, Transaction, delete_videos
from index.vectors import VectorConfig
from index.walk import FileEntry, WalkConfig, normalise_root, walk_videos
from index.workers import (VideoPlan, WorkResult, decode_clips, default_workers, make_executor, plan_video,
                           task_outcome)

logger = logging.getLogger(__name__)

STATUS_PENDING = "pending"


@dataclass(frozen=True)
class BuildConfig:
    """Settings of one indexing run.

    Attributes:
        segmentation: windows (default 10 s, no overlap) or shots.
        workers: decoder processes (0 = decode in this process). A file whose decoder
            crashes its process is recorded as failed (``WorkerCrashedError``) and the
            run goes on with a fresh process.
        task_timeout_s: a worker task (probing and segmenting one file, or decoding
            ``chunk_segments`` clips of it) still running after this many seconds is
            killed and its file recorded as failed (``WorkerTimeoutError``). It is the
            backstop for a decoder call that never returns; ``decode.timeout_s`` is
            checked between frames. Shot segmentation reads every frame in one task, so
            shot-segmenting a video of several hours may need more. None or 0: no limit.
            Not enforced with ``workers=0``.
        chunk_segments: clips decoded per worker task.
        reindex: drop every vector and re-encode everything with the given model.
        retry_failed: try files recorded as failed again even when unchanged.
        decode: decoder settings for indexing.
        fingerprint: how much of each file the content fingerprint reads.
        walk: which files are videos.
        progress: show a tqdm progress bar on stderr (a :class:`index.progress.TqdmProgress`
            fed by the same events as the ``progress`` callback of :func:`build_library`).
    """

    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    workers: int = 0
    task_timeout_s: float | None = 3600.0
    chunk_segments: int = 16
    reindex: bool = False
    retry_failed: bool = False
    decode: DecodeConfig = field(default_factory=lambda: DecodeConfig(num_threads=1))
    fingerprint: FingerprintConfig = field(default_factory=FingerprintConfig)
    walk: WalkConfig = field(default_factory=WalkConfig)
    progress: bool = True


@dataclass
class BuildSummary:
    """What a run did. ``failed`` lists ``{"path", "error_type", "reason"}`` of files that failed in this run."""

    scanned: int = 0
    unchanged: int = 0
    indexed: int = 0
    reindexed: int = 0
    touched: int = 0
    moved: int = 0
    copied: int = 0
    removed: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    previously_failed: int = 0
    segments: int = 0
    texts_reencoded: int = 0
    seconds: float = 0.0

    @property
    def segments_per_s(self) -> float:
        return self.segments / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["segments_per_s"] = round(self.segments_per_s, 2)
        out["seconds"] = round(self.seconds, 3)
        return out


def segmentation_key(config: SegmentationConfig) -> str:
    """Stable text form of a segmentation config (stored per video; a change re-indexes the video)."""
    return json.dumps(asdict(config), sort_keys=True)


@dataclass
class _Job:
    """One queued file moving through the pipeline."""

    entry: FileEntry
    fingerprint: str
    root_id: int | None
    replaces: int | None  # row id of the stale row at this path
    plan: VideoPlan | None = None
    embeddings: list[np.ndarray | None] = field(default_factory=list)
    chunks_left: int = 0
    error: WorkResult | None = None


class _Indexer:
    def __init__(self, store: LibraryStore, encoder: Encoder, config: BuildConfig, tracker: ProgressTracker) -> None:
        self.store = store
        self.encoder = encoder
        self.config = config
        self.tracker = tracker
        self.summary = BuildSummary()
        self.seg_key = segmentation_key(config.segmentation)

    # ------------------------------------------------------------------ model

    def prepare_model(self) -> None:
        current = self.store.library_model()
        given = self.encoder.info
        if current is not None and current.fingerprint == given.fingerprint and not self.config.reindex:
            return
        if current is not None and current.fingerprint != given.fingerprint and not self.config.reindex:
            raise ModelMismatchError(current.describe(), given.describe(),
                                     self.store.reindex_command(given.checkpoint_path))
        with self.store.session() as session:
            texts = session.execute(select(TextEntry.id, TextEntry.text).order_by(TextEntry.id)).all()
        text_vectors = self.encoder.encode_texts([t for _, t in texts]) if texts else None
        with self.store.transaction() as tx:
            session = tx.session
            if current is not None:
                logger.info("re-indexing the library with %s (was %s)", given.describe(), current.describe())
                for space in SPACES:
                    tx.reset_space(space)
                session.execute(delete(Segment))
                session.execute(update(Video).where(Video.status == STATUS_INDEXED)
                                .values(status=STATUS_PENDING, embedding=None))
            self.store.set_model(tx, given)
            if text_vectors is not None and current is not None:
                for (text_id, _), vector in zip(texts, text_vectors):
                    session.execute(update(TextEntry).where(TextEntry.id == text_id)
                                    .values(embedding=embedding_to_bytes(vector)))
                    tx.add_vector(SPACE_TEXTS, text_id, vector)
                self.summary.texts_reencoded = len(texts)
        self.store.save(force=True)

    # ----------------------------------------------------------------- scan

    def register_roots(self, roots: Sequence[str]) -> dict[str, int]:
        ids: dict[str, int] = {}
        with self.store.transaction() as tx:
            for root in roots:
                row = tx.session.scalars(select(Root).where(Root.path == root)).first()
                if row is None:
                    row = Root(path=root)
                    tx.session.add(row)
                row.last_scan_at = utcnow()
                tx.session.flush()
                ids[root] = row.id
        return ids

    def scan(self, roots: Sequence[str]) -> list[_Job]:
        root_ids = self.register_roots(roots)
        with self.store.session() as session:
            rows = {v.path: v for v in session.scalars(select(Video))}
        by_fingerprint: dict[str, list[Video]] = {}
        for row in rows.values():
            if row.status == STATUS_INDEXED and row.fingerprint:
                by_fingerprint.setdefault(row.fingerprint, []).append(row)

        def root_of(path: str) -> int | None:
            for root in roots:
                if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
                    return root_ids[root]
            return None

        seen: set[str] = set()
        jobs: list[_Job] = []
        moves: list[tuple[Video, FileEntry]] = []
        copies: list[tuple[Video, FileEntry, str]] = []
        touches: list[tuple[Video, FileEntry]] = []
        for entry in walk_videos(roots, self.config.walk):
            seen.add(entry.path)
            self.summary.scanned += 1
            self.tracker.file_found()
            row = rows.get(entry.path)
            same_stat = row is not None and row.size_bytes == entry.size and row.mtime_ns == entry.mtime_ns
            if same_stat and row.status == STATUS_INDEXED and row.segmentation == self.seg_key:
                self.summary.unchanged += 1
                self.tracker.skipped()
                continue
            if same_stat and row.status == STATUS_FAILED and not self.config.retry_failed:
                self.summary.previously_failed += 1
                self.tracker.skipped()
                continue
            try:
                fingerprint = file_fingerprint(entry.path, self.config.fingerprint)
            except OSError as error:
                self._record_failure(entry, "", root_of(entry.path), row.id if row else None,
                                     WorkResult(error_type=type(error).__name__, reason=str(error)))
                continue
            if (row is not None and row.fingerprint == fingerprint and row.size_bytes == entry.size
                    and row.status == STATUS_INDEXED and row.segmentation == self.seg_key):
                touches.append((row, entry))
                continue
            jobs.append(_Job(entry, fingerprint, root_of(entry.path), row.id if row else None))
        # moves and copies: an indexed row with the same content fingerprint
        remaining: list[_Job] = []
        claimed: set[int] = set()
        for job in jobs:
            source = None
            gone = [r for r in by_fingerprint.get(job.fingerprint, [])
                    if r.id not in claimed and r.path not in seen and not os.path.exists(r.path)
                    and r.segmentation == self.seg_key and r.size_bytes == job.entry.size]
            if gone:
                source = gone[0]
                claimed.add(source.id)
                moves.append((source, job.entry))
                if job.replaces is not None:
                    self._delete_rows([job.replaces])
                continue
            alive = [r for r in by_fingerprint.get(job.fingerprint, [])
                     if r.path in seen and r.path != job.entry.path and r.segmentation == self.seg_key
                     and r.size_bytes == job.entry.size]
            if alive:
                copies.append((alive[0], job.entry, job.fingerprint))
                if job.replaces is not None:
                    self._delete_rows([job.replaces])
                continue
            remaining.append(job)
        for row, entry in touches:
            with self.store.transaction() as tx:
                tx.session.execute(update(Video).where(Video.id == row.id).values(mtime_ns=entry.mtime_ns))
            self.summary.touched += 1
            self.tracker.updated()
        for row, entry in moves:
            with self.store.transaction() as tx:
                tx.session.execute(update(Video).where(Video.id == row.id).values(
                    path=entry.path, mtime_ns=entry.mtime_ns, root_id=root_of(entry.path)))
            logger.info("moved: %s -> %s", row.path, entry.path)
            self.summary.moved += 1
            self.tracker.updated()
        for row, entry, fingerprint in copies:
            self._copy_video(row.id, entry, fingerprint, root_of(entry.path))
            logger.info("copy of %s: %s", row.path, entry.path)
            self.summary.copied += 1
            self.tracker.updated()
        # rows under the walked roots whose files are gone (and were not moved)
        moved_ids = {row.id for row, _ in moves}
        stale = [row.id for path, row in rows.items()
                 if path not in seen and row.id not in moved_ids and root_of(path) is not None
                 and row.id not in {j.replaces for j in remaining}]
        if stale:
            self._delete_rows(stale)
            self.summary.removed += len(stale)
            logger.info("removed %d videos no longer in the library folders", len(stale))
        return remaining

    # --------------------------------------------------------------- writing

    def _remove_video_rows(self, tx: Transaction, video_ids: Sequence[int]) -> None:
        delete_videos(tx, [i for i in video_ids if i])

    def _delete_rows(self, video_ids: Sequence[int]) -> None:
        with self.store.transaction() as tx:
            self._remove_video_rows(tx, list(video_ids))

    def _record_failure(self, entry: FileEntry, fingerprint: str, root_id: int | None, replaces: int | None,
                        result: WorkResult) -> None:
        with self.store.transaction() as tx:
            self._remove_video_rows(tx, [replaces] if replaces else [])
            tx.session.add(Video(root_id=root_id, path=entry.path, fingerprint=fingerprint, size_bytes=entry.size,
                                 mtime_ns=entry.mtime_ns, status=STATUS_FAILED, error_type=result.error_type,
                                 error=result.reason, segmentation=self.seg_key, indexed_at=utcnow()))
        self.summary.failed.append({"path": entry.path, "error_type": str(result.error_type),
                                    "reason": str(result.reason)})
        self.tracker.failed(entry.path, str(result.error_type), str(result.reason))
        logger.warning("skipped %s: %s (%s)", entry.path, result.reason, result.error_type)

    def _copy_video(self, source_id: int, entry: FileEntry, fingerprint: str, root_id: int | None) -> None:
        with self.store.transaction() as tx:
            session = tx.session
            src = session.get(Video, source_id)
            copy = Video(root_id=root_id, path=entry.path, fingerprint=fingerprint, size_bytes=entry.size,
                         mtime_ns=entry.mtime_ns, duration_s=src.duration_s, fps=src.fps, width=src.width,
                         height=src.height, codec=src.codec, status=STATUS_INDEXED, segmentation=src.segmentation,
                         indexed_at=utcnow(), embedding=src.embedding)
            session.add(copy)
            session.flush()
            dim = self.encoder.embed_dim
            if src.embedding is not None:
                tx.add_vector(SPACE_VIDEOS, copy.id, np.frombuffer(src.embedding, dtype="<f4", count=dim))
            for seg in session.scalars(select(Segment).where(Segment.video_id == source_id).order_by(Segment.index)):
                new = Segment(video_id=copy.id, index=seg.index, start_s=seg.start_s, end_s=seg.end_s,
                              embedding=seg.embedding)
                session.add(new)
                session.flush()
                tx.add_vector(SPACE_SEGMENTS, new.id, np.frombuffer(seg.embedding, dtype="<f4", count=dim))

    def _commit_video(self, job: _Job) -> None:
        plan = job.plan
        assert plan is not None
        vectors = np.stack([e for e in job.embeddings if e is not None]).astype(np.float32)
        video_vector = vectors.mean(axis=0)
        with self.store.transaction() as tx:
            session = tx.session
            self._remove_video_rows(tx, [job.replaces] if job.replaces else [])
            # a row may also exist at this path since the scan (a resumed job): replace it too
            other = session.scalars(select(Video.id).where(Video.path == job.entry.path)).all()
            self._remove_video_rows(tx, [i for i in other if i != job.replaces])
            video = Video(root_id=job.root_id, path=job.entry.path, fingerprint=job.fingerprint,
                          size_bytes=job.entry.size, mtime_ns=job.entry.mtime_ns, duration_s=plan.duration_s,
                          fps=plan.fps, width=plan.width, height=plan.height, codec=plan.codec,
                          status=STATUS_INDEXED, segmentation=self.seg_key, indexed_at=utcnow(),
                          embedding=embedding_to_bytes(video_vector))
            session.add(video)
            session.flush()
            tx.add_vector(SPACE_VIDEOS, video.id, video_vector)
            segments = [Segment(video_id=video.id, index=i, start_s=start, end_s=end,
                                embedding=embedding_to_bytes(vectors[i]))
                        for i, (start, end) in enumerate(plan.spans)]
            session.add_all(segments)
            session.flush()
            for seg in segments:
                tx.add_vector(SPACE_SEGMENTS, seg.id, vectors[seg.index])
        if job.replaces:
            self.summary.reindexed += 1
        else:
            self.summary.indexed += 1
        self.summary.segments += len(plan.spans)
        self.tracker.committed(job.entry.path, len(plan.spans))
        self.store.maybe_save()

    # -------------------------------------------------------------- pipeline

    def run_pipeline(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        config = self.config
        executor = make_executor(config.workers, config.task_timeout_s)
        window = max(2, 2 * max(config.workers, 1))
        try:
            plan_queue: deque[tuple[_Job, Any]] = deque()
            job_iter = iter(jobs)

            def top_up_plans() -> None:
                while len(plan_queue) < window:
                    job = next(job_iter, None)
                    if job is None:
                        return
                    plan_queue.append((job, executor.submit(plan_video, job.entry.path, config.segmentation,
                                                            config.decode)))

            def chunk_tasks() -> Iterator[tuple[_Job, int, tuple[tuple[float, float], ...]]]:
                top_up_plans()
                while plan_queue:
                    job, future = plan_queue.popleft()
                    top_up_plans()
                    result = task_outcome(future)
                    if not result.ok:
                        self._record_failure(job.entry, job.fingerprint, job.root_id, job.replaces, result)
                        continue
                    self.tracker.started(job.entry.path)
                    job.plan = result.value
                    spans = job.plan.spans
                    job.embeddings = [None] * len(spans)
                    starts = list(range(0, len(spans), config.chunk_segments))
                    job.chunks_left = len(starts)
                    for first in starts:
                        yield job, first, spans[first:first + config.chunk_segments]

            inflight: deque[tuple[_Job, int, Any]] = deque()
            tasks = chunk_tasks()
            pending_clips: list[tuple[_Job, int, np.ndarray]] = []
            exhausted = False
            while True:
                while not exhausted and len(inflight) < window:
                    task = next(tasks, None)
                    if task is None:
                        exhausted = True
                        break
                    job, first, spans = task
                    inflight.append((job, first, executor.submit(
                        decode_clips, job.entry.path, spans, self.encoder.sampling, self.encoder.transform,
                        config.decode)))
                if not inflight:
                    break
                job, first, future = inflight.popleft()
                result = task_outcome(future)
                if job.error is None and not result.ok:
                    job.error = result
                if job.error is None:
                    pending_clips.append((job, first, result.value))
                job.chunks_left -= 1
                if job.chunks_left == 0 and job.error is not None:
                    self._record_failure(job.entry, job.fingerprint, job.root_id, job.replaces, job.error)
                if sum(len(c) for _, _, c in pending_clips) >= self.encoder.batch_size or not inflight:
                    self._encode(pending_clips)
                    pending_clips = []
            if pending_clips:
                self._encode(pending_clips)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    def _encode(self, pending: list[tuple[_Job, int, np.ndarray]]) -> None:
        live = [(job, first, clips) for job, first, clips in pending if job.error is None]
        if not live:
            return
        embeddings = self.encoder.encode_clips(np.concatenate([c for _, _, c in live]))
        offset = 0
        finished: list[_Job] = []
        for job, first, clips in live:
            for i in range(len(clips)):
                job.embeddings[first + i] = embeddings[offset + i]
            offset += len(clips)
            if job.chunks_left == 0 and all(e is not None for e in job.embeddings) and job not in finished:
                finished.append(job)
        for job in finished:
            self._commit_video(job)


def build_library(store: LibraryStore, encoder: Encoder, roots: Sequence[str],
                  config: BuildConfig | None = None, progress: ProgressCallback | None = None) -> BuildSummary:
    """Index ``roots`` into ``store`` (a writable store) with ``encoder``; see the module doc.

    Args:
        progress: called on this thread with a :class:`index.progress.BuildProgress` snapshot
            while the roots are scanned, when each file starts, is committed or fails, and once
            with phase ``"done"`` at the end (see ``index/progress.py``). An exception it raises
            stops the run (committed videos are kept). ``config.progress`` adds a tqdm bar fed by
            the same events.

    Raises:
        ModelMismatchError: the library was built with another model and ``reindex`` is off.
        NotADirectoryError: a root is not a folder.
    """
    config = config or BuildConfig()
    started = time.monotonic()
    normalised = [normalise_root(r) for r in roots]
    bar = TqdmProgress(enabled=True) if config.progress else None
    tracker = ProgressTracker([c for c in (progress, bar) if c is not None])
    indexer = _Indexer(store, encoder, config, tracker)
    try:
        indexer.prepare_model()
        jobs = indexer.scan(normalised)
        tracker.scan_finished()
        logger.info("%d files scanned: %d to index, %d unchanged", indexer.summary.scanned, len(jobs),
                    indexer.summary.unchanged)
        try:
            indexer.run_pipeline(jobs)
        finally:
            store.save()
        indexer.summary.seconds = time.monotonic() - started
        tracker.finished()
    finally:
        if bar is not None:
            bar.close()
    return indexer.summary


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m index.build", description="Index video folders for search.")
    parser.add_argument("paths", nargs="+", help="library folders")
    parser.add_argument("--db", default="library.db", help="SQLite file or SQLAlchemy URL (default: library.db)")
    parser.add_argument("--vectors-dir", default=None, help="folder of the FAISS files (default: next to the db)")
    parser.add_argument("--model", default=default_model_path(), help=f"checkpoint (default: {DEFAULT_MODEL_PATH})")
    parser.add_argument("--window", type=float, default=10.0, help="window length in seconds (default 10)")
    parser.add_argument("--stride", type=float, default=None, help="window stride in seconds (default: = window)")
    parser.add_argument("--shots", action="store_true", help="segment by shot changes instead of windows")
    parser.add_argument("--max-shot", type=float, default=30.0, help="split longer shots into windows (seconds)")
    parser.add_argument("--workers", type=int, default=default_workers(), help="decoder processes (0 = inline)")
    parser.add_argument("--task-timeout", type=float, default=BuildConfig.task_timeout_s, metavar="S",
                        help="kill a decoder task running longer than S seconds and record its file as failed "
                             f"(0 = no limit; default {BuildConfig.task_timeout_s:g})")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="clips per encoder batch (default: 32 on a GPU, 8 on a CPU)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    parser.add_argument("--factory", default="auto", help="faiss index_factory string or 'auto'")
    parser.add_argument("--fast-seek", action="store_true", help="decode nearest keyframes (faster, less exact)")
    parser.add_argument("--reindex", action="store_true", help="re-encode everything with --model")
    parser.add_argument("--retry-failed", action="store_true", help="retry files that failed before")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.shots and args.stride is not None:
        parser.error("--stride applies to windows, not --shots")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the run summary as JSON on stdout. Exit 0 ok, 1 files failed, 2 refused."""
    args = _parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.shots:
            segmentation = SegmentationConfig(method="shots", max_segment_s=args.max_shot)
        else:
            segmentation = SegmentationConfig(method="window", window_s=args.window, stride_s=args.stride)
        config = BuildConfig(segmentation=segmentation, workers=args.workers, task_timeout_s=args.task_timeout,
                             reindex=args.reindex,
                             retry_failed=args.retry_failed, progress=not args.no_progress,
                             decode=DecodeConfig(num_threads=1, seek_mode="keyframe" if args.fast_seek else "exact"))
        encoder = Encoder(EncoderConfig(checkpoint=args.model, device=args.device, batch_size=args.batch_size))
        library = LibraryConfig(db=args.db, vectors_dir=args.vectors_dir, vectors=VectorConfig(factory=args.factory))
        with LibraryStore(library, writable=True) as store:
            summary = build_library(store, encoder, args.paths, config)
    except (LibraryError, FileNotFoundError, NotADirectoryError, ValueError) as error:
        logger.error("%s", error)
        print(json.dumps({"error": str(error), "error_type": type(error).__name__}))
        return 2
    except KeyboardInterrupt:
        logger.warning("interrupted; committed videos are kept, the next run resumes")
        return 130
    logger.info("done: %d indexed, %d re-indexed, %d unchanged, %d moved, %d copied, %d removed, %d failed, "
                "%d segments in %.1f s (%.1f segments/s)", summary.indexed, summary.reindexed, summary.unchanged,
                summary.moved, summary.copied, summary.removed, len(summary.failed), summary.segments,
                summary.seconds, summary.segments_per_s)
    print(json.dumps(summary.to_dict()))
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
