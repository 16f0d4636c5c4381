"""Indexing tests: incremental runs, corrupt files, model mismatch, kill -9 and resume, concurrent search."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from data.segments import SegmentationConfig
from index.build import BuildConfig, build_library
from index.encoder import Encoder, EncoderConfig
from index.errors import LibraryBusyError, ModelMismatchError
from index.schema import SPACE_SEGMENTS, SPACE_VIDEOS, STATUS_FAILED, STATUS_INDEXED, Segment, Video
from index.search import SearchEngine
from index.store import LibraryConfig, LibraryStore
from tests.index_fixtures import pattern_video, tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
CONFIG = BuildConfig(segmentation=SegmentationConfig(window_s=1.0), progress=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture(scope="module")
def encoder(checkpoint) -> Encoder:
    return Encoder(EncoderConfig(checkpoint=str(checkpoint), device="cpu"))


def _videos(store: LibraryStore) -> dict[str, Video]:
    with store.session() as session:
        return {v.path: v for v in session.scalars(select(Video))}


def _check_consistent(store: LibraryStore) -> None:
    """No duplicate segments, every indexed video fully segmented, FAISS ids == row ids."""
    with store.session() as session:
        seg_ids = sorted(session.scalars(select(Segment.id)))
        per_video = dict(session.execute(select(Segment.video_id, func.count()).group_by(Segment.video_id)).all())
        for video in session.scalars(select(Video)):
            if video.status == STATUS_INDEXED:
                expected = max(1, round(video.duration_s))  # 1 s windows of whole-second clips
                assert per_video.get(video.id) == expected, video.path
            else:
                assert video.id not in per_video
        video_ids = sorted(session.scalars(select(Video.id).where(Video.embedding.is_not(None))))
    assert sorted(store.indexes[SPACE_SEGMENTS].ids().tolist()) == seg_ids
    assert sorted(store.indexes[SPACE_VIDEOS].ids().tolist()) == video_ids


def test_incremental_runs(tmp_path, encoder):
    lib = tmp_path / "lib"
    for i in range(4):
        pattern_video(lib / f"v{i}.mp4", seed=i, seconds=2 + i % 2)
    (lib / "sub").mkdir()
    pattern_video(lib / "sub" / "deep.mp4", seed=9, seconds=2)
    (lib / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 200)  # truncated MP4
    (lib / "notes.txt").write_text("not a video")
    os.symlink(lib / "v0.mp4", lib / "link.mp4")  # symlinks are not followed
    cfg = LibraryConfig(db=str(tmp_path / "lib.db"))
    with LibraryStore(cfg, writable=True) as store:
        first = build_library(store, encoder, [str(lib)], CONFIG)
        assert (first.indexed, len(first.failed)) == (5, 1)
        assert first.failed[0]["path"].endswith("broken.mp4") and first.failed[0]["reason"]
        rows = _videos(store)
        broken = rows[str(lib / "broken.mp4")]
        assert broken.status == STATUS_FAILED and broken.error_type == "CorruptVideoError" and broken.error
        _check_consistent(store)

        again = build_library(store, encoder, [str(lib)], CONFIG)
        assert (again.unchanged, again.previously_failed, again.indexed, again.segments) == (5, 1, 0, 0)

        old_ids = {p: v.id for p, v in _videos(store).items()}
        # changed content, deleted, moved, copied, and a new file
        pattern_video(lib / "v0.mp4", seed=100, seconds=3)
        (lib / "v1.mp4").unlink()
        shutil.move(lib / "v2.mp4", lib / "sub" / "v2-moved.mp4")
        shutil.copy(lib / "v3.mp4", lib / "v3-copy.mp4")
        pattern_video(lib / "new.mp4", seed=50, seconds=2)
        third = build_library(store, encoder, [str(lib)], CONFIG)
        assert (third.reindexed, third.removed, third.moved, third.copied, third.indexed) == (1, 1, 1, 1, 1)
        rows = _videos(store)
        assert str(lib / "v1.mp4") not in rows and str(lib / "v2.mp4") not in rows
        assert rows[str(lib / "sub" / "v2-moved.mp4")].id == old_ids[str(lib / "v2.mp4")]  # same row, no re-encode
        assert rows[str(lib / "v0.mp4")].id != old_ids[str(lib / "v0.mp4")]
        assert rows[str(lib / "v0.mp4")].duration_s == pytest.approx(3.0)
        assert third.segments == 3 + 2  # only the changed and the new file were decoded
        _check_consistent(store)

        # the bad file repaired: retried because its size/mtime changed
        pattern_video(lib / "broken.mp4", seed=7, seconds=2)
        fourth = build_library(store, encoder, [str(lib)], CONFIG)
        assert fourth.reindexed == 1 and _videos(store)[str(lib / "broken.mp4")].status == STATUS_INDEXED
        # a different segmentation re-indexes everything
        fifth = build_library(store, encoder, [str(lib)], BuildConfig(segmentation=SegmentationConfig(window_s=2.0),
                                                                         progress=False))
        assert fifth.reindexed == len(_videos(store))
    with LibraryStore(cfg) as reader:  # what was saved opens consistent
        assert reader.vector_count(SPACE_VIDEOS) == len(_videos(reader))


def test_a_decoder_that_crashes_or_hangs_fails_only_its_file(tmp_path, encoder, monkeypatch):
    """With decoder processes, a segfault or a call that never returns is that file's failure,
    recorded like any corrupt file; the other files are indexed and the run ends."""
    from tests import pool_tasks

    monkeypatch.setattr("index.build.decode_clips", pool_tasks.decode_clips_or_misbehave)
    lib = tmp_path / "lib"
    for name, seed in [("a.mp4", 1), ("crash.mp4", 2), ("b.mp4", 3), ("hang.mp4", 4), ("c.mp4", 5)]:
        pattern_video(lib / name, seed=seed, seconds=2)
    config = BuildConfig(segmentation=SegmentationConfig(window_s=1.0), progress=False, workers=2,
                         task_timeout_s=5.0)
    with LibraryStore(LibraryConfig(db=str(tmp_path / "lib.db")), writable=True) as store:
        started = time.monotonic()
        summary = build_library(store, encoder, [str(lib)], config)
        assert time.monotonic() - started < 120
        assert summary.indexed == 3
        failed = {Path(f["path"]).name: f for f in summary.failed}
        assert failed.keys() == {"crash.mp4", "hang.mp4"}
        assert failed["crash.mp4"]["error_type"] == "WorkerCrashedError"
        assert "SIGSEGV" in failed["crash.mp4"]["reason"]
        assert failed["hang.mp4"]["error_type"] == "WorkerTimeoutError"
        rows = _videos(store)
        assert rows[str(lib / "crash.mp4")].status == STATUS_FAILED
        assert rows[str(lib / "hang.mp4")].error_type == "WorkerTimeoutError"
        assert all(rows[str(lib / n)].status == STATUS_INDEXED for n in ("a.mp4", "b.mp4", "c.mp4"))
        _check_consistent(store)
        # Recorded failures are not retried while the files are unchanged.
        again = build_library(store, encoder, [str(lib)], config)
        assert (again.unchanged, again.previously_failed, again.indexed) == (3, 2, 0)


def test_model_mismatch_is_refused_and_reindex_switches(tmp_path, encoder, checkpoint):
    lib = tmp_path / "lib"
    pattern_video(lib / "a.mp4", seed=1, seconds=2)
    cfg = LibraryConfig(db=str(tmp_path / "lib.db"))
    other_path = tiny_checkpoint(tmp_path / "other.pt", seed=1)
    other = Encoder(EncoderConfig(checkpoint=str(other_path), device="cpu"))
    with LibraryStore(cfg, writable=True) as store:
        build_library(store, encoder, [str(lib)], CONFIG)
        with pytest.raises(ModelMismatchError) as caught:
            build_library(store, other, [str(lib)], CONFIG)
        message = str(caught.value)
        assert str(checkpoint) in message and str(other_path) in message and "--reindex" in message
        assert "python -m index.build" in message
    with pytest.raises(ModelMismatchError):
        SearchEngine(cfg, model=other)
    with LibraryStore(cfg, writable=True) as store:
        summary = build_library(store, other, [str(lib)], BuildConfig(segmentation=CONFIG.segmentation,
                                                                       reindex=True, progress=False))
        assert summary.reindexed == 1 and store.library_model().fingerprint == other.info.fingerprint
        _check_consistent(store)
    with SearchEngine(cfg, model=other) as engine:
        assert engine.search_text("anything", k=1).items
    with pytest.raises(ModelMismatchError):
        SearchEngine(cfg, model=encoder)


def test_second_writer_is_refused(tmp_path):
    cfg = LibraryConfig(db=str(tmp_path / "lib.db"))
    with LibraryStore(cfg, writable=True):
        with pytest.raises(LibraryBusyError):
            LibraryStore(cfg, writable=True)


def _indexed_count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM videos WHERE status='indexed'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_kill_9_during_build_then_resume(tmp_path, checkpoint):
    lib = tmp_path / "lib"
    n = 24
    for i in range(n):
        pattern_video(lib / f"clip{i:02d}.mp4", seed=i, seconds=4)
    db = tmp_path / "lib.db"
    cmd = [sys.executable, "-m", "index.build", str(lib), "--db", str(db), "--model", str(checkpoint),
           "--window", "1", "--workers", "0", "--no-progress", "--device", "cpu", "--batch-size", "4"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed_at = []
    for wanted in (2, 9):  # kill twice at different points
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while _indexed_count(db) < wanted and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at.append(_indexed_count(db))
    assert killed_at[-1] < n, f"the run finished before it could be killed: {killed_at}"
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["unchanged"] == killed_at[-1] and summary["indexed"] == n - killed_at[-1]
    with LibraryStore(LibraryConfig(db=str(db))) as reader:
        assert len(_videos(reader)) == n
        with reader.session() as session:
            assert session.scalar(select(func.count()).select_from(Segment)) == n * 4
        _check_consistent_windows(reader, 4)


def _check_consistent_windows(store: LibraryStore, per_video: int) -> None:
    with store.session() as session:
        counts = session.execute(select(Segment.video_id, func.count()).group_by(Segment.video_id)).all()
        seg_ids = sorted(session.scalars(select(Segment.id)))
    assert all(c == per_video for _, c in counts)
    assert sorted(store.indexes[SPACE_SEGMENTS].ids().tolist()) == seg_ids


def test_concurrent_search_while_indexing(tmp_path, encoder):
    lib = tmp_path / "lib"
    for i in range(10):
        pattern_video(lib / f"c{i}.mp4", seed=i, seconds=3)
    cfg = LibraryConfig(db=str(tmp_path / "lib.db"), refresh_interval_s=0.0)
    (tmp_path / "empty").mkdir()
    with LibraryStore(cfg, writable=True) as store:  # create the library and record the model
        build_library(store, encoder, [str(tmp_path / "empty")], CONFIG)
    engine = SearchEngine(cfg, model=encoder)
    errors: list[BaseException] = []

    def index_all() -> None:
        try:
            with LibraryStore(cfg, writable=True) as writer:
                # decoding in a worker process, as the CLI does by default
                build_library(writer, encoder, [str(lib)], BuildConfig(segmentation=CONFIG.segmentation, workers=1,
                                                                        progress=False))
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    thread = threading.Thread(target=index_all)
    thread.start()
    seen_counts = set()
    searches = 0
    while thread.is_alive() or searches < 3:
        page = engine.search_text("a moving pattern", k=5)
        seen_counts.add(engine.store.vector_count(SPACE_SEGMENTS))
        for hit in page.items:  # every hit points at a committed, complete row
            assert Path(hit.path).is_file() and hit.end_s > hit.start_s
        searches += 1
    thread.join()
    assert not errors, errors
    engine.store.refresh(force=True)
    assert engine.store.vector_count(SPACE_SEGMENTS) == 30
    assert len(engine.search_text("a moving pattern", k=20, group_by_video=True).items) == 10
    assert len(seen_counts) > 1  # the reader saw the library grow while it was being written
    engine.close()


# ------------------------------------------------------------------ progress events


def test_progress_events_follow_the_run(tmp_path, encoder):
    from dataclasses import FrozenInstanceError

    from index.progress import PHASE_DONE, PHASE_INDEXING, PHASE_SCANNING, BuildProgress

    lib = tmp_path / "lib"
    for i in range(3):
        pattern_video(lib / f"p{i}.mp4", seed=i, seconds=2 + i)
    (lib / "broken.mp4").write_bytes(b"no video here")
    events: list[BuildProgress] = []
    callers: set[int] = set()

    def record(event: BuildProgress) -> None:
        events.append(event)
        callers.add(threading.get_ident())

    cfg = LibraryConfig(db=str(tmp_path / "lib.db"))
    with LibraryStore(cfg, writable=True) as store:
        summary = build_library(store, encoder, [str(lib)], CONFIG, progress=record)
    assert callers == {threading.get_ident()}  # called on the thread that runs the build
    phases = [e.phase for e in events]
    assert phases[-1] == PHASE_DONE and phases.count(PHASE_DONE) == 1
    first_indexing = phases.index(PHASE_INDEXING)
    assert set(phases[:first_indexing]) <= {PHASE_SCANNING}
    assert set(phases[first_indexing:-1]) == {PHASE_INDEXING}
    assert all(e.files_total == 4 for e in events[first_indexing:])  # final once the scan is over
    for before, after in zip(events, events[1:]):  # counts never go back
        assert after.files_done >= before.files_done and after.segments_done >= before.segments_done
        assert after.elapsed_s >= before.elapsed_s
    started = {e.current_file for e in events if e.current_file}
    assert started == {str(lib / f"p{i}.mp4") for i in range(3)}
    final = events[-1]
    assert (final.files_done, final.files_indexed, final.files_skipped, final.segments_done) == (4, 3, 0, 2 + 3 + 4)
    assert final.segments_done == summary.segments and final.current_file == ""
    assert [(f.path, f.error_type, f.reason) for f in final.failures] == [
        (f["path"], f["error_type"], f["reason"]) for f in summary.failed]
    assert final.failures[0].path.endswith("broken.mp4") and final.failures[0].reason
    assert final.segments_per_s > 0 and json.loads(json.dumps(final.to_dict()))["files_failed"] == 1
    with pytest.raises(FrozenInstanceError):
        final.files_total = 0  # snapshots are immutable: safe to hand to another thread

    events.clear()
    with LibraryStore(cfg, writable=True) as store:  # nothing changed: everything is skipped
        build_library(store, encoder, [str(lib)], CONFIG, progress=record)
    final = events[-1]
    assert (final.files_total, final.files_skipped, final.files_indexed, final.failures) == (4, 4, 0, ())


def test_a_raising_progress_callback_stops_the_run_and_the_next_run_resumes(tmp_path, encoder):
    lib = tmp_path / "lib"
    for i in range(4):
        pattern_video(lib / f"r{i}.mp4", seed=i, seconds=2)
    cfg = LibraryConfig(db=str(tmp_path / "lib.db"))

    def stop_after_two(event) -> None:
        if event.files_indexed == 2:
            raise KeyboardInterrupt

    with LibraryStore(cfg, writable=True) as store:
        with pytest.raises(KeyboardInterrupt):
            build_library(store, encoder, [str(lib)], CONFIG, progress=stop_after_two)
        assert len(_videos(store)) == 2  # what was committed stays
        resumed = build_library(store, encoder, [str(lib)], CONFIG)
        assert (resumed.unchanged, resumed.indexed) == (2, 2)
        _check_consistent(store)


def test_tqdm_bar_is_driven_by_the_events(capsys):
    from index.progress import BuildProgress, TqdmProgress

    with TqdmProgress(enabled=True) as bar:
        bar(BuildProgress(phase="indexing", files_total=5, files_indexed=2, files_skipped=1, segments_done=7,
                          elapsed_s=2.0))
    err = capsys.readouterr().err
    assert "3/5" in err and "segments=7" in err and "seg_per_s=3.5" in err


# ------------------------------------------------------------------ one encoder, two threads


class _OneAtATime:
    """Wraps a model method: counts calls, and how many run at once (each call sleeps a little so
    that two unserialised threads are all but sure to overlap)."""

    def __init__(self, method, log: list, kind: str, guard: threading.Lock, active: list) -> None:
        self.method, self.log, self.kind, self.guard, self.active = method, log, kind, guard, active

    def __call__(self, *args, **kwargs):
        with self.guard:
            self.active[0] += 1
            self.active[1] = max(self.active[1], self.active[0])
        try:
            time.sleep(0.01)
            return self.method(*args, **kwargs)
        finally:
            with self.guard:
                self.active[0] -= 1
                self.log.append((self.kind, time.monotonic()))


def test_searches_share_the_encoder_with_a_running_index_job(tmp_path, checkpoint):
    """Searches on one thread and an indexing run on another use the same Encoder: never two
    forward passes at once, both make progress meanwhile, and results are unaffected."""
    import numpy as np

    shared = Encoder(EncoderConfig(checkpoint=str(checkpoint), device="cpu", batch_size=2))
    expected = shared.encode_texts(["a moving pattern"])[0]
    log: list = []
    active = [0, 0]  # running now, most at once
    guard = threading.Lock()
    shared.model.encode_video = _OneAtATime(shared.model.encode_video, log, "video", guard, active)
    shared.model.encode_text = _OneAtATime(shared.model.encode_text, log, "text", guard, active)
    lib = tmp_path / "lib"
    for i in range(6):
        pattern_video(lib / f"e{i}.mp4", seed=i, seconds=4)
    cfg = LibraryConfig(db=str(tmp_path / "lib.db"), refresh_interval_s=0.0)
    (tmp_path / "empty").mkdir()
    with LibraryStore(cfg, writable=True) as store:
        build_library(store, shared, [str(tmp_path / "empty")], CONFIG)
    engine = SearchEngine(cfg, model=shared)
    errors: list[BaseException] = []

    def index_all() -> None:
        try:
            with LibraryStore(cfg, writable=True) as writer:
                build_library(writer, shared, [str(lib)], CONFIG)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    thread = threading.Thread(target=index_all)
    thread.start()
    vectors = []
    while thread.is_alive():
        vectors.append(engine.embed_text("a moving pattern"))
        engine.search_text("a moving pattern", k=3)
    thread.join()
    assert not errors, errors
    assert active[1] == 1, f"{active[1]} forward passes ran at once"
    video_times = [t for kind, t in log if kind == "video"]
    during = [t for kind, t in log if kind == "text" and video_times[0] < t < video_times[-1]]
    assert len(video_times) >= 6 and len(during) >= 2  # searches were served between indexing batches
    assert all(np.allclose(v, expected, atol=1e-6) for v in vectors)
    assert len(engine.search_text("a moving pattern", k=20, group_by_video=True).items) == 6
    engine.close()
