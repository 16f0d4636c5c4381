"""The unit every dataset is built from: one video (or time span of one) and its captions."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VideoTextRecord:
    """A video (optionally a ``[start_s, end_s)`` span of it, in seconds) with one or more captions.

    Attributes:
        video_path: path of the video file.
        captions: all captions for this video/span (at least one).
        video_id: stable identifier (MSR-VTT id, file stem, or stem plus span).
        start_s, end_s: optional span in seconds from the first frame (None = whole video).
        meta: free-form extra fields carried through to the sample (e.g. synthetic events).
    """

    video_path: str
    captions: tuple[str, ...]
    video_id: str
    start_s: float | None = None
    end_s: float | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.captions:
            raise ValueError(f"record {self.video_id!r} has no caption")
        if self.start_s is not None and self.end_s is not None and self.end_s < self.start_s:
            raise ValueError(f"record {self.video_id!r}: end {self.end_s} s before start {self.start_s} s")


__all__ = ["VideoTextRecord"]
