"""Progress events of an indexing run (``index.build.build_library``) and their consumers.

``build_library(..., progress=callback)`` calls ``callback(event)`` with a
:class:`BuildProgress` on the thread that runs the build:

* phase ``"scanning"``: while the roots are walked (at most every
  ``ProgressTracker.scan_interval_s``); ``files_total`` grows;
* phase ``"indexing"``: once when the scan is over (``files_total`` is final), then
  whenever a file is started, committed or failed;
* phase ``"done"``: exactly once, when the run finished without an exception (the counts
  then equal the run's :class:`index.build.BuildSummary`).

Every event is an immutable snapshot (frozen dataclass, tuples), so a consumer may keep
it or hand it to another thread without copying. A callback should return quickly (it
runs between files); an exception it raises stops the run like Ctrl-C does: videos
already committed are kept and the next run resumes.

The CLI's tqdm bar is one such consumer (:class:`TqdmProgress`); the Gradio app is another.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

logger = logging.getLogger(__name__)

PHASE_SCANNING = "scanning"
PHASE_INDEXING = "indexing"
PHASE_DONE = "done"


@dataclass(frozen=True)
class FileFailure:
    """A file this run could not index: its path, the error class name and the reason."""

    path: str
    error_type: str
    reason: str


@dataclass(frozen=True)
class BuildProgress:
    """A snapshot of an indexing run (see the module doc for when one is sent).

    Attributes:
        phase: ``"scanning"``, ``"indexing"`` or ``"done"``.
        files_total: video files found under the roots (final from the ``"indexing"`` phase on).
        files_skipped: unchanged files, not read (including unchanged files that failed in an earlier run).
        files_updated: files handled without decoding: touched (new mtime), moved, copied.
        files_indexed: files decoded, encoded and committed (new or changed).
        segments_done: segments committed by this run (searchable).
        elapsed_s: seconds since the run started.
        current_file: the file being decoded or encoded now ("" when none).
        failures: files of this run that could not be indexed, in the order they failed.
    """

    phase: str = PHASE_SCANNING
    files_total: int = 0
    files_skipped: int = 0
    files_updated: int = 0
    files_indexed: int = 0
    segments_done: int = 0
    elapsed_s: float = 0.0
    current_file: str = ""
    failures: tuple[FileFailure, ...] = ()

    @property
    def files_failed(self) -> int:
        """Files that failed in this run."""
        return len(self.failures)

    @property
    def files_done(self) -> int:
        """Files dealt with so far, whatever the outcome (skipped, updated, indexed or failed)."""
        return self.files_skipped + self.files_updated + self.files_indexed + self.files_failed

    @property
    def segments_per_s(self) -> float:
        """Committed segments per second of the run so far."""
        return self.segments_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the properties included)."""
        return {"phase": self.phase, "files_total": self.files_total, "files_done": self.files_done,
                "files_skipped": self.files_skipped, "files_updated": self.files_updated,
                "files_indexed": self.files_indexed, "files_failed": self.files_failed,
                "segments_done": self.segments_done, "segments_per_s": round(self.segments_per_s, 3),
                "elapsed_s": round(self.elapsed_s, 3), "current_file": self.current_file,
                "failures": [{"path": f.path, "error_type": f.error_type, "reason": f.reason}
                             for f in self.failures]}


ProgressCallback = Callable[[BuildProgress], None]


class ProgressTracker:
    """Counts of one run, sent as :class:`BuildProgress` events to ``callbacks`` (used by the builder).

    Not thread-safe by itself: the builder updates it from the one thread that runs the build.
    """

    scan_interval_s: float = 0.25

    def __init__(self, callbacks: Sequence[ProgressCallback] = ()) -> None:
        self._callbacks = list(callbacks)
        self._started = time.monotonic()
        self._last_scan_event = float("-inf")
        self._state = BuildProgress()

    @property
    def state(self) -> BuildProgress:
        """The latest snapshot (with the elapsed time of its last update)."""
        return self._state

    def _emit(self, **changes: Any) -> None:
        self._state = replace(self._state, elapsed_s=time.monotonic() - self._started, **changes)
        for callback in self._callbacks:
            callback(self._state)

    def file_found(self) -> None:
        """The walk found one more video file (events are throttled while scanning)."""
        self._state = replace(self._state, files_total=self._state.files_total + 1)
        now = time.monotonic()
        if now - self._last_scan_event >= self.scan_interval_s:
            self._last_scan_event = now
            self._emit()

    def skipped(self) -> None:
        """An unchanged file (no event: many are counted during the scan)."""
        self._state = replace(self._state, files_skipped=self._state.files_skipped + 1)

    def updated(self) -> None:
        """A touched, moved or copied file (no event; the scan's end sends one)."""
        self._state = replace(self._state, files_updated=self._state.files_updated + 1)

    def failed(self, path: str, error_type: str, reason: str) -> None:
        """A file of this run could not be indexed."""
        self._emit(failures=self._state.failures + (FileFailure(path, error_type, reason),),
                   current_file="" if self._state.current_file == path else self._state.current_file)

    def scan_finished(self) -> None:
        """The walk is over: ``files_total`` is final."""
        self._emit(phase=PHASE_INDEXING)

    def started(self, path: str) -> None:
        """Decoding ``path`` begins."""
        self._emit(current_file=path)

    def committed(self, path: str, segments: int) -> None:
        """``path`` was committed with ``segments`` segments."""
        self._emit(files_indexed=self._state.files_indexed + 1, segments_done=self._state.segments_done + segments,
                   current_file="" if self._state.current_file == path else self._state.current_file)

    def finished(self) -> None:
        """The run is over (sends the ``"done"`` event)."""
        self._emit(phase=PHASE_DONE, current_file="")


class TqdmProgress:
    """A tqdm bar (files, segments, segments/s) on stderr driven by progress events; a :data:`ProgressCallback`.

    Use as a context manager (or call :meth:`close`) so the bar is closed.
    """

    def __init__(self, enabled: bool = True, desc: str = "indexing") -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=0, unit="file", desc=desc, disable=not enabled, dynamic_ncols=True)

    def __call__(self, event: BuildProgress) -> None:
        bar = self._bar
        if bar.total != event.files_total:
            bar.total = event.files_total
        bar.n = event.files_done
        bar.set_postfix(segments=event.segments_done, seg_per_s=f"{event.segments_per_s:.1f}",
                        failed=event.files_failed, refresh=False)
        bar.refresh()

    def __enter__(self) -> "TqdmProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._bar.close()


__all__ = ["BuildProgress", "FileFailure", "PHASE_DONE", "PHASE_INDEXING", "PHASE_SCANNING", "ProgressCallback",
           "ProgressTracker", "TqdmProgress"]
