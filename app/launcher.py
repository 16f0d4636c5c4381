"""Create the app around a library and launch it with the safe settings.

``create_app`` returns an :class:`AppHandle`; ``handle.launch(...)`` calls
``Blocks.launch`` with ``allowed_paths`` = the library roots and the thumbnail
cache (kept up to date as folders are added or removed), the upload size limit,
the password if any, and the queue enabled. Tests use it in-process::

    handle = create_app(config)
    handle.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port)
    ...
    handle.close()
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import gradio as gr

from app.backend import LibraryBackend
from app.config import AppConfig
from app.service import AppService
from app.ui import CSS, build_blocks

logger = logging.getLogger(__name__)


class AppHandle:
    """A built app: its service (operations) and its Gradio Blocks."""

    def __init__(self, config: AppConfig, service: AppService, blocks: gr.Blocks) -> None:
        self.config = config
        self.service = service
        self.blocks = blocks
        self.url: Optional[str] = None
        self._served: list[str] = service.served_folders()
        service.set_served_folders_listener(self._set_served)

    def _set_served(self, folders: list[str]) -> None:
        # Gradio reads blocks.allowed_paths on every file request; replace the list in place
        self._served[:] = folders
        self.blocks.allowed_paths = self._served

    def launch(self, **overrides: Any) -> str:
        """``Blocks.launch`` with the app's settings; ``overrides`` win. Returns the local URL."""
        settings: dict[str, Any] = dict(
            server_name=self.config.host,
            server_port=self.config.port,
            allowed_paths=self._served,
            max_file_size=self.config.limits.max_upload_bytes,
            auth=self.config.auth,
            show_error=False,
            quiet=True,
            footer_links=["api", "gradio"],
            css=CSS,
            ssr_mode=False,
        )
        settings.update(overrides)
        self.blocks.queue(default_concurrency_limit=self.config.queue_concurrency)
        _, local_url, _ = self.blocks.launch(**settings)
        self.blocks.allowed_paths = self._served  # launch() copies its argument: keep the live list
        self.url = local_url
        logger.info("app running at %s (serving files from %s)", local_url, ", ".join(self._served))
        return local_url

    def close(self) -> None:
        """Stop the server and release the library."""
        try:
            self.blocks.close()
        finally:
            self.service.close()


def create_app(config: AppConfig, backend: Optional[LibraryBackend] = None) -> AppHandle:
    """Open the library (``config.db_path`` with ``config.model_path``) and build the app.

    Args:
        backend: an already opened library; by default :class:`app.index_backend.IndexBackend`.
    """
    if backend is None:
        from app.index_backend import IndexBackend

        backend = IndexBackend.open(config)
    service = AppService(config, backend)
    blocks = build_blocks(service)
    return AppHandle(config, service, blocks)
