"""What the app lets users read and send: served paths, uploads, queries, spans, passwords.

Every path the app hands to Gradio (a thumbnail, a video to play, a file to encode)
goes through :class:`PathGuard` first: the path is resolved with ``os.path.realpath``
(so ``..`` and symlinks are followed to where they really lead) and must then be a
regular file inside one of the library roots (or another explicitly allowed folder,
such as the thumbnail cache). Gradio's own ``allowed_paths`` is set to the same roots,
so its file route refuses the rest as a second line of defence.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import unicodedata
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

logger = logging.getLogger(__name__)


class UserError(ValueError):
    """A request the app refuses; the message is shown to the user as is."""


class PathNotAllowedError(UserError):
    """A path outside every library root (or not a regular file) was asked for."""


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(os.fspath(path)))


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


class PathGuard:
    """The set of folders whose files may be served, and the check against it.

    Thread-safe: roots are added and removed by the indexing thread while request
    handlers check paths.
    """

    def __init__(self, folders: Iterable[str | os.PathLike[str]] = (), what: str = "a library folder") -> None:
        self.what = what
        self._lock = threading.Lock()
        self._folders: list[Path] = []
        for folder in folders:
            self.add(folder)

    @property
    def folders(self) -> list[Path]:
        """The allowed folders, resolved."""
        with self._lock:
            return list(self._folders)

    def add(self, folder: str | os.PathLike[str]) -> Path:
        """Allow the files under ``folder`` (resolved); returns the resolved folder."""
        real = _real(folder)
        with self._lock:
            if real not in self._folders:
                self._folders.append(real)
        return real

    def remove(self, folder: str | os.PathLike[str]) -> None:
        """Stop allowing ``folder`` (no error if it was not allowed)."""
        real = _real(folder)
        with self._lock:
            self._folders = [f for f in self._folders if f != real]

    def replace(self, folders: Iterable[str | os.PathLike[str]]) -> None:
        """Set the allowed folders to exactly ``folders``."""
        resolved = []
        for folder in folders:
            real = _real(folder)
            if real not in resolved:
                resolved.append(real)
        with self._lock:
            self._folders = resolved

    def check(self, path: Any) -> Path:
        """The resolved path of ``path`` if it is a regular file inside an allowed folder.

        Raises:
            PathNotAllowedError: not a string/path, contains NUL, does not exist, is not a
                regular file, or resolves (through ``..`` or symlinks) outside every folder.
        """
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise PathNotAllowedError("no file path given")
        text = os.fspath(path)
        if "\x00" in text:
            raise PathNotAllowedError("the path contains a NUL character")
        if not os.path.isabs(text):
            raise PathNotAllowedError(f"not an absolute path: {text!r}")
        real = _real(text)
        if not any(_is_within(real, folder) for folder in self.folders):
            logger.warning("refused path outside the library roots: %r -> %s", text, real)
            raise PathNotAllowedError(f"that file is not inside {self.what}")
        if not real.is_file():
            raise PathNotAllowedError(f"no such file in {self.what}")
        return real


def uploaded_path(value: Any) -> Optional[str]:
    """The local path in an upload value: a path string, or a Gradio ``FileData``
    (object or dict with ``path``); ``None`` for nothing."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, Mapping):
        path = value.get("path")
        return path if isinstance(path, str) and path else None
    path = getattr(value, "path", None)
    if isinstance(path, str) and path:
        return path
    raise UserError("the uploaded value is not a file")


def check_upload(path: str, upload_guard: PathGuard, max_bytes: int, suffixes: Iterable[str]) -> Path:
    """A file a user uploaded through Gradio, checked before anything reads it.

    It must lie in Gradio's upload folder (``upload_guard``: a client may send any path
    in a ``FileData``; only files Gradio itself received are accepted), have an
    accepted suffix and be at most ``max_bytes`` long.

    Raises:
        UserError: with the reason.
    """
    real = upload_guard.check(path)
    allowed = tuple(s.lower() for s in suffixes)
    if real.suffix.lower() not in allowed:
        raise UserError(f"unsupported file type {real.suffix or '(none)'!r}; accepted: {', '.join(allowed)}")
    size = real.stat().st_size
    if size == 0:
        raise UserError("the uploaded file is empty")
    if size > max_bytes:
        raise UserError(f"the uploaded file is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    return real


def validate_query(query: Any, max_chars: int) -> str:
    """A text query made safe to encode: NFC-normalised, whitespace collapsed.

    Raises:
        UserError: not text, empty, longer than ``max_chars``, or containing control
            characters or no letter/digit at all.
    """
    if not isinstance(query, str):
        raise UserError("the query must be text")
    text = unicodedata.normalize("NFC", query)
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") and ch not in "\t\n\r" for ch in text):
        raise UserError("the query contains control or invalid characters")
    text = " ".join(text.split())
    if not text:
        raise UserError("type a few words to search for")
    if len(text) > max_chars:
        raise UserError(f"the query is {len(text)} characters long; the limit is {max_chars}")
    if not any(ch.isalnum() for ch in text):
        raise UserError("the query has no letters or digits")
    return text


def validate_span(start: Any, end: Any) -> tuple[Optional[float], Optional[float]]:
    """An optional time span in seconds: ``None``/empty means open.

    Raises:
        UserError: not numbers, negative, not finite, or end not after start.
    """

    def number(value: Any, name: str) -> Optional[float]:
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            raise UserError(f"{name} must be a number of seconds")
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise UserError(f"{name} must be a number of seconds") from None
        if not math.isfinite(result) or result < 0:
            raise UserError(f"{name} must be a finite number of seconds >= 0")
        return result

    start_s, end_s = number(start, "start"), number(end, "end")
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise UserError("the end of the span must come after its start")
    return start_s, end_s


def validate_count(value: Any, name: str, low: int, high: int) -> int:
    """An integer parameter within ``[low, high]``.

    Raises:
        UserError: otherwise.
    """
    if isinstance(value, bool):
        raise UserError(f"{name} must be a whole number")
    if isinstance(value, float):
        if not value.is_integer():
            raise UserError(f"{name} must be a whole number")
        value = int(value)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a whole number") from None
    if not low <= number <= high:
        raise UserError(f"{name} must be between {low} and {high}")
    return number


def parse_auth(text: str) -> tuple[str, str]:
    """``"USER:PASS"`` as a pair (the password may contain colons).

    Raises:
        ValueError: no colon, or an empty user or password.
    """
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth must be USER:PASS with a non-empty user and password")
    return user, password


def check_folder(path: Any) -> Path:
    """A folder a user asks to index: must be an existing directory (resolved).

    Raises:
        UserError: empty, NUL, relative, or not an existing directory.
    """
    if not isinstance(path, str) or not path.strip():
        raise UserError("give the folder's full path")
    text = os.path.expanduser(path.strip())
    if "\x00" in text:
        raise UserError("the path contains a NUL character")
    if not os.path.isabs(text):
        raise UserError(f"give an absolute folder path, not {text!r}")
    real = _real(text)
    if not real.is_dir():
        raise UserError(f"no such folder: {text}")
    return real
