"""Content fingerprints of video files and model checkpoints.

A video fingerprint must be cheap on a 50 GB file yet change whenever the content
does in practice: it hashes (BLAKE2b, 128-bit digest) the file size, the first and
the last ``edge_bytes`` and ``blocks`` evenly spaced blocks of ``block_bytes`` in
between. At the defaults that is at most 2 MiB + 2 MiB + 16 x 64 KiB = 5 MiB read
per file, whatever its size; files up to ``edge_bytes * 2 + blocks * block_bytes``
are hashed in full. Two files with the same fingerprint are treated as the same
video (a move or a copy), so edits that keep the size and touch none of the sampled
bytes go unnoticed by the fingerprint alone; the indexer also compares size and
modification time, so such an edit is still re-indexed when the mtime changes.

A checkpoint fingerprint is the SHA-256 of the whole file (checkpoints are read
once per run anyway).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

FINGERPRINT_VERSION = 1


@dataclass(frozen=True)
class FingerprintConfig:
    """How much of a file the video fingerprint reads (see module doc)."""

    edge_bytes: int = 2 * 1024 * 1024
    block_bytes: int = 64 * 1024
    blocks: int = 16

    def __post_init__(self) -> None:
        if self.edge_bytes < 1 or self.block_bytes < 1 or self.blocks < 0:
            raise ValueError("edge_bytes and block_bytes must be >= 1 and blocks >= 0")


def _read_at(handle, offset: int, length: int) -> bytes:
    handle.seek(offset)
    return handle.read(length)


def file_fingerprint(path: str | os.PathLike[str], config: FingerprintConfig | None = None) -> str:
    """Fingerprint of a regular file as ``"v1:<32 hex digits>"``.

    Raises:
        OSError: the file cannot be opened or read.
    """
    config = config or FingerprintConfig()
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        digest.update(f"size={size};".encode())
        full_limit = 2 * config.edge_bytes + config.blocks * config.block_bytes
        if size <= full_limit:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
        else:
            digest.update(_read_at(handle, 0, config.edge_bytes))
            middle_start = config.edge_bytes
            middle_len = size - 2 * config.edge_bytes - config.block_bytes
            for i in range(config.blocks):
                offset = middle_start + (middle_len * (2 * i + 1)) // (2 * config.blocks)
                digest.update(offset.to_bytes(8, "little"))
                digest.update(_read_at(handle, offset, config.block_bytes))
            digest.update(_read_at(handle, size - config.edge_bytes, config.edge_bytes))
    return f"v{FINGERPRINT_VERSION}:{digest.hexdigest()}"


def checkpoint_fingerprint(path: str | os.PathLike[str]) -> str:
    """``"sha256:<hex>"`` of the whole checkpoint file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * 1024 * 1024):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


__all__ = ["FINGERPRINT_VERSION", "FingerprintConfig", "checkpoint_fingerprint", "file_fingerprint"]
