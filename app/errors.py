"""Turning exceptions into messages for people: never a stack trace in the UI or the API.

``UserError`` (app), ``index.errors.LibraryError`` (library: bad query, model
mismatch, busy, ...) and ``data.errors.VideoReadError`` (an upload that cannot be
decoded) carry messages meant for users and are shown as they are.
Anything else is a bug or an environment problem: it is logged with its traceback
and the user gets a generic sentence.
"""

from __future__ import annotations

import logging

import gradio as gr

from app.security import UserError
from data.errors import VideoReadError
from index.errors import LibraryError

logger = logging.getLogger(__name__)

INTERNAL_ERROR = "Something went wrong on the server; the details are in its log."


def user_message(error: BaseException) -> str:
    """The sentence to show for ``error`` (logs unexpected ones with their traceback)."""
    if isinstance(error, (UserError, LibraryError)):
        return str(error) or type(error).__name__
    if isinstance(error, VideoReadError):  # names the file and why it cannot be decoded
        return f"cannot read that video: {error}"
    logger.error("unexpected error", exc_info=(type(error), error, error.__traceback__))
    return INTERNAL_ERROR


def api_error(error: BaseException) -> gr.Error:
    """A ``gr.Error`` for API callers (``gradio_client`` raises it as ``AppError`` with this message)."""
    return gr.Error(user_message(error), print_exception=False)
