"""Exceptions raised by the data package.

Every failure to read a video is a :class:`VideoReadError` (or a subclass) whose
message names the file and the reason, so a log line alone says what went wrong
and where.  Callers that want to skip any unreadable file catch
``VideoReadError``; callers that care about the reason catch a subclass.
"""

from __future__ import annotations

import os


class VideoReadError(Exception):
    """A video file could not be probed or decoded.

    Attributes:
        path: the file as given by the caller (``str``).
        reason: a short human-readable reason, without the path.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Keep (path, reason) through pickling, e.g. across DataLoader workers.
        return (type(self), (self.path, self.reason))


class VideoNotFoundError(VideoReadError):
    """The path does not exist (or is not a regular file)."""


class EmptyVideoFileError(VideoReadError):
    """The file exists but has zero bytes."""


class NotAVideoError(VideoReadError):
    """The file is not a media container FFmpeg recognises (e.g. a text file named .mp4)."""


class CorruptVideoError(VideoReadError):
    """The file looks like a media container but is truncated or damaged beyond decoding."""


class NoVideoStreamError(VideoReadError):
    """The container holds no video stream (e.g. an audio-only file)."""


class UnsupportedCodecError(VideoReadError):
    """The video stream uses a codec no available decoder can handle."""


class NoFramesError(VideoReadError):
    """The video stream exists but contains no decodable frame."""


class VideoTooLargeError(VideoReadError):
    """The frame size exceeds the configured pixel limit (guards memory)."""


class DecodeTimeoutError(VideoReadError):
    """Decoding exceeded the configured time budget."""


class BackendUnavailableError(RuntimeError):
    """A decoder backend was requested that is not installed on this machine."""
