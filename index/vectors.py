"""FAISS vector indexes: choice by size, search, removal, atomic files.

Choice rule (``choose_factory``; ``N`` = vectors in the space, ``d`` = dimension):

* ``N < flat_max`` (100 000): ``"IDMap2,Flat"``: exact inner product, removal supported.
* ``flat_max <= N < ivf_min`` (1 000 000): ``"IDMap2,HNSW32"``: graph search,
  no training; HNSW cannot remove vectors, so removals become tombstones that
  searches skip, and the store rebuilds the index from the database at the next save.
* ``N >= ivf_min``: ``"IDMap2,IVF{nlist},SQ8"`` with ``nlist`` the power of two
  nearest ``4 * sqrt(N)`` (clamped to 256..65536): 8-bit scalar quantisation (4x
  smaller than Flat), needs training on a sample.

Any explicit factory string is accepted instead of "auto"; it is wrapped in
``IDMap2`` when it has no ID map. A factory that needs training and has too few
vectors to train (fewer than ``MIN_TRAIN_PER_LIST * nlist``) is served by
``IDMap2,Flat`` until it has enough (``effective_factory``).

All indexes use ``METRIC_INNER_PRODUCT`` on the model's retrieval embeddings.

File format (one file per space, written atomically: temporary file in the same
folder, ``fsync``, ``os.replace``, ``fsync`` of the folder)::

    b"MSVECS1\\n" | uint64 little-endian header length | JSON header | faiss.serialize_index bytes

The header holds ``space``, ``generation`` (the database commit the file reflects),
``dim``, ``factory``, ``ntotal``, ``model_fingerprint``, ``tombstones`` and the
BLAKE2b digest of the FAISS bytes; a file whose digest does not match is refused
with :class:`VectorFileError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import faiss
import numpy as np

from index.errors import VectorFileError

logger = logging.getLogger(__name__)

FILE_MAGIC = b"MSVECS1\n"
MIN_TRAIN_PER_LIST = 39
_IVF_RE = re.compile(r"IVF(\d+)")


@dataclass(frozen=True)
class VectorConfig:
    """How vectors are indexed and searched.

    Attributes:
        factory: "auto" (the rule in the module doc) or a ``faiss.index_factory`` string.
        flat_max: below this many vectors "auto" picks exact search.
        ivf_min: from this many vectors "auto" picks IVF + SQ8.
        hnsw_ef_search: HNSW ``efSearch`` (recall/speed trade-off).
        ivf_nprobe: IVF lists visited per query.
        use_gpu: None = use a GPU when faiss sees one; False = never; True = require one.
        train_sample: at most this many vectors are used to train an IVF index.
    """

    factory: str = "auto"
    flat_max: int = 100_000
    ivf_min: int = 1_000_000
    hnsw_ef_search: int = 64
    ivf_nprobe: int = 16
    use_gpu: bool | None = None
    train_sample: int = 262_144

    def __post_init__(self) -> None:
        if not 0 < self.flat_max <= self.ivf_min:
            raise ValueError("need 0 < flat_max <= ivf_min")
        if self.hnsw_ef_search < 1 or self.ivf_nprobe < 1:
            raise ValueError("hnsw_ef_search and ivf_nprobe must be >= 1")
        if self.factory != "auto":
            normalise_factory(self.factory)  # raises for nonsense


def normalise_factory(factory: str) -> str:
    """``factory`` with an ``IDMap2,`` prefix unless it already has an ID map.

    Raises:
        ValueError: faiss cannot build it.
    """
    text = factory.strip()
    if not text.startswith(("IDMap,", "IDMap2,")):
        text = "IDMap2," + text
    try:
        faiss.index_factory(8, text, faiss.METRIC_INNER_PRODUCT)
    except Exception as error:  # faiss raises RuntimeError with a C++ trace
        raise ValueError(f"invalid faiss factory string {factory!r}: {str(error).splitlines()[0]}") from error
    return text


def ivf_nlist(n: int) -> int:
    """Power of two nearest ``4 * sqrt(n)``, clamped to 256..65536."""
    target = 4.0 * math.sqrt(max(n, 1))
    return int(min(65536, max(256, 2 ** round(math.log2(target)))))


def choose_factory(n: int, config: VectorConfig | None = None) -> str:
    """The factory string for ``n`` vectors (module doc rule, or the configured string)."""
    config = config or VectorConfig()
    if config.factory != "auto":
        return normalise_factory(config.factory)
    if n < config.flat_max:
        return "IDMap2,Flat"
    if n < config.ivf_min:
        return "IDMap2,HNSW32"
    return f"IDMap2,IVF{ivf_nlist(n)},SQ8"


def effective_factory(factory: str, n: int) -> str:
    """``factory``, or ``"IDMap2,Flat"`` while ``n`` is too small to train it."""
    match = _IVF_RE.search(factory)
    if match and n < MIN_TRAIN_PER_LIST * int(match.group(1)):
        return "IDMap2,Flat"
    if "PQ" in factory.replace("IDMap", "") and n < 10_000:
        return "IDMap2,Flat"
    return factory


def gpu_count() -> int:
    """GPUs faiss can use (0 with faiss-cpu)."""
    getter = getattr(faiss, "get_num_gpus", None)
    try:
        return int(getter()) if getter else 0
    except Exception:  # pragma: no cover - broken GPU runtime
        return 0


class VectorIndex:
    """One ID-mapped FAISS index with inner product; thread-safe.

    Ids are int64 row ids of the database; ``add`` never receives an id twice
    (the store guarantees it). Removal from index types that cannot remove (HNSW)
    records a tombstone: the vector stays in the graph but is never returned.
    """

    def __init__(self, dim: int, factory: str, config: VectorConfig | None = None) -> None:
        self.dim = int(dim)
        self.factory = factory
        self.config = config or VectorConfig()
        self.index = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
        self.tombstones: set[int] = set()
        self._lock = threading.RLock()
        self._gpu_index: Any = None
        self._gpu_dirty = True
        self._configure_search()

    # ---------------------------------------------------------------- building

    @classmethod
    def build(cls, dim: int, factory: str, ids: np.ndarray, vectors: np.ndarray,
              config: VectorConfig | None = None) -> "VectorIndex":
        """A new index holding ``vectors`` under ``ids`` (trains when the factory needs it)."""
        config = config or VectorConfig()
        chosen = effective_factory(factory, len(ids))
        out = cls(dim, chosen, config)
        if not out.index.is_trained:
            rng = np.random.default_rng(0)
            sample = vectors if len(vectors) <= config.train_sample else \
                vectors[rng.choice(len(vectors), config.train_sample, replace=False)]
            logger.info("training %s on %d vectors", chosen, len(sample))
            out.index.train(np.ascontiguousarray(sample, dtype=np.float32))
        out.add(ids, vectors)
        return out

    def _sub_index(self) -> Any:
        return faiss.downcast_index(self.index.index)

    def _configure_search(self) -> None:
        sub = self._sub_index()
        if hasattr(sub, "hnsw"):
            sub.hnsw.efSearch = self.config.hnsw_ef_search
        if hasattr(sub, "nprobe"):
            sub.nprobe = self.config.ivf_nprobe

    @property
    def can_remove(self) -> bool:
        return not hasattr(self._sub_index(), "hnsw")

    @property
    def ntotal(self) -> int:
        """Vectors stored, tombstoned ones included."""
        return int(self.index.ntotal)

    @property
    def live_count(self) -> int:
        """Vectors a search can return."""
        return self.ntotal - len(self.tombstones)

    def ids(self) -> np.ndarray:
        """Every live id, int64, unordered."""
        with self._lock:
            all_ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
            if self.tombstones:
                all_ids = all_ids[~np.isin(all_ids, np.fromiter(self.tombstones, dtype=np.int64))]
            return all_ids

    def add(self, ids: Iterable[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` ``(n, dim)`` under ``ids``."""
        ids = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        with self._lock:
            if self.tombstones:
                self.tombstones.difference_update(ids.tolist())
            self.index.add_with_ids(vectors, ids)
            self._gpu_dirty = True

    def remove(self, ids: Iterable[int] | np.ndarray) -> None:
        """Remove ``ids`` (absent ids are ignored)."""
        ids = np.ascontiguousarray(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids,
                                              dtype=np.int64).reshape(-1))
        if len(ids) == 0:
            return
        with self._lock:
            if self.can_remove:
                self.index.remove_ids(faiss.IDSelectorBatch(ids))
            else:
                present = np.isin(ids, faiss.vector_to_array(self.index.id_map))
                self.tombstones.update(ids[present].tolist())
            self._gpu_dirty = True

    def clear(self) -> None:
        """Drop every vector (keeps the factory; an IVF index keeps its training)."""
        with self._lock:
            self.index.reset()
            self.tombstones.clear()
            self._gpu_dirty = True

    # ------------------------------------------------------------------ search

    def _search_index(self) -> Any:
        wanted = self.config.use_gpu
        if wanted is False or (wanted is None and gpu_count() == 0):
            return self.index
        if self._gpu_dirty:
            try:
                self._gpu_index = faiss.index_cpu_to_all_gpus(self.index)
            except Exception as error:
                if wanted:
                    raise
                logger.warning("faiss GPU copy of %s failed (%s); searching on the CPU", self.factory, error)
                self.config = VectorConfig(**{**self.config.__dict__, "use_gpu": False})
                return self.index
            self._gpu_dirty = False
        return self._gpu_index

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(scores, ids)``, each ``(n_queries, k)``; missing hits have id -1.

        Args:
            allowed_ids: restrict the search to these ids (a FAISS ID selector; CPU).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        with self._lock:
            if self.ntotal == 0 or k <= 0:
                return (np.full((len(queries), max(k, 0)), -np.inf, dtype=np.float32),
                        np.full((len(queries), max(k, 0)), -1, dtype=np.int64))
            extra = len(self.tombstones)
            fetch = min(k + extra, self.ntotal)
            if allowed_ids is not None:
                allowed = np.ascontiguousarray(allowed_ids, dtype=np.int64)
                selector = faiss.IDSelectorBatch(allowed)
                sub = self._sub_index()
                if hasattr(sub, "hnsw"):
                    params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.config.hnsw_ef_search, fetch))
                elif hasattr(sub, "nprobe"):
                    params = faiss.SearchParametersIVF(sel=selector, nprobe=self.config.ivf_nprobe)
                else:
                    params = faiss.SearchParameters(sel=selector)
                scores, ids = self.index.search(queries, fetch, params=params)
            else:
                target = self._search_index()
                sub = self._sub_index()
                if hasattr(sub, "hnsw") and fetch > sub.hnsw.efSearch:
                    params = faiss.SearchParametersHNSW(efSearch=fetch)
                    scores, ids = self.index.search(queries, fetch, params=params)
                else:
                    scores, ids = target.search(queries, fetch)
            if extra:
                mask = np.isin(ids, np.fromiter(self.tombstones, dtype=np.int64))
                ids = np.where(mask, -1, ids)
                scores = np.where(mask, -np.inf, scores).astype(np.float32)
                order = np.argsort(-scores, axis=1, kind="stable")
                ids = np.take_along_axis(ids, order, axis=1)
                scores = np.take_along_axis(scores, order, axis=1)
            if fetch < k:
                pad = k - fetch
                ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
                scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            return scores[:, :k], ids[:, :k]

    # ------------------------------------------------------------------- files

    def save(self, path: str | os.PathLike[str], header: dict[str, Any]) -> Path:
        """Write the index atomically to ``path`` with ``header`` (plus dim/factory/ntotal/digest)."""
        with self._lock:
            payload = faiss.serialize_index(self.index).tobytes()
            meta = dict(header)
            meta.update(dim=self.dim, factory=self.factory, ntotal=self.ntotal,
                        tombstones=sorted(self.tombstones),
                        digest=hashlib.blake2b(payload, digest_size=16).hexdigest())
        encoded = json.dumps(meta, sort_keys=True).encode()
        return atomic_write(path, [FILE_MAGIC, len(encoded).to_bytes(8, "little"), encoded, payload])

    @classmethod
    def load(cls, path: str | os.PathLike[str], config: VectorConfig | None = None) -> tuple["VectorIndex", dict[str, Any]]:
        """Read a file written by :meth:`save`; returns the index and its header.

        Raises:
            VectorFileError: missing, truncated, foreign or damaged file.
        """
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError as error:
            raise VectorFileError(f"{path}: no vector file") from error
        except OSError as error:
            raise VectorFileError(f"{path}: cannot read ({error})") from error
        if not data.startswith(FILE_MAGIC) or len(data) < len(FILE_MAGIC) + 8:
            raise VectorFileError(f"{path}: not a library vector file")
        start = len(FILE_MAGIC) + 8
        length = int.from_bytes(data[len(FILE_MAGIC):start], "little")
        try:
            meta = json.loads(data[start:start + length])
        except (ValueError, UnicodeDecodeError) as error:
            raise VectorFileError(f"{path}: damaged header") from error
        payload = data[start + length:]
        if not isinstance(meta, dict) or hashlib.blake2b(payload, digest_size=16).hexdigest() != meta.get("digest"):
            raise VectorFileError(f"{path}: vector data does not match its checksum")
        try:
            raw = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
        except Exception as error:
            raise VectorFileError(f"{path}: faiss cannot read it ({str(error).splitlines()[0]})") from error
        if not isinstance(raw, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            raise VectorFileError(f"{path}: not an ID-mapped index")
        out = cls.__new__(cls)
        out.dim = int(meta["dim"])
        out.factory = str(meta["factory"])
        out.config = config or VectorConfig()
        out.index = raw
        out.tombstones = set(int(i) for i in meta.get("tombstones", []))
        out._lock = threading.RLock()
        out._gpu_index = None
        out._gpu_dirty = True
        out._configure_search()
        return out, meta


def atomic_write(path: str | os.PathLike[str], chunks: list[bytes]) -> Path:
    """Write ``chunks`` to ``path`` so that a crash leaves either the old or the new file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return target


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename in ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["FILE_MAGIC", "VectorConfig", "VectorIndex", "atomic_write", "choose_factory", "effective_factory",
           "gpu_count", "ivf_nlist", "normalise_factory"]
