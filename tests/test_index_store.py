"""Store, schema and vector-file tests: round trips, versioning, repair after simulated crashes."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sqlalchemy import create_engine, func, select

import index.schema as schema
from index.errors import SchemaVersionError, VectorFileError
from index.schema import SPACE_SEGMENTS, SPACE_VIDEOS, STATUS_INDEXED, Segment, Video, configure_sqlite, embedding_to_bytes, migrate
from index.store import LibraryConfig, LibraryStore, ModelInfo
from index.vectors import VectorConfig, VectorIndex, choose_factory, effective_factory

DIM = 8
MODEL = ModelInfo(fingerprint="sha256:" + "ab" * 32, checkpoint_path="/m/a.pt", embed_dim=DIM)


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _add_video(store: LibraryStore, path: str, vectors: np.ndarray) -> int:
    """One committed video with one 1-second segment per vector."""
    with store.transaction() as tx:
        if store.library_model() is None:
            store.set_model(tx, MODEL)
        video = Video(path=path, fingerprint="f" + path, size_bytes=1, mtime_ns=1, duration_s=float(len(vectors)),
                      status=STATUS_INDEXED, embedding=embedding_to_bytes(vectors.mean(0)))
        tx.session.add(video)
        tx.session.flush()
        tx.add_vector(SPACE_VIDEOS, video.id, vectors.mean(0))
        for i, v in enumerate(vectors):
            seg = Segment(video_id=video.id, index=i, start_s=float(i), end_s=float(i + 1), embedding=embedding_to_bytes(v))
            tx.session.add(seg)
            tx.session.flush()
            tx.add_vector(SPACE_SEGMENTS, seg.id, v)
        return video.id


def _delete_video(store: LibraryStore, video_id: int) -> None:
    with store.transaction() as tx:
        for seg_id in tx.session.scalars(select(Segment.id).where(Segment.video_id == video_id)):
            tx.remove_vector(SPACE_SEGMENTS, seg_id)
        tx.remove_vector(SPACE_VIDEOS, video_id)
        tx.session.delete(tx.session.get(Video, video_id))


def _assert_consistent(store: LibraryStore) -> None:
    """The FAISS ids of every space equal the row ids, exactly."""
    with store.session() as session:
        seg_ids = sorted(session.scalars(select(Segment.id)))
        vid_ids = sorted(session.scalars(select(Video.id).where(Video.embedding.is_not(None))))
    assert sorted(store.indexes[SPACE_SEGMENTS].ids().tolist()) == seg_ids
    assert sorted(store.indexes[SPACE_VIDEOS].ids().tolist()) == vid_ids


def test_schema_fresh_newer_and_migration_runner(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    engine = create_engine(url)
    configure_sqlite(engine)
    assert migrate(engine) == schema.SCHEMA_VERSION
    # a registered migration runs exactly once, in order, and bumps the version
    calls = []

    def add_column(connection):
        calls.append(1)
        connection.exec_driver_sql("ALTER TABLE videos ADD COLUMN rating INTEGER")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    monkeypatch.setitem(schema.MIGRATIONS, schema.SCHEMA_VERSION, add_column)
    assert migrate(engine) == schema.SCHEMA_VERSION
    assert migrate(engine) == schema.SCHEMA_VERSION
    assert calls == [1]
    monkeypatch.undo()
    with pytest.raises(SchemaVersionError, match="newer"):
        migrate(engine)
    engine.dispose()


def test_factory_choice_rule():
    assert choose_factory(10) == "IDMap2,Flat"
    assert choose_factory(99_999) == "IDMap2,Flat"
    assert choose_factory(100_000) == "IDMap2,HNSW32"
    assert choose_factory(1_000_000) == "IDMap2,IVF4096,SQ8"
    assert choose_factory(5, VectorConfig(factory="HNSW16")) == "IDMap2,HNSW16"
    assert effective_factory("IDMap2,IVF256,SQ8", 1000) == "IDMap2,Flat"
    with pytest.raises(ValueError, match="invalid faiss factory"):
        VectorConfig(factory="NotAnIndex")


@pytest.mark.parametrize("factory", ["IDMap2,Flat", "IDMap2,HNSW32", "IDMap2,IVF4,SQ8"])
def test_vector_file_round_trip_and_removal(tmp_path, factory):
    rng = np.random.default_rng(0)
    x = _unit(rng, 400)
    ids = np.arange(1000, 1400, dtype=np.int64)
    index = VectorIndex.build(DIM, factory, ids, x)
    assert index.factory == factory
    index.remove([1000, 1001, 99999])
    assert index.live_count == 398
    _, found = index.search(x[:3], 5)
    assert 1000 not in found and 1001 not in found
    if factory == "IDMap2,Flat":
        assert found[2, 0] == 1002
    path = tmp_path / "v.faiss"
    index.save(path, {"generation": 7})
    loaded, meta = VectorIndex.load(path)
    assert meta["generation"] == 7 and loaded.live_count == 398
    assert sorted(loaded.ids().tolist()) == sorted(index.ids().tolist())
    np.testing.assert_array_equal(loaded.search(x[:5], 4)[1], index.search(x[:5], 4)[1])
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(VectorFileError, match="checksum"):
        VectorIndex.load(path)


def test_store_round_trip_and_reader(tmp_path):
    rng = np.random.default_rng(1)
    cfg = LibraryConfig(db=str(tmp_path / "lib.db"))
    vecs = _unit(rng, 5)
    with LibraryStore(cfg, writable=True) as store:
        vid = _add_video(store, "/v/a.mp4", vecs)
        _add_video(store, "/v/b.mp4", _unit(rng, 3))
        store.save()
        scores, ids = store.search(SPACE_SEGMENTS, vecs[2:3], 1)
        _assert_consistent(store)
    with LibraryStore(cfg) as reader:
        assert reader.library_model() == MODEL
        _assert_consistent(reader)
        scores2, ids2 = reader.search(SPACE_SEGMENTS, vecs[2:3], 1)
        assert ids2.tolist() == ids.tolist() and np.allclose(scores, scores2)
        assert reader.search(SPACE_VIDEOS, vecs.mean(0)[None], 1)[1][0, 0] == vid


def test_crash_before_vector_save_is_replayed_from_the_log(tmp_path):
    """Commits whose vectors never reached a file (kill -9 before save) come back on open."""
    rng = np.random.default_rng(2)
    cfg = LibraryConfig(db=str(tmp_path / "lib.db"))
    store = LibraryStore(cfg, writable=True)
    a = _add_video(store, "/v/a.mp4", _unit(rng, 4))
    store.save()
    _add_video(store, "/v/b.mp4", _unit(rng, 4))   # committed, never saved
    _delete_video(store, a)                         # committed removal, never saved
    store.close()                                   # "crash": no save
    with LibraryStore(cfg) as reader:               # a reader repairs in memory only
        _assert_consistent(reader)
        assert reader.vector_count(SPACE_SEGMENTS) == 4
    with LibraryStore(cfg, writable=True) as writer:  # the writer repairs the files
        _assert_consistent(writer)
    with LibraryStore(cfg) as reader:
        assert reader.indexes[SPACE_SEGMENTS].ntotal == 4


def test_damaged_missing_and_orphan_vector_files_are_repaired(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    cfg = LibraryConfig(db=str(tmp_path / "lib.db"))
    with LibraryStore(cfg, writable=True) as store:
        _add_video(store, "/v/a.mp4", _unit(rng, 3))
        _add_video(store, "/v/b.mp4", _unit(rng, 2))
        store.save()
        seg_path, vid_path = store.vector_path(SPACE_SEGMENTS), store.vector_path(SPACE_VIDEOS)
        generation = store.generation
    # the segments file damaged, the videos file gone
    seg_path.write_bytes(seg_path.read_bytes()[:-20])
    vid_path.unlink()
    with LibraryStore(cfg, writable=True) as store:
        _assert_consistent(store)
    # an orphan vector (id without a row) in a file claiming the current generation
    index, _ = VectorIndex.load(seg_path)
    index.add([10_000], _unit(rng, 1))
    index.save(seg_path, {"space": SPACE_SEGMENTS, "generation": generation, "model_fingerprint": MODEL.fingerprint})
    with LibraryStore(cfg) as reader:
        _assert_consistent(reader)
        assert 10_000 not in reader.indexes[SPACE_SEGMENTS].ids()


def test_crash_while_writing_a_vector_file_keeps_the_old_file(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    cfg = LibraryConfig(db=str(tmp_path / "lib.db"))
    store = LibraryStore(cfg, writable=True)
    _add_video(store, "/v/a.mp4", _unit(rng, 3))
    store.save()
    _add_video(store, "/v/b.mp4", _unit(rng, 3))

    def dies(*args):
        raise KeyboardInterrupt("killed during os.replace")

    monkeypatch.setattr(os, "replace", dies)
    with pytest.raises(KeyboardInterrupt):
        store.save()
    monkeypatch.undo()
    store.close()
    with LibraryStore(cfg, writable=True) as store:
        _assert_consistent(store)
        assert not list(tmp_path.glob(".*.tmp"))
        with store.session() as session:
            assert session.scalar(select(func.count()).select_from(Segment)) == 6


def test_hnsw_removals_are_tombstoned_then_rebuilt_on_save(tmp_path):
    rng = np.random.default_rng(5)
    cfg = LibraryConfig(db=str(tmp_path / "lib.db"), vectors=VectorConfig(factory="HNSW8"))
    with LibraryStore(cfg, writable=True) as store:
        a = _add_video(store, "/v/a.mp4", _unit(rng, 3))
        _add_video(store, "/v/b.mp4", _unit(rng, 3))
        _delete_video(store, a)
        assert store.indexes[SPACE_SEGMENTS].tombstones
        _assert_consistent(store)
        store.save()
        assert not store.indexes[SPACE_SEGMENTS].tombstones
        assert store.indexes[SPACE_SEGMENTS].ntotal == 3
