"""Library folders: per-root counts, removing a root (rows, vectors, log, crash consistency), the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

import index.roots as roots_module
from data.segments import SegmentationConfig
from index.build import BuildConfig, build_library
from index.encoder import Encoder, EncoderConfig
from index.errors import LibraryBusyError, NotALibraryRootError
from index.roots import main as roots_main
from index.roots import remove_roots, root_stats
from index.schema import SPACE_SEGMENTS, SPACE_TEXTS, SPACE_VIDEOS, Root, Segment, TextEntry, VectorLog, Video
from index.search import SearchEngine
from index.store import LibraryConfig, LibraryStore
from index.texts import Caption, add_texts
from tests.index_fixtures import pattern_video, tiny_checkpoint

CONFIG = BuildConfig(segmentation=SegmentationConfig(window_s=1.0), progress=False)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Encoder:
    path = tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")
    return Encoder(EncoderConfig(checkpoint=str(path), device="cpu"))


@pytest.fixture(scope="module")
def built(tmp_path_factory, encoder):
    """A library with roots a (2 videos + a broken file), a/sub (1 video, nested) and b (2 videos),
    plus captions; copied per test by ``library``."""
    base = tmp_path_factory.mktemp("roots")
    a, b = base / "a", base / "b"
    pattern_video(a / "a0.mp4", seed=1, seconds=2)
    pattern_video(a / "a1.mp4", seed=2, seconds=3)
    pattern_video(a / "sub" / "s0.mp4", seed=3, seconds=2)
    (a / "broken.mp4").write_bytes(b"not a video at all")
    pattern_video(b / "b0.mp4", seed=4, seconds=2)
    pattern_video(b / "b1.mp4", seed=5, seconds=2)
    db = base / "lib.db"
    with LibraryStore(LibraryConfig(db=str(db)), writable=True) as store:
        build_library(store, encoder, [str(a), str(b)], CONFIG)
        build_library(store, encoder, [str(a / "sub")], CONFIG)
        add_texts(store, encoder, [Caption("a moving pattern"), Caption("colour blocks")], "captions")
    return base


@pytest.fixture
def library(built, tmp_path) -> Path:
    """A private copy of the built library (database and vector files; videos stay shared)."""
    for name in os.listdir(built):
        if name.startswith("lib.db"):
            (tmp_path / name).write_bytes((built / name).read_bytes())
    return tmp_path / "lib.db"


def _assert_consistent(store: LibraryStore) -> None:
    """FAISS ids of every space == row ids, exactly."""
    with store.session() as session:
        seg_ids = sorted(session.scalars(select(Segment.id)))
        vid_ids = sorted(session.scalars(select(Video.id).where(Video.embedding.is_not(None))))
        text_ids = sorted(session.scalars(select(TextEntry.id)))
    assert sorted(store.indexes[SPACE_SEGMENTS].ids().tolist()) == seg_ids
    assert sorted(store.indexes[SPACE_VIDEOS].ids().tolist()) == vid_ids
    assert sorted(store.indexes[SPACE_TEXTS].ids().tolist()) == text_ids


def _paths(store: LibraryStore) -> set[str]:
    with store.session() as session:
        return set(session.scalars(select(Video.path)))


def test_root_stats_counts_videos_segments_and_failures_per_root(built, library):
    a, b = str(built / "a"), str(built / "b")
    with LibraryStore(LibraryConfig(db=str(library))) as store:
        stats = {s.path: s for s in root_stats(store)}
    assert list(stats) == [a, b, str(built / "a" / "sub")]  # in the order they were added
    assert (stats[a].videos, stats[a].segments, stats[a].failed) == (3, 2 + 3 + 2, 1)  # sub is inside a
    assert (stats[b].videos, stats[b].segments, stats[b].failed) == (2, 4, 0)
    sub = stats[str(built / "a" / "sub")]
    assert (sub.videos, sub.segments, sub.failed) == (1, 2, 0)
    assert sub.last_scan_at is not None and json.loads(json.dumps(sub.to_dict()))["path"] == sub.path


def test_remove_root_deletes_its_videos_segments_and_vectors(built, library, encoder):
    cfg = LibraryConfig(db=str(library), refresh_interval_s=0.0)
    b = built / "b"
    reader = SearchEngine(cfg, model=encoder)
    before = reader.search_text("a moving pattern", k=20, group_by_video=True)
    assert str(b / "b0.mp4") in {hit.path for hit in before.items}
    with LibraryStore(cfg, writable=True) as store:
        generation = store.generation
        summary = remove_roots(store, [str(b)])
        assert (summary.roots, summary.videos, summary.segments, summary.kept) == ([str(b)], 2, 4, 0)
        assert len(summary.video_ids) == 2
        assert not any(p.startswith(str(b)) for p in _paths(store))
        assert store.roots() == [str(built / "a"), str(built / "a" / "sub")]
        assert store.generation == generation + 1  # one transaction
        _assert_consistent(store)
        with store.session() as session:  # the files were written and the log pruned
            assert session.scalar(select(func.count()).select_from(VectorLog)) == 0
            assert session.scalar(select(func.count()).select_from(TextEntry)) == 2  # captions are kept
    # a reader that stayed open catches up by itself; a new one opens consistent
    after = reader.search_text("a moving pattern", k=20, group_by_video=True)
    assert {hit.path for hit in after.items} == {str(built / "a" / n) for n in ("a0.mp4", "a1.mp4", "sub/s0.mp4")}
    assert reader.store.vector_count(SPACE_SEGMENTS) == 7
    reader.close()
    with LibraryStore(cfg) as fresh:
        _assert_consistent(fresh)
        assert fresh.vector_count(SPACE_VIDEOS) == 3


def _root_id_of(store: LibraryStore, video: Path) -> int:
    with store.session() as session:
        return session.scalars(select(Video.root_id).where(Video.path == str(video))).one()


def _root_id(store: LibraryStore, root: Path) -> int:
    with store.session() as session:
        return session.scalars(select(Root.id).where(Root.path == str(root))).one()


def test_removing_an_inner_root_keeps_what_the_outer_root_covers(built, library):
    a, sub = built / "a", built / "a" / "sub"
    with LibraryStore(LibraryConfig(db=str(library)), writable=True) as store:
        inner = remove_roots(store, [str(sub)])  # a still covers a/sub: nothing is deleted
        assert (inner.videos, inner.kept) == (0, 1) and store.roots() == [str(a), str(built / "b")]
        assert _root_id_of(store, sub / "s0.mp4") == _root_id(store, a)
        outer = remove_roots(store, [str(a)])
        assert (outer.videos, outer.segments) == (4, 7)  # a0, a1, sub/s0 and the failed broken.mp4
        assert _paths(store) == {str(built / "b" / "b0.mp4"), str(built / "b" / "b1.mp4")}
        _assert_consistent(store)


def test_removing_an_outer_root_keeps_the_inner_root_and_its_videos(built, library):
    a, sub = built / "a", built / "a" / "sub"
    with LibraryStore(LibraryConfig(db=str(library)), writable=True) as store:
        assert _root_id_of(store, sub / "s0.mp4") == _root_id(store, a)  # indexed first through a
        outer = remove_roots(store, [str(a)])
        assert (outer.videos, outer.segments, outer.kept) == (3, 5, 1)
        assert str(sub / "s0.mp4") in _paths(store) and store.roots() == [str(built / "b"), str(sub)]
        assert _root_id_of(store, sub / "s0.mp4") == _root_id(store, sub)  # now belongs to the inner root
        _assert_consistent(store)


@pytest.mark.parametrize("make_path", [
    lambda base: base / "a" / "a0.mp4",          # a file inside a root
    lambda base: base / "nowhere",               # no such folder
    lambda base: base,                           # the parent of the roots
    lambda base: Path("a"),                      # relative
])
def test_remove_refuses_paths_that_are_not_roots(built, library, make_path):
    with LibraryStore(LibraryConfig(db=str(library)), writable=True) as store:
        before = (store.generation, sorted(_paths(store)), store.roots())
        with pytest.raises(NotALibraryRootError, match="is not a library folder") as caught:
            remove_roots(store, [str(built / "b"), str(make_path(built))])  # all or nothing
        assert str(built / "a") in str(caught.value)  # the message lists the roots
        assert (store.generation, sorted(_paths(store)), store.roots()) == before
        _assert_consistent(store)


def test_remove_accepts_symlinked_and_trailing_slash_forms(built, library, tmp_path):
    link = tmp_path / "link-to-b"
    link.symlink_to(built / "b")
    with LibraryStore(LibraryConfig(db=str(library)), writable=True) as store:
        assert remove_roots(store, [str(link) + "/"]).roots == [str(built / "b")]


def test_remove_is_one_transaction_failure_changes_nothing(built, library, monkeypatch):
    real = roots_module.delete_videos

    def delete_then_fail(tx, ids):
        real(tx, ids)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(roots_module, "delete_videos", delete_then_fail)
    with LibraryStore(LibraryConfig(db=str(library)), writable=True) as store:
        before = (store.generation, sorted(_paths(store)), store.vector_count(SPACE_SEGMENTS))
        with pytest.raises(RuntimeError, match="disk on fire"):
            remove_roots(store, [str(built / "a")])
        assert (store.generation, sorted(_paths(store)), store.vector_count(SPACE_SEGMENTS)) == before
        _assert_consistent(store)


def test_crash_after_the_commit_is_repaired_on_open(built, library):
    """Killed after the removal committed but before any vector file was written: the next open
    replays the logged removals from the database."""
    cfg = LibraryConfig(db=str(library))
    with LibraryStore(cfg, writable=True) as store:
        remove_roots(store, [str(built / "b")], save=False)
        with store.session() as session:
            logged = session.execute(select(VectorLog.space, VectorLog.op)).all()
        assert sorted(logged) == sorted([(SPACE_SEGMENTS, "remove")] * 4 + [(SPACE_VIDEOS, "remove")] * 2)
    for writable in (False, True):
        with LibraryStore(cfg, writable=writable) as store:
            assert store.vector_count(SPACE_SEGMENTS) == 7 and store.vector_count(SPACE_VIDEOS) == 3
            _assert_consistent(store)


def test_removed_root_is_indexed_again_from_scratch(built, library, encoder):
    b = built / "b"
    with LibraryStore(LibraryConfig(db=str(library)), writable=True) as store:
        remove_roots(store, [str(b)])
        again = build_library(store, encoder, [str(b)], CONFIG)
        assert (again.indexed, again.unchanged, again.segments) == (2, 0, 4)
        _assert_consistent(store)
        stats = {s.path: s for s in root_stats(store)}
        assert stats[str(b)].videos == 2


def test_cli_list_and_remove(built, library, capsys):
    assert roots_main(["--db", str(library), "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in listed["roots"]] == [str(built / "a"), str(built / "b"), str(built / "a" / "sub")]
    assert roots_main(["--db", str(library), "remove", str(built / "a" / "a0.mp4")]) == 2
    refused = json.loads(capsys.readouterr().out)
    assert refused["error_type"] == "NotALibraryRootError" and "not a library folder" in refused["error"]
    assert roots_main(["--db", str(library), "remove", str(built / "b")]) == 0
    removed = json.loads(capsys.readouterr().out)
    assert removed == {"roots": [str(built / "b")], "videos": 2, "segments": 4, "kept": 0}
    missing = library.parent / "missing.db"
    assert roots_main(["--db", str(missing), "remove", str(built / "b")]) == 2
    assert "no library database" in json.loads(capsys.readouterr().out)["error"] and not missing.exists()
    with LibraryStore(LibraryConfig(db=str(library)), writable=True) as writer:  # an indexing run holds the lock
        assert roots_main(["--db", str(library), "remove", str(built / "a")]) == 2
        assert json.loads(capsys.readouterr().out)["error_type"] == LibraryBusyError.__name__
        assert writer.roots() == [str(built / "a"), str(built / "a" / "sub")]
        _assert_consistent(writer)
