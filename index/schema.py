"""SQLAlchemy 2.0 models of the library database and its schema versioning.

Tables (every id column that names a vector is ``AUTOINCREMENT``, so SQLite never
reuses an id: a vector id seen once always means the same row):

* ``schema_version``: one row, the schema version of the database.
* ``library_state``: one row (id 1): the model the vectors come from, the commit
  generation (bumped by every write transaction that changes vectors), the
  generation through which the change log was pruned, the segmentation settings.
* ``models``: every checkpoint that has produced vectors here (fingerprint, path,
  embedding dimension, config as JSON).
* ``roots``: the library folders given to ``index.build``.
* ``videos``: one row per file (path, content fingerprint, size, mtime, probe
  metadata, status ``indexed`` / ``failed``, error type and reason, indexed_at) and
  its whole-video embedding.
* ``segments``: time spans of a video with their embedding; ``segments.id`` is the
  segment's FAISS id.
* ``texts``: caption corpora (source, optional external id, text, embedding);
  ``texts.id`` is the text's FAISS id.
* ``vector_log``: ordered changes (generation, space, vector id, add/remove) the
  FAISS files have not absorbed yet; see ``index/store.py`` for the protocol.

Embeddings are stored as little-endian float32 bytes (``EMBEDDING_DTYPE``): the
database is the durable copy, FAISS files are a derived, rebuildable index.

Schema versioning (no Alembic dependency, same idea): a fresh database gets the
current schema from the models (``create_all``) and is stamped
``SCHEMA_VERSION``. An older database is upgraded by the functions in
``MIGRATIONS`` (``MIGRATIONS[n]`` takes version ``n - 1`` to ``n``; each runs in
its own transaction together with the version bump and uses explicit DDL, never
the current models). A newer database is refused with :class:`SchemaVersionError`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Callable, Optional

import numpy as np
from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from index.errors import SchemaVersionError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
EMBEDDING_DTYPE = np.dtype("<f4")

STATUS_INDEXED = "indexed"
STATUS_FAILED = "failed"

SPACE_SEGMENTS = "segments"
SPACE_VIDEOS = "videos"
SPACE_TEXTS = "texts"
SPACES: tuple[str, ...] = (SPACE_SEGMENTS, SPACE_VIDEOS, SPACE_TEXTS)

OP_ADD = "add"
OP_REMOVE = "remove"


def utcnow() -> datetime:
    """Timezone-naive UTC now (SQLite stores naive datetimes)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def embedding_to_bytes(vector: np.ndarray) -> bytes:
    """One vector as float32 little-endian bytes."""
    return np.ascontiguousarray(vector, dtype=EMBEDDING_DTYPE).reshape(-1).tobytes()


def bytes_to_embeddings(blobs: list[bytes], dim: int) -> np.ndarray:
    """Stack float32 blobs into a ``(len(blobs), dim)`` float32 array."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    out = np.frombuffer(b"".join(blobs), dtype=EMBEDDING_DTYPE).reshape(len(blobs), dim)
    return out.astype(np.float32, copy=False)


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    __tablename__ = "schema_version"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class ModelRecord(Base):
    __tablename__ = "models"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(80), unique=True)
    checkpoint_path: Mapped[str] = mapped_column(Text)
    embed_dim: Mapped[int] = mapped_column(Integer)
    config_json: Mapped[str] = mapped_column(Text, default="{}")
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)

    def describe(self) -> str:
        return f"{self.checkpoint_path} ({self.fingerprint[:19]}, {self.embed_dim}-d)"


class LibraryState(Base):
    __tablename__ = "library_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    model_id: Mapped[Optional[int]] = mapped_column(ForeignKey("models.id"))
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
    log_pruned_through: Mapped[int] = mapped_column(BigInteger, default=0)
    segmentation_json: Mapped[str] = mapped_column(Text, default="{}")

    model: Mapped[Optional[ModelRecord]] = relationship()


class Root(Base):
    __tablename__ = "roots"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_scan_at: Mapped[Optional[datetime]]


class Video(Base):
    __tablename__ = "videos"
    __table_args__ = (
        Index("ix_videos_fingerprint", "fingerprint"),
        Index("ix_videos_status", "status"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    root_id: Mapped[Optional[int]] = mapped_column(ForeignKey("roots.id", ondelete="SET NULL"))
    path: Mapped[str] = mapped_column(Text, unique=True)
    fingerprint: Mapped[str] = mapped_column(String(80))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    duration_s: Mapped[Optional[float]] = mapped_column(Float)
    fps: Mapped[Optional[float]] = mapped_column(Float)
    width: Mapped[Optional[int]]
    height: Mapped[Optional[int]]
    codec: Mapped[Optional[str]] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    error_type: Mapped[Optional[str]] = mapped_column(String(64))
    error: Mapped[Optional[str]] = mapped_column(Text)
    segmentation: Mapped[Optional[str]] = mapped_column(Text)
    indexed_at: Mapped[datetime] = mapped_column(default=utcnow)
    embedding: Mapped[Optional[bytes]] = mapped_column(LargeBinary)

    segments: Mapped[list["Segment"]] = relationship(
        back_populates="video", cascade="all, delete-orphan", passive_deletes=True, order_by="Segment.index")


class Segment(Base):
    __tablename__ = "segments"
    __table_args__ = (
        UniqueConstraint("video_id", "index", name="uq_segments_video_index"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    video_id: Mapped[int] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)

    video: Mapped[Video] = relationship(back_populates="segments")


class TextEntry(Base):
    __tablename__ = "texts"
    __table_args__ = (
        UniqueConstraint("source", "text", name="uq_texts_source_text"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(255))
    external_id: Mapped[Optional[str]] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)


class VectorLog(Base):
    __tablename__ = "vector_log"
    __table_args__ = (Index("ix_vector_log_generation", "generation"), {"sqlite_autoincrement": True})

    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger)
    space: Mapped[str] = mapped_column(String(16))
    vector_id: Mapped[int] = mapped_column(BigInteger)
    op: Mapped[str] = mapped_column(String(8))


# version n -> function upgrading a database at version n - 1 (explicit DDL only)
Migration = Callable[[Connection], None]
MIGRATIONS: dict[int, Migration] = {}


def configure_sqlite(engine: Engine, immediate: bool = False) -> None:
    """WAL journal (readers never block the writer), foreign keys on, a busy timeout.

    Transactions are begun explicitly (``BEGIN``, or ``BEGIN IMMEDIATE`` for a writer
    engine) instead of by the sqlite3 module's implicit rules, so a read-only
    transaction is a true snapshot: several SELECTs see one committed state.
    """
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see above)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=FULL")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()


def current_version(connection: Connection) -> int:
    """The schema version stored in the database; 0 for an empty database.

    Raises:
        SchemaVersionError: tables exist but no version row (not a library database).
    """
    names = set(inspect(connection).get_table_names())
    if "schema_version" not in names:
        if names:
            raise SchemaVersionError(f"the database has tables {sorted(names)[:5]} but no schema_version: not a library")
        return 0
    row = connection.execute(select(SchemaVersion.version)).scalar_one_or_none()
    if row is None:
        raise SchemaVersionError("schema_version table is empty")
    return int(row)


def migrate(engine: Engine, target: int | None = None) -> int:
    """Bring the database to ``target`` (default :data:`SCHEMA_VERSION`); return the version reached.

    Raises:
        SchemaVersionError: the database is newer than this code, or a migration is missing.
    """
    target = SCHEMA_VERSION if target is None else target
    with engine.begin() as connection:
        version = current_version(connection)
        if version == 0:
            Base.metadata.create_all(connection)
            connection.execute(SchemaVersion.__table__.insert().values(version=target))
            connection.execute(LibraryState.__table__.insert().values(id=1, generation=0, log_pruned_through=0,
                                                                      segmentation_json="{}"))
            logger.info("created library schema version %d", target)
            return target
    if version > target:
        raise SchemaVersionError(
            f"the library database has schema version {version}, newer than this code's {target}; "
            "upgrade the software")
    while version < target:
        step = MIGRATIONS.get(version + 1)
        if step is None:
            raise SchemaVersionError(f"no migration from schema version {version} to {version + 1}")
        with engine.begin() as connection:
            step(connection)
            connection.execute(text("UPDATE schema_version SET version = :v"), {"v": version + 1})
        version += 1
        logger.info("migrated library schema to version %d", version)
    return version


__all__ = [
    "Base", "EMBEDDING_DTYPE", "LibraryState", "MIGRATIONS", "ModelRecord", "OP_ADD", "OP_REMOVE", "Root",
    "SCHEMA_VERSION", "SPACES", "SPACE_SEGMENTS", "SPACE_TEXTS", "SPACE_VIDEOS", "STATUS_FAILED",
    "STATUS_INDEXED", "Segment", "SchemaVersion", "TextEntry", "Video", "VectorLog", "bytes_to_embeddings",
    "configure_sqlite", "current_version", "embedding_to_bytes", "migrate", "utcnow",
]
