"""The library store: SQLite (or any SQLAlchemy database) plus one FAISS file per vector space.

Consistency design (also in ``docs/index.md``):

* The database is the durable truth. Every embedding is stored in its row
  (``segments``, ``videos``, ``texts``), so any FAISS index can be rebuilt from it.
* Every write that changes vectors is one database transaction
  (:meth:`LibraryStore.transaction`) that also bumps ``library_state.generation`` to
  ``G + 1`` and appends its vector changes (space, id, add/remove/reset) to
  ``vector_log`` with that generation. Ids come from ``AUTOINCREMENT`` columns and
  are never reused, and a vector id is added at most once (a changed video gets a
  new row), so "id present" always means the same vector.
* The writer applies its changes to the in-memory FAISS indexes only *after* the
  commit, and writes each space's file atomically with the generation it reflects
  in the file header. Only then is the log pruned up to that generation
  (``log_pruned_through``).
* Opening (writer or reader) loads each file at generation ``g`` and replays the log
  ``> g`` from the database (adds read their vectors from the rows), all inside one
  read snapshot. A missing, damaged or foreign file, or a log already pruned past
  ``g``, means a rebuild from the rows. A final count check against the rows falls
  back to a full id-set reconciliation (drop ids without a row, add rows without a
  vector).

So ``kill -9`` at any instant leaves either the old or the new database state (SQLite
atomic commit) and files that are at most behind it: the next open replays the log.
Nothing reported done (committed) is lost; nothing is added twice; nothing without a
row survives.

Readers (the search engine) never write files; :meth:`LibraryStore.refresh` replays
new log entries at most every ``refresh_interval_s``. Only one writer at a time:
writers take an exclusive ``flock`` on ``<db>.lock`` (released by the OS when the
process dies), others get :class:`LibraryBusyError`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from sqlalchemy import create_engine, delete, func, select, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from index.errors import LibraryBusyError, LibraryError, ModelMismatchError, SchemaVersionError, VectorFileError
from index.schema import (
    OP_ADD,
    OP_REMOVE,
    SCHEMA_VERSION,
    SPACE_SEGMENTS,
    SPACE_TEXTS,
    SPACE_VIDEOS,
    SPACES,
    LibraryState,
    ModelRecord,
    Segment,
    TextEntry,
    VectorLog,
    Video,
    bytes_to_embeddings,
    configure_sqlite,
    current_version,
    migrate,
)
from index.vectors import VectorConfig, VectorIndex, choose_factory, effective_factory

logger = logging.getLogger(__name__)

OP_RESET = "reset"
_TABLES = {SPACE_SEGMENTS: Segment, SPACE_VIDEOS: Video, SPACE_TEXTS: TextEntry}
_CHUNK = 500


@dataclass(frozen=True)
class LibraryConfig:
    """Where a library lives and how its vectors are indexed.

    Attributes:
        db: a file path (SQLite) or an SQLAlchemy URL.
        vectors_dir: folder of the FAISS files (default: the SQLite file's folder;
            required for non-file databases).
        vectors: FAISS factory choice and search parameters.
        refresh_interval_s: readers look for new commits at most this often.
        save_interval_s: an indexing run writes the vector files at least this often.
    """

    db: str
    vectors_dir: str | None = None
    vectors: VectorConfig = field(default_factory=VectorConfig)
    refresh_interval_s: float = 1.0
    save_interval_s: float = 120.0


@dataclass(frozen=True)
class ModelInfo:
    """The identity of a checkpoint as the library records it."""

    fingerprint: str
    checkpoint_path: str
    embed_dim: int
    config_json: str = "{}"

    def describe(self) -> str:
        return f"{self.checkpoint_path} ({self.fingerprint[:19]}, {self.embed_dim}-d)"


def database_url(db: str) -> str:
    """``db`` as an SQLAlchemy URL (plain paths become ``sqlite:///<absolute path>``)."""
    if "://" in db:
        return db
    return "sqlite:///" + os.path.abspath(os.path.expanduser(db))


class Transaction:
    """One write transaction: a session plus the vector changes made in it (in order)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.ops: list[tuple[str, int, str, np.ndarray | None]] = []

    def add_vector(self, space: str, vector_id: int, vector: np.ndarray) -> None:
        self.ops.append((space, int(vector_id), OP_ADD, np.asarray(vector, dtype=np.float32)))

    def remove_vector(self, space: str, vector_id: int) -> None:
        self.ops.append((space, int(vector_id), OP_REMOVE, None))

    def reset_space(self, space: str) -> None:
        self.ops.append((space, 0, OP_RESET, None))


class LibraryStore:
    """Database + FAISS indexes of one library (see the module doc for the protocol).

    Thread-safe: vector reads and writes go through one re-entrant lock; database
    access uses a connection pool. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, config: LibraryConfig, writable: bool = False) -> None:
        self.config = config
        self.writable = writable
        self.url = database_url(config.db)
        url = make_url(self.url)
        self.is_sqlite = url.get_backend_name() == "sqlite"
        if config.vectors_dir:
            self.vectors_dir = Path(config.vectors_dir)
            stem = "library"
        elif self.is_sqlite and url.database not in (None, "", ":memory:"):
            self.vectors_dir = Path(url.database).resolve().parent
            stem = Path(url.database).name
        else:
            raise LibraryError(f"vectors_dir is required for the database {url.render_as_string(hide_password=True)}")
        self.stem = stem if config.vectors_dir is None else "library"
        if self.is_sqlite and not writable and not Path(url.database).is_file():
            raise LibraryError(f"no library database at {url.database}; build one with: python -m index.build FOLDER --db {url.database}")
        self._lock = threading.RLock()
        self._lock_file: Any = None
        self.indexes: dict[str, VectorIndex] = {}
        self.space_generation: dict[str, int] = {space: 0 for space in SPACES}
        self.model: ModelInfo | None = None
        self._last_refresh = 0.0
        self._last_save = time.monotonic()
        self._saved_generation: dict[str, int] = {}
        if writable:
            self.vectors_dir.mkdir(parents=True, exist_ok=True)
            self._acquire_writer_lock()
        args = {"connect_args": {"check_same_thread": False, "timeout": 30}} if self.is_sqlite else {}
        self.engine: Engine = create_engine(self.url, **args)
        configure_sqlite(self.engine, immediate=writable)
        try:
            if writable:
                migrate(self.engine)
            else:
                with self.engine.connect() as connection:
                    version = current_version(connection)
                if version != SCHEMA_VERSION:
                    raise SchemaVersionError(
                        f"library schema version {version}, this code reads {SCHEMA_VERSION}; "
                        "run python -m index.build once to migrate it" if version < SCHEMA_VERSION else
                        f"library schema version {version} is newer than this code's {SCHEMA_VERSION}")
            self.sessions = sessionmaker(self.engine, expire_on_commit=False)
            self._load_all()
            if writable:
                self._remove_stale_temporaries()
                self.save(force=any(self._saved_generation.get(s) != self.generation for s in SPACES))
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ basics

    def __enter__(self) -> "LibraryStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the writer lock and the database connections (does not save)."""
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.dispose()
        if self._lock_file is not None:
            try:
                import fcntl

                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            except (ImportError, OSError):
                pass
            self._lock_file.close()
            self._lock_file = None

    def _acquire_writer_lock(self) -> None:
        path = self.vectors_dir / f"{self.stem}.lock"
        handle = open(path, "a+")
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no cross-process lock
            self._lock_file = handle
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            handle.close()
            raise LibraryBusyError(f"another process is writing this library (lock {path} is held)") from error
        self._lock_file = handle

    def vector_path(self, space: str) -> Path:
        return self.vectors_dir / f"{self.stem}.{space}.faiss"

    def _remove_stale_temporaries(self) -> None:
        for space in SPACES:
            for stale in self.vectors_dir.glob(f".{self.stem}.{space}.faiss.*.tmp"):
                logger.info("removing unfinished vector file %s", stale)
                stale.unlink(missing_ok=True)

    @property
    def generation(self) -> int:
        """The database generation every in-memory index has caught up with."""
        return min(self.space_generation.values())

    def session(self) -> Session:
        """A new ORM session (reads; writes go through :meth:`transaction`)."""
        return self.sessions()

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read-only connection whose SELECTs all see one committed state."""
        with self.engine.connect() as connection:
            with connection.begin():
                yield connection

    # ------------------------------------------------------------------- model

    def _read_model(self, connection: Connection) -> ModelInfo | None:
        row = connection.execute(
            select(ModelRecord).join(LibraryState, LibraryState.model_id == ModelRecord.id)).first()
        if row is None:
            return None
        record = row[0] if isinstance(row[0], ModelRecord) else row
        return ModelInfo(record.fingerprint, record.checkpoint_path, record.embed_dim, record.config_json)

    def library_model(self) -> ModelInfo | None:
        """The model the library's vectors come from (None for an empty library)."""
        with self.session() as session:
            state = session.get(LibraryState, 1)
            if state is None or state.model is None:
                return None
            m = state.model
            return ModelInfo(m.fingerprint, m.checkpoint_path, m.embed_dim, m.config_json)

    def roots(self) -> list[str]:
        from index.schema import Root

        with self.session() as session:
            return list(session.scalars(select(Root.path).order_by(Root.id)))

    def reindex_command(self, model_path: str) -> str:
        roots = " ".join(self.roots()) or "FOLDER..."
        db = make_url(self.url).database if self.is_sqlite else self.url
        return f"python -m index.build {roots} --db {db} --model {model_path} --reindex"

    def check_model(self, given: ModelInfo) -> None:
        """Raise :class:`ModelMismatchError` unless ``given`` is the library's model (or the library has none)."""
        current = self.library_model()
        if current is not None and current.fingerprint != given.fingerprint:
            raise ModelMismatchError(current.describe(), given.describe(), self.reindex_command(given.checkpoint_path))

    def _model_id(self, session: Session, info: ModelInfo) -> int:
        record = session.scalars(select(ModelRecord).where(ModelRecord.fingerprint == info.fingerprint)).first()
        if record is None:
            record = ModelRecord(fingerprint=info.fingerprint, checkpoint_path=info.checkpoint_path,
                                 embed_dim=info.embed_dim, config_json=info.config_json)
            session.add(record)
            session.flush()
        else:
            record.checkpoint_path = info.checkpoint_path
        return record.id

    def set_model(self, tx: Transaction, info: ModelInfo) -> None:
        """Record ``info`` as the library's model inside ``tx`` (caller checked there is no conflict)."""
        state = tx.session.get(LibraryState, 1)
        state.model_id = self._model_id(tx.session, info)

    # ------------------------------------------------------------ transactions

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A write transaction; its vector changes are logged, committed and then applied.

        On an exception nothing is committed and the in-memory indexes are untouched.
        """
        if not self.writable:
            raise LibraryError("this library store was opened read-only")
        with self._lock:
            with self.sessions() as session:
                with session.begin():
                    tx = Transaction(session)
                    yield tx
                    session.flush()
                    if tx.ops:
                        state = session.get(LibraryState, 1)
                        new_generation = state.generation + 1
                        state.generation = new_generation
                        session.add_all([VectorLog(generation=new_generation, space=space, vector_id=vid, op=op)
                                         for space, vid, op, _ in tx.ops])
                # committed
            if tx.ops:
                self._apply_ops(tx.ops)
                self.space_generation = {space: new_generation for space in SPACES}
            if self.model is None or any(op == OP_RESET for _, _, op, _ in tx.ops):
                self.model = self.library_model()
            self._ensure_indexes()

    def _ensure_indexes(self) -> None:
        """An (empty) index for every space once the library has a model."""
        if self.model is None:
            return
        for space in SPACES:
            index = self.indexes.get(space)
            if index is None or index.dim != self.model.embed_dim:
                self.indexes[space] = VectorIndex(self.model.embed_dim, self._wanted_factory(0), self.config.vectors)

    def _apply_ops(self, ops: Sequence[tuple[str, int, str, np.ndarray | None]]) -> None:
        dim = self._dim()
        for space in SPACES:
            space_ops = [(vid, op, vec) for s, vid, op, vec in ops if s == space]
            if not space_ops:
                continue
            index = self.indexes.get(space)
            if index is None or index.dim != dim:
                index = self.indexes[space] = VectorIndex(dim, self._wanted_factory(0), self.config.vectors)
            pending_ids: list[int] = []
            pending_vecs: list[np.ndarray] = []

            def flush() -> None:
                if pending_ids:
                    index.add(np.array(pending_ids, dtype=np.int64), np.stack(pending_vecs))
                    pending_ids.clear()
                    pending_vecs.clear()

            for vid, op, vec in space_ops:
                if op == OP_ADD:
                    pending_ids.append(vid)
                    pending_vecs.append(vec)
                elif op == OP_REMOVE:
                    flush()
                    index.remove([vid])
                else:
                    pending_ids.clear()
                    pending_vecs.clear()
                    index.clear()
            flush()

    def _dim(self) -> int:
        model = self.model or self.library_model()
        self.model = model
        return model.embed_dim if model else 0

    def _wanted_factory(self, n: int) -> str:
        return effective_factory(choose_factory(n, self.config.vectors), n)

    # ------------------------------------------------------- loading & repair

    def _load_all(self) -> None:
        with self._lock:
            with self.snapshot() as connection:
                model = self._read_model(connection)
                generation = int(connection.execute(select(LibraryState.generation)).scalar_one())
            self.model = model
            self.indexes.clear()
            self.space_generation = {space: generation for space in SPACES}
            for space in SPACES:
                self._load_space(space, generation)

    def _load_space(self, space: str, db_generation: int) -> None:
        model = self.model
        dim = model.embed_dim if model else 0
        path = self.vector_path(space)
        index: VectorIndex | None = None
        base = -1
        if model is not None:
            try:
                index, meta = VectorIndex.load(path, self.config.vectors)
                base = int(meta.get("generation", -1))
                problem = None
                if meta.get("space") != space:
                    problem = f"holds space {meta.get('space')!r}"
                elif meta.get("model_fingerprint") != model.fingerprint:
                    problem = "was written for another model"
                elif index.dim != dim:
                    problem = f"has dimension {index.dim}, the model {dim}"
                elif base > db_generation:
                    problem = f"is at generation {base}, ahead of the database ({db_generation})"
                if problem:
                    logger.warning("%s %s; rebuilding it from the database", path, problem)
                    index = None
            except VectorFileError as error:
                if path.exists() or db_generation > 0:
                    logger.warning("%s; rebuilding it from the database", error)
        if index is None:
            self._rebuild_space(space)
            return
        self.indexes[space] = index
        self._saved_generation[space] = base
        reached = self._catch_up(space, base)
        if reached is None:
            logger.warning("%s: the change log was pruned past its generation %d; rebuilding", path, base)
            self._rebuild_space(space)
            return
        self._verify_count(space)

    def _rebuild_space(self, space: str) -> None:
        """Build ``space``'s index from every row (one snapshot); sets its generation to the snapshot's."""
        table = _TABLES[space]
        with self._lock:
            with self.snapshot() as connection:
                generation = int(connection.execute(select(LibraryState.generation)).scalar_one())
                model = self._read_model(connection)
                rows = connection.execute(
                    select(table.id, table.embedding).where(table.embedding.is_not(None)).order_by(table.id)).all()
            dim = model.embed_dim if model else 0
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            vectors = bytes_to_embeddings([r[1] for r in rows], dim) if dim else np.zeros((0, 0), np.float32)
            if dim:
                self.indexes[space] = VectorIndex.build(dim, self._wanted_factory(len(ids)), ids, vectors,
                                                        self.config.vectors)
            else:
                self.indexes.pop(space, None)
            self._saved_generation[space] = -1
            self.space_generation[space] = generation
            logger.info("rebuilt %s index from the database: %d vectors", space, len(ids))

    def _catch_up(self, space: str, base: int) -> int | None:
        """Replay ``vector_log`` entries of ``space`` newer than ``base``; the generation reached, or
        None when the log no longer reaches back to ``base``."""
        table = _TABLES[space]
        with self._lock:
            index = self.indexes.get(space)
            with self.snapshot() as connection:
                state = connection.execute(select(LibraryState.generation, LibraryState.log_pruned_through)).one()
                generation, pruned = int(state[0]), int(state[1])
                if base < pruned:
                    return None
                if base >= generation:
                    self.space_generation[space] = generation
                    return generation
                if index is None:  # no model yet when last loaded: build from the rows
                    return None
                log = connection.execute(
                    select(VectorLog.vector_id, VectorLog.op).where(
                        VectorLog.space == space, VectorLog.generation > base).order_by(VectorLog.seq)).all()
                reset = False
                removed: set[int] = set()
                present: dict[int, bool] = {}
                for vid, op in log:
                    if op == OP_RESET:
                        reset, removed, present = True, set(), {}
                    elif op == OP_ADD:
                        present[int(vid)] = True
                    else:
                        removed.add(int(vid))
                        present[int(vid)] = False
                to_add = sorted(v for v, here in present.items() if here)
                vectors: dict[int, bytes] = {}
                for start in range(0, len(to_add), _CHUNK):
                    chunk = to_add[start:start + _CHUNK]
                    for vid, blob in connection.execute(
                            select(table.id, table.embedding).where(table.id.in_(chunk))):
                        if blob is not None:
                            vectors[int(vid)] = blob
            if reset:
                index.clear()
            elif removed:
                index.remove(np.array(sorted(removed), dtype=np.int64))
            missing = [v for v in to_add if v not in vectors]
            if missing:
                logger.warning("%s: %d logged vectors have no row any more (ignored)", space, len(missing))
            ids = [v for v in to_add if v in vectors]
            if ids:
                index.add(np.array(ids, dtype=np.int64), bytes_to_embeddings([vectors[v] for v in ids], index.dim))
            if log:
                logger.info("%s: replayed %d logged changes (generation %d -> %d)", space, len(log), base, generation)
            self.space_generation[space] = generation
            return generation

    def _verify_count(self, space: str) -> None:
        """Full id-set reconciliation when the index and the rows disagree in number."""
        table = _TABLES[space]
        index = self.indexes[space]
        with self.snapshot() as connection:
            count = int(connection.execute(
                select(func.count()).select_from(table).where(table.embedding.is_not(None))).scalar_one())
        if count == index.live_count:
            return
        logger.warning("%s: index holds %d vectors, the database %d; reconciling by id", space,
                       index.live_count, count)
        with self._lock, self.snapshot() as connection:
            db_ids = np.array(connection.execute(select(table.id).where(table.embedding.is_not(None))).scalars().all(),
                              dtype=np.int64)
            have = index.ids()
            orphans = np.setdiff1d(have, db_ids)
            missing = np.setdiff1d(db_ids, have)
            blobs: list[bytes] = []
            for start in range(0, len(missing), _CHUNK):
                chunk = missing[start:start + _CHUNK].tolist()
                rows = dict(connection.execute(select(table.id, table.embedding).where(table.id.in_(chunk))).all())
                blobs.extend(rows[i] for i in chunk)
        index.remove(orphans)
        index.add(missing, bytes_to_embeddings(blobs, index.dim))
        logger.warning("%s: dropped %d orphan vectors, added %d missing ones", space, len(orphans), len(missing))

    # ---------------------------------------------------------------- readers

    def refresh(self, force: bool = False) -> bool:
        """Catch up with commits made by a writer (other process or thread); True when something changed.

        Checks at most every ``refresh_interval_s`` unless ``force``.
        """
        now = time.monotonic()
        if not force and now - self._last_refresh < self.config.refresh_interval_s:
            return False
        self._last_refresh = now
        with self.snapshot() as connection:
            generation = int(connection.execute(select(LibraryState.generation)).scalar_one())
            model = self._read_model(connection)
        if generation == self.generation:
            return False
        with self._lock:
            if model != self.model:
                self.model = model
                self._load_all()
                return True
            for space in SPACES:
                if self._catch_up(space, self.space_generation[space]) is None:
                    self._rebuild_space(space)
        return True

    # ---------------------------------------------------------------- writers

    def save(self, force: bool = False) -> None:
        """Write every space's file at the current generation, then prune the log (writer only).

        Also rebuilds a space whose wanted factory changed with its size, or that
        carries tombstones (HNSW cannot delete).
        """
        if not self.writable:
            raise LibraryError("read-only library store cannot save")
        with self._lock:
            model = self.model = self.model or self.library_model()
            if model is None:
                return
            self._ensure_indexes()
            for space in SPACES:
                index = self.indexes.get(space)
                if index is None:
                    continue
                wanted = self._wanted_factory(index.live_count)
                if wanted != index.factory or index.tombstones:
                    logger.info("%s: rebuilding index as %s (%d vectors, %d tombstones)", space, wanted,
                                index.live_count, len(index.tombstones))
                    self._rebuild_space(space)
                    index = self.indexes[space]
                if not force and self._saved_generation.get(space) == self.generation:
                    continue
                index.save(self.vector_path(space), {"space": space, "generation": self.generation,
                                                     "model_fingerprint": model.fingerprint})
                self._saved_generation[space] = self.generation
            generation = self.generation
            with self.sessions() as session, session.begin():
                session.execute(delete(VectorLog).where(VectorLog.generation <= generation))
                session.execute(update(LibraryState).where(LibraryState.id == 1).values(log_pruned_through=generation))
            self._last_save = time.monotonic()
            logger.debug("saved vector files at generation %d", generation)

    def maybe_save(self) -> None:
        """:meth:`save` when ``save_interval_s`` has passed since the last one."""
        if time.monotonic() - self._last_save >= self.config.save_interval_s:
            self.save()

    # ----------------------------------------------------------------- search

    def search(self, space: str, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)`` of the top ``k`` in ``space`` (empty results when the space has no index)."""
        with self._lock:
            index = self.indexes.get(space)
            if index is None:
                n = len(np.atleast_2d(queries))
                return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
            return index.search(queries, k, allowed_ids)

    def vector_count(self, space: str) -> int:
        with self._lock:
            index = self.indexes.get(space)
            return index.live_count if index is not None else 0

    def stats(self) -> dict[str, Any]:
        """Counts and settings, for logs and the app."""
        with self.session() as session:
            videos = dict(session.execute(select(Video.status, func.count()).group_by(Video.status)).all())
            segments = session.scalar(select(func.count()).select_from(Segment))
            texts = session.scalar(select(func.count()).select_from(TextEntry))
        model = self.library_model()
        return {"videos": videos, "segments": int(segments or 0), "texts": int(texts or 0),
                "generation": self.generation, "model": model.describe() if model else None,
                "factories": {s: i.factory for s, i in self.indexes.items()},
                "vectors": {s: i.live_count for s, i in self.indexes.items()}}


def delete_videos(tx: Transaction, video_ids: Sequence[int]) -> int:
    """Delete the rows of ``video_ids`` (their segments too) inside ``tx`` and log the removal of
    their segment and whole-video vectors; returns how many video rows were deleted.

    Works in chunks, so any number of ids fits in one transaction (the caller's: the
    removal commits, or not, together with whatever else ``tx`` does).
    """
    session = tx.session
    deleted = 0
    ids = [int(i) for i in video_ids]
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        for seg_id in session.scalars(select(Segment.id).where(Segment.video_id.in_(chunk)).order_by(Segment.id)):
            tx.remove_vector(SPACE_SEGMENTS, seg_id)
        for vid, emb in session.execute(select(Video.id, Video.embedding).where(Video.id.in_(chunk))):
            deleted += 1
            if emb is not None:
                tx.remove_vector(SPACE_VIDEOS, vid)
        session.execute(delete(Segment).where(Segment.video_id.in_(chunk)))
        session.execute(delete(Video).where(Video.id.in_(chunk)))
    return deleted


def segmentation_json(config: Any) -> str:
    """Stable JSON form of a segmentation config (stored per video)."""
    return json.dumps(config.__dict__ if hasattr(config, "__dict__") else dict(config), sort_keys=True)


__all__ = ["LibraryConfig", "LibraryStore", "ModelInfo", "OP_RESET", "Transaction", "database_url",
           "delete_videos", "segmentation_json"]
