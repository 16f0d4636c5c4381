"""App behaviour that does not depend on the model: queueing, passwords, error messages,
served folders following the library, on an in-memory backend (tests/app_fixtures.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from gradio_client import Client

from app.errors import INTERNAL_ERROR
from app_fixtures import MemoryBackend, launched, memory_config, write_library_folder


class GatedBackend(MemoryBackend):
    """Indexing waits until the test opens the gate."""

    def __init__(self, db_path: Path) -> None:
        super().__init__(db_path)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def index_folders(self, folders, progress):
        self.entered.set()
        if not self.gate.wait(timeout=60):
            raise TimeoutError("gate never opened")
        return super().index_folders(folders, progress)


class FailingBackend(MemoryBackend):
    def search_text(self, query, filters, page, page_size):
        raise RuntimeError("internal detail: /secret/path and a stack")


def wait_state(client: Client, state: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = client.predict(api_name="/index_progress")
        if progress["state"] == state:
            return progress
        time.sleep(0.1)
    raise TimeoutError(f"never reached {state}")


def test_searches_are_answered_while_indexing_runs(tmp_path):
    lib = tmp_path / "lib"
    write_library_folder(lib)
    backend = GatedBackend(tmp_path / "db.sqlite")
    backend.add_root(tmp_path / "lib")
    backend.add_video(lib / "red_square.mp4")
    with launched(memory_config(tmp_path), backend) as (_, url):
        client = Client(url, verbose=False)
        client.predict(folder=str(lib), api_name="/index_folder")
        assert backend.entered.wait(10)
        started = time.monotonic()
        result = client.predict(query="red", api_name="/search")
        assert time.monotonic() - started < 10
        assert result["results"][0]["name"] == "red_square.mp4"
        assert client.predict(api_name="/index_progress")["state"] == "running"
        with pytest.raises(Exception, match="already in progress"):
            client.predict(folder=str(lib), api_name="/index_folder")
        with pytest.raises(Exception, match="wait for the indexing run"):
            client.predict(folder=str(lib), api_name="/remove_folder")
        backend.gate.set()
        done = wait_state(client, "done")
        assert done["files_done"] == 3


def test_unexpected_errors_are_logged_not_shown(tmp_path, caplog):
    lib = tmp_path / "lib"
    write_library_folder(lib)
    backend = FailingBackend(tmp_path / "db.sqlite")
    with launched(memory_config(tmp_path), backend) as (_, url):
        with pytest.raises(Exception) as info:
            Client(url, verbose=False).predict(query="red", api_name="/search")
    assert INTERNAL_ERROR in str(info.value)
    assert "/secret/path" not in str(info.value) and "Traceback" not in str(info.value)
    assert "internal detail" in caplog.text  # the details went to the log


def test_password_protects_pages_api_and_files(tmp_path):
    lib = tmp_path / "lib"
    videos = write_library_folder(lib)
    backend = MemoryBackend(tmp_path / "db.sqlite")
    backend.add_root(lib)
    backend.add_video(videos[0])
    config = memory_config(tmp_path)
    config.auth = ("alice", "s3cret:pw")
    with launched(config, backend) as (_, url):
        with pytest.raises(Exception):
            Client(url, verbose=False)
        assert httpx.get(url + "gradio_api/file=" + quote(str(videos[0]))).status_code in (401, 403)
        with pytest.raises(Exception):
            Client(url, auth=("alice", "wrong"), verbose=False)
        client = Client(url, auth=("alice", "s3cret:pw"), verbose=False)
        assert client.predict(query="red", api_name="/search")["results"]


def test_binds_localhost_by_default(tmp_path):
    with launched(memory_config(tmp_path), MemoryBackend(tmp_path / "db.sqlite")) as (handle, url):
        assert handle.config.host == "127.0.0.1"
        assert url.startswith("http://127.0.0.1:")


def test_served_folders_follow_the_library(tmp_path):
    lib, other = tmp_path / "lib", tmp_path / "other"
    write_library_folder(lib)
    other_videos = write_library_folder(other)
    backend = MemoryBackend(tmp_path / "db.sqlite")
    with launched(memory_config(tmp_path), backend) as (handle, url):
        client = Client(url, verbose=False)

        def status(path: Path) -> int:
            return httpx.get(url + "gradio_api/file=" + quote(str(path))).status_code

        assert status(other_videos[0]) == 403
        client.predict(folder=str(other), api_name="/index_folder")
        wait_state(client, "done")
        assert status(other_videos[0]) == 200
        assert str(other.resolve()) in handle.blocks.allowed_paths
        assert client.predict(folder=str(other), api_name="/remove_folder") == {"removed_videos": 3}
        assert status(other_videos[0]) == 403
        with pytest.raises(Exception, match="not a library folder"):
            client.predict(folder=str(lib), api_name="/remove_folder")


def test_ui_search_handler_pages_and_messages(tmp_path):
    """The Search tab's own handlers (private endpoints) through the service: paging state and messages."""
    from app import render

    lib = tmp_path / "lib"
    videos = write_library_folder(lib)
    backend = MemoryBackend(tmp_path / "db.sqlite")
    backend.add_root(lib)
    for video in videos:
        backend.add_video(video)
    with launched(memory_config(tmp_path, page_size=4), backend) as (handle, _):
        page1 = handle.service.search("red", page=1)
        page2 = handle.service.search("red", page=2)
        assert len(page1.hits) == 4 and page1.has_more and len(page2.hits) == 2 and not page2.has_more
        assert "Results 1–4" in render.page_summary(page1, "red")
        assert "Results 5–6" in render.page_summary(page2, "red")
        items = render.gallery_items(page1.hits)
        assert len(items) == 4 and all(Path(img).is_file() and "score" in caption for img, caption in items)
        html_player = render.player_html(handle.service.play_url(page1.hits[0]), page1.hits[0])
        assert "#t=0.00,1.00" in html_player and "<video" in html_player
        assert "&lt;script&gt;" in render.message_html("<script>alert(1)</script>")


def test_progress_html_counts_failed_files_as_done():
    from app import render
    from app.backend import Failure, IndexProgress
    from app.jobs import DONE, JobSnapshot

    snapshot = JobSnapshot(state=DONE, job_id=1, folders=["/v"], started_at=0.0, finished_at=2.0,
                           progress=IndexProgress(files_total=4, files_done=2, files_skipped=1, segments=6,
                                                  failures=[Failure("/v/<b>.mp4", "NotAVideoError: junk")]))
    html = render.progress_html(snapshot)
    assert "files 4/4" in html and "value='100'" in html and "3.0 segments/s" in html
    assert "/v/&lt;b&gt;.mp4" in html and "NotAVideoError: junk" in html
