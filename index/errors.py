"""Exceptions of the ``index`` package.

Every failure a caller may want to handle has its own class; all derive from
:class:`LibraryError`. Query validation errors also derive from ``ValueError`` so
web handlers can map them to "bad request" without importing this module.
"""

from __future__ import annotations


class LibraryError(Exception):
    """Base class of every error raised by the library index."""


class SchemaVersionError(LibraryError):
    """The database was written by a newer version of this code (or is not a library)."""


class ModelMismatchError(LibraryError):
    """Vectors or queries come from a model other than the one the library was built with.

    Attributes:
        library_model: description of the model recorded in the library.
        given_model: description of the model offered.
        command: the command that re-indexes the library with the offered model.
    """

    def __init__(self, library_model: str, given_model: str, command: str) -> None:
        self.library_model = library_model
        self.given_model = given_model
        self.command = command
        super().__init__(
            f"this library was built with model {library_model}, but model {given_model} was given; "
            f"vectors of two models cannot be mixed. To re-index the library with the new model run: {command}")


class LibraryBusyError(LibraryError):
    """Another process holds the library's writer lock (an indexing run is going on)."""


class NotALibraryRootError(LibraryError, ValueError):
    """A path given as a library folder (root) is not one of the library's roots.

    Attributes:
        path: the path as given.
        roots: the library's roots at the time of the check.
    """

    def __init__(self, path: str, roots: list[str]) -> None:
        self.path = path
        self.roots = list(roots)
        known = ", ".join(self.roots) if self.roots else "none yet"
        super().__init__(f"{path} is not a library folder (the library folders are: {known})")


class VectorFileError(LibraryError):
    """A vector file is missing, truncated or does not match the library (repairable from the database)."""


class QueryError(LibraryError, ValueError):
    """A search query was refused; the message says why."""


class EmptyQueryError(QueryError):
    """The text query is empty or only whitespace."""


class QueryTooLongError(QueryError):
    """The text query is longer than the configured limit."""


class InvalidQueryError(QueryError):
    """The query is not text (wrong type, binary or control characters), or a parameter is out of range."""


class NotInLibraryError(LibraryError, KeyError):
    """A video or segment id (or path) asked for is not in the library."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


__all__ = [
    "EmptyQueryError",
    "InvalidQueryError",
    "LibraryBusyError",
    "LibraryError",
    "ModelMismatchError",
    "NotALibraryRootError",
    "NotInLibraryError",
    "QueryError",
    "QueryTooLongError",
    "SchemaVersionError",
    "VectorFileError",
]
