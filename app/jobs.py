"""Indexing in a background thread, one run at a time, with a progress snapshot.

Searches go through Gradio's queue and never wait for indexing: the run happens
in a daemon thread started here, and the UI polls :meth:`IndexingJobs.snapshot`
(through a ``gr.Timer``) to show live progress.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from app.backend import Failure, IndexProgress, LibraryBackend
from app.security import UserError

logger = logging.getLogger(__name__)

IDLE, RUNNING, DONE, FAILED = "idle", "running", "done", "failed"


@dataclass
class JobSnapshot:
    """The state of the current (or last) indexing run."""

    state: str = IDLE
    job_id: int = 0
    folders: list[str] = field(default_factory=list)
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    progress: IndexProgress = field(default_factory=IndexProgress)
    error: str = ""

    @property
    def elapsed_s(self) -> float:
        """Seconds since the run started (to its end if finished)."""
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.monotonic()) - self.started_at

    @property
    def segments_per_s(self) -> float:
        """Indexing rate so far."""
        elapsed = self.elapsed_s
        return self.progress.segments / elapsed if elapsed > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (the ``index_progress`` API result)."""
        p = self.progress
        return {
            "state": self.state, "job_id": self.job_id, "folders": list(self.folders),
            "files_total": p.files_total, "files_done": p.files_done, "files_skipped": p.files_skipped,
            "segments": p.segments, "segments_per_s": round(self.segments_per_s, 3),
            "elapsed_s": round(self.elapsed_s, 3), "current_file": p.current_file,
            "failures": [{"file": f.file, "reason": f.reason} for f in p.failures], "error": self.error,
        }


class IndexingJobs:
    """Starts indexing runs on a backend in a background thread; one at a time."""

    def __init__(self, backend: LibraryBackend, on_finished: Optional[Callable[[], None]] = None) -> None:
        self._backend = backend
        self._on_finished = on_finished
        self._lock = threading.Lock()
        self._snapshot = JobSnapshot()
        self._thread: Optional[threading.Thread] = None
        self._exclusive: Optional[str] = None

    def snapshot(self) -> JobSnapshot:
        """A copy of the current state (safe to read while the run goes on)."""
        with self._lock:
            return copy.deepcopy(self._snapshot)

    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        with self._lock:
            return self._snapshot.state == RUNNING

    def start(self, folders: Sequence[Path]) -> JobSnapshot:
        """Start indexing ``folders`` in the background.

        Raises:
            UserError: a run is already in progress.
        """
        with self._lock:
            if self._snapshot.state == RUNNING:
                raise UserError("an indexing run is already in progress; wait for it to finish")
            if self._exclusive is not None:
                raise UserError(f"{self._exclusive} is in progress; try again when it is done")
            self._snapshot = JobSnapshot(state=RUNNING, job_id=self._snapshot.job_id + 1,
                                         folders=[str(f) for f in folders], started_at=time.monotonic())
            job_id = self._snapshot.job_id
            self._thread = threading.Thread(target=self._run, args=(job_id, list(folders)),
                                            name=f"indexing-{job_id}", daemon=True)
            self._thread.start()
            return copy.deepcopy(self._snapshot)

    @contextmanager
    def exclusive(self, what: str) -> Iterator[None]:
        """Run a library change that must not overlap an indexing run (e.g. removing a folder).

        While the block runs, :meth:`start` refuses with a message naming ``what``.

        Raises:
            UserError: an indexing run (or another exclusive change) is in progress.
        """
        with self._lock:
            if self._snapshot.state == RUNNING:
                raise UserError(f"wait for the indexing run to finish before {what}")
            if self._exclusive is not None:
                raise UserError(f"{self._exclusive} is in progress; try again when it is done")
            self._exclusive = what
        try:
            yield
        finally:
            with self._lock:
                self._exclusive = None

    def wait(self, timeout: Optional[float] = None) -> JobSnapshot:
        """Block until the current run ends (or ``timeout``); return the snapshot."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.snapshot()

    def _update(self, job_id: int, progress: IndexProgress) -> None:
        with self._lock:
            if self._snapshot.job_id == job_id:
                self._snapshot.progress = copy.deepcopy(progress)

    def _run(self, job_id: int, folders: list[Path]) -> None:
        logger.info("indexing run %d started: %s", job_id, ", ".join(map(str, folders)))
        try:
            final = self._backend.index_folders(folders, lambda p: self._update(job_id, p))
        except Exception as error:  # the run's failure is reported in the UI, never raised into Gradio
            logger.exception("indexing run %d failed", job_id)
            with self._lock:
                self._snapshot.state = FAILED
                self._snapshot.error = f"{type(error).__name__}: {error}"
                self._snapshot.finished_at = time.monotonic()
        else:
            with self._lock:
                self._snapshot.progress = copy.deepcopy(final)
                self._snapshot.state = DONE
                self._snapshot.finished_at = time.monotonic()
            logger.info("indexing run %d done: %d files, %d segments, %d failures", job_id,
                        final.files_done, final.segments, len(final.failures))
        if self._on_finished is not None:
            try:
                self._on_finished()
            except Exception:
                logger.exception("after-indexing hook failed")


__all__ = ["DONE", "FAILED", "IDLE", "IndexingJobs", "JobSnapshot", "RUNNING", "Failure"]
