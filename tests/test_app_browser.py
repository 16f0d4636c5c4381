"""Headless Chromium (Debian's ``chromium``, installed by ``scripts/install_chromium.sh`` when
missing) loads the app, runs a search, checks that result cards render and play, and takes a
screenshot into pytest's ``tmp_path`` (tests never write into the repository; the README's
``docs/screenshot.png`` is made with the shipped model by ``scripts/make_screenshot.py``)."""

from __future__ import annotations

import os

import pytest

from app.config import AppConfig
from app.demo_library import DemoSettings, build_demo_library
from app_fixtures import (DevToolsPipe, check_png, ensure_chromium, launched, make_tiny_model,
                          play_first_result, submit_search, wait_for_result_cards, wait_for_search_box)

QUERY = "a red circle moves to the left"


@pytest.fixture(scope="module")
def chromium() -> str:
    path, reason = ensure_chromium()
    if path is None:
        pytest.skip(reason)
    return path


def test_search_renders_result_cards_and_plays_from_the_segment(chromium, tmp_path):
    config = AppConfig(db_path=tmp_path / "db" / "library.sqlite", model_path=make_tiny_model(tmp_path / "m.pt"),
                       thumbnails_dir=tmp_path / "thumbs", index_workers=0)
    with launched(config) as (handle, url):
        build_demo_library(handle.service.backend, tmp_path / "demo", DemoSettings(num_synthetic=8, frames=16))
        handle.service.refresh_roots()
        expected = handle.service.search(QUERY, page_size=12)
        browser = DevToolsPipe(chromium, tmp_path / "profile")
        try:
            browser.open_page(url)
            wait_for_search_box(browser)
            submit_search(browser, QUERY)
            # every card's thumbnail really loads (served through Gradio's file route)
            assert wait_for_result_cards(browser) == len(expected.hits)
            cards = browser.evaluate("document.querySelector('#ms-results').innerText")
            for hit in expected.hits:
                assert hit.name in cards
            assert cards.count("score") == len(expected.hits)
            message = browser.evaluate("document.querySelector('#ms-search-message').innerText")
            assert f"“{QUERY}”" in message
            # clicking a card plays its video from the segment start
            state = play_first_result(browser)
            first = expected.hits[0]
            assert state["src"].endswith(f"#t={first.start_s:.2f},{first.end_s:.2f}")
            assert os.path.basename(first.video_path) in state["src"]
            assert state["error"] is None and state["time"] >= first.start_s, state
            screenshot = browser.screenshot(tmp_path / "screenshot.png")
            # an empty query is answered in the page, not with an error
            submit_search(browser, "   ")
            browser.wait_for("document.querySelector('#ms-search-message').innerText.includes('type a few words')")
            assert browser.evaluate("document.querySelectorAll('#ms-results img').length") == 0
        finally:
            browser.close()
    width, height = check_png(screenshot)
    assert width == 1280 and height >= 900
