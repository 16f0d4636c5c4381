"""Decoder names and :class:`DecodeConfig`, importable without PyAV.

Datasets and configs refer to these; only :mod:`data.decode` opens files (and
imports PyAV), so in-memory pipelines such as the synthetic dataset run on
machines that carry only the packages they need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PYAV = "pyav"
DECORD = "decord"
BACKENDS: tuple[str, ...] = (PYAV, DECORD)

#: Backend used when ``DecodeConfig.backend`` is None.  Chosen from
#: ``benchmarks/decode_speed.py`` (see docs/data.md): PyAV was faster for sparse
#: uniform sampling on both the 10-minute 360p and the 1080p H.264 files.
DEFAULT_BACKEND = PYAV

#: 8K UHD.  Larger frames are refused (one 8K RGB frame is ~100 MB).
DEFAULT_MAX_PIXELS = 7680 * 4320

SeekMode = Literal["exact", "keyframe"]


@dataclass(frozen=True)
class DecodeConfig:
    """How to decode.

    Attributes:
        backend: "pyav", "decord" or None for :data:`DEFAULT_BACKEND`.
        num_threads: decoder threads per open file; 0 lets the backend choose.
            Use 1 inside many DataLoader workers to avoid oversubscription.
        timeout_s: time budget in seconds for probing and for each ``get_frames`` call.
        max_pixels: refuse videos whose ``width * height`` exceeds this.
        max_decode_errors: corrupt packets tolerated per ``get_frames`` call before
            :class:`CorruptVideoError` is raised.
        seek_mode: "exact" returns the frame at each index; "keyframe" returns,
            for each index, the nearest keyframe at or before it (one decoded frame
            per index instead of up to a whole GOP: much faster for sparse samples
            from long files, at the price of frames up to one GOP early).  Falls
            back to "exact" when the file has no keyframe index.
    """

    backend: str | None = None
    num_threads: int = 0
    timeout_s: float = 60.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_decode_errors: int = 64
    seek_mode: SeekMode = "exact"

    def __post_init__(self) -> None:
        if self.seek_mode not in ("exact", "keyframe"):
            raise ValueError(f"seek_mode must be 'exact' or 'keyframe', got {self.seek_mode!r}")
