"""Headless Chromium (Debian's ``chromium``, installed by ``scripts/install_chromium.sh`` when
missing) loads the app, runs a search, checks that result cards render and play, and saves
the screenshot shown in the README (``docs/screenshot.png``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.config import AppConfig
from app.demo_library import DemoSettings, build_demo_library
from app_fixtures import DevToolsPipe, ensure_chromium, launched, make_tiny_model

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "screenshot.png"
QUERY = "a red circle moves to the left"

SET_QUERY_AND_SEARCH = """(() => {
  const box = document.querySelector('#ms-query textarea, #ms-query input');
  const setter = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(box), 'value').set;
  setter.call(box, %s);
  box.dispatchEvent(new Event('input', {bubbles: true}));
  document.querySelector('#ms-search-btn').click();
  return true;
})()"""


@pytest.fixture(scope="module")
def chromium() -> str:
    path, reason = ensure_chromium()
    if path is None:
        pytest.skip(reason)
    return path


def test_search_renders_result_cards_and_plays_from_the_segment(chromium, tmp_path):
    import json

    config = AppConfig(db_path=tmp_path / "db" / "library.sqlite", model_path=make_tiny_model(tmp_path / "m.pt"),
                       thumbnails_dir=tmp_path / "thumbs", index_workers=0)
    with launched(config) as (handle, url):
        build_demo_library(handle.service.backend, tmp_path / "demo", DemoSettings(num_synthetic=8, frames=16))
        handle.service.refresh_roots()
        expected = handle.service.search(QUERY, page_size=12)
        browser = DevToolsPipe(chromium, tmp_path / "profile")
        try:
            browser.open_page(url)
            browser.wait_for("document.querySelector('#ms-query textarea, #ms-query input') !== null"
                             " && document.querySelector('#ms-search-btn') !== null")
            browser.evaluate(SET_QUERY_AND_SEARCH % json.dumps(QUERY))
            count = browser.wait_for("document.querySelectorAll('#ms-results img').length")
            assert count == len(expected.hits)
            cards = browser.evaluate("document.querySelector('#ms-results').innerText")
            for hit in expected.hits:
                assert hit.name in cards
            assert cards.count("score") == len(expected.hits)
            message = browser.evaluate("document.querySelector('#ms-search-message').innerText")
            assert f"“{QUERY}”" in message
            # images really load (served through Gradio's file route)
            browser.wait_for("Array.from(document.querySelectorAll('#ms-results img'))"
                             ".every(img => img.complete && img.naturalWidth > 0)")
            # clicking a card plays its video from the segment start
            browser.evaluate("document.querySelector('#ms-results img').click()")
            src = browser.wait_for("(document.querySelector('#ms-player video') || {}).src")
            first = expected.hits[0]
            assert src.endswith(f"#t={first.start_s:.2f},{first.end_s:.2f}")
            assert os.path.basename(first.video_path) in src
            state = browser.wait_for("(() => { const v = document.querySelector('#ms-player video');"
                                     " return v.readyState >= 2 || v.error ? {ready: v.readyState,"
                                     " error: v.error && v.error.code, time: v.currentTime} : null; })()")
            assert state["error"] is None and state["time"] >= first.start_s, state
            browser.screenshot(SCREENSHOT)
            # an empty query is answered in the page, not with an error
            browser.evaluate(SET_QUERY_AND_SEARCH % json.dumps("   "))
            browser.wait_for("document.querySelector('#ms-search-message').innerText.includes('type a few words')")
            assert browser.evaluate("document.querySelectorAll('#ms-results img').length") == 0
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
