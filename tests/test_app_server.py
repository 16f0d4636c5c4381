"""The app in-process on a free port, driven with gradio_client and plain HTTP, on a real
``index`` library built by the app itself with a tiny random model."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from gradio_client import Client, handle_file

from app.config import AppConfig, LimitsConfig
from app.security import PathNotAllowedError
from app_fixtures import launched, make_tiny_model, write_clip, write_library_folder

CAPTIONS = ["a red square slides to the right", "a blue square slides to the right", "a green square"]


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    """Launched app, its client, the library folder and an outside secret; the folder is indexed
    through the API (which is what the first test checks)."""
    tmp = tmp_path_factory.mktemp("app_server")
    lib = tmp / "library"
    write_library_folder(lib)
    (lib / "broken.mp4").write_bytes(b"this is not a video")
    secret = tmp / "secret.mp4"
    secret.write_bytes(b"top secret")
    (lib / "escape.mp4").symlink_to(secret)
    captions = tmp / "captions.txt"
    captions.write_text("\n".join(CAPTIONS) + "\n")
    config = AppConfig(db_path=tmp / "db" / "library.sqlite", model_path=make_tiny_model(tmp / "model.pt"),
                       thumbnails_dir=tmp / "thumbs", index_workers=0,
                       limits=LimitsConfig(max_upload_bytes=200_000, page_size=2))
    with launched(config) as (handle, url):
        handle.service.backend.add_caption_corpus(captions, "test-captions")
        client = Client(url, verbose=False)
        yield {"handle": handle, "url": url, "client": client, "lib": lib, "secret": secret, "tmp": tmp}


def wait_done(client: Client, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = client.predict(api_name="/index_progress")
        if progress["state"] != "running":
            return progress
        time.sleep(0.2)
    raise TimeoutError("indexing did not finish")


@pytest.fixture(scope="module")
def indexed(app_env):
    client = app_env["client"]
    started = client.predict(folder=str(app_env["lib"]), api_name="/index_folder")
    assert started["state"] == "running"
    app_env["progress"] = wait_done(client)
    return app_env


def test_index_folder_reports_files_segments_and_failures(indexed):
    progress = indexed["progress"]
    assert progress["state"] == "done", progress
    assert progress["files_done"] == 3
    assert progress["segments"] >= 3
    assert progress["segments_per_s"] > 0
    reasons = {Path(f["file"]).name: f["reason"] for f in progress["failures"]}
    assert "broken.mp4" in reasons and "NotAVideoError" in reasons["broken.mp4"]
    status = indexed["client"].predict(api_name="/library_status")
    assert status["videos"] == 3 and status["failed"] == 1 and status["texts"] == len(CAPTIONS)
    assert status["roots"] == [{"folder": str(indexed["lib"].resolve()), "videos": 3,
                                "segments": status["segments"], "failed": 1}]
    assert "model.pt" in status["model"]


def test_search_returns_pages_with_thumbnails_and_play_urls(indexed):
    client = indexed["client"]
    first = client.predict(query="a red square", api_name="/search")
    assert first["page"] == 1 and len(first["results"]) == 2 and first["has_more"] is True
    hit = first["results"][0]
    assert {"video_path", "name", "start_s", "end_s", "score", "segment_id", "thumbnail", "play_url"} <= set(hit)
    assert Path(hit["thumbnail"]).is_file()
    assert hit["play_url"].endswith(f"#t={hit['start_s']:.2f},{hit['end_s']:.2f}")
    second = client.predict(query="a red square", page=2, api_name="/search")
    assert second["page"] == 2 and second["has_more"] is False and len(second["results"]) == 1
    names = {r["name"] for r in first["results"] + second["results"]}
    assert names == {"red_square.mp4", "blue_square.mp4", "green_square.mp4"}
    scores = [r["score"] for r in first["results"] + second["results"]]
    assert scores == sorted(scores, reverse=True)
    # the played file is really served
    response = httpx.get(indexed["url"] + hit["play_url"].split("#")[0])
    assert response.status_code == 200 and response.content == Path(hit["video_path"]).read_bytes()


def test_search_filters(indexed):
    client = indexed["client"]
    sub = str(indexed["lib"] / "sub")
    only_sub = client.predict(query="square", folder=sub, page_size=10, api_name="/search")
    assert [r["name"] for r in only_sub["results"]] == ["green_square.mp4"]
    long_only = client.predict(query="square", min_duration_s=2.5, page_size=10, api_name="/search")
    assert [r["name"] for r in long_only["results"]] == ["green_square.mp4"]
    short_only = client.predict(query="square", max_duration_s=2.5, page_size=10, api_name="/search")
    assert {r["name"] for r in short_only["results"]} == {"red_square.mp4", "blue_square.mp4"}


def test_more_like_this_excludes_the_source_video(indexed):
    client = indexed["client"]
    hit = client.predict(query="red", page_size=10, api_name="/search")["results"][0]
    similar = client.predict(segment_id=hit["segment_id"], page_size=10, api_name="/similar_segments")
    assert similar["results"]
    assert hit["video_path"] not in {r["video_path"] for r in similar["results"]}
    with pytest.raises(Exception, match="no segment"):
        client.predict(segment_id=987654, api_name="/similar_segments")


def test_video_to_text_with_a_library_clip_and_an_upload(indexed, tmp_path):
    client = indexed["client"]
    result = client.predict(library_video=str(indexed["lib"] / "red_square.mp4"), start_s=0.0, end_s=1.5,
                            top_k=3, api_name="/video_to_text")
    assert sorted(t["text"] for t in result["texts"]) == sorted(CAPTIONS)
    assert all(t["source"] == "test-captions" for t in result["texts"])
    assert [t["score"] for t in result["texts"]] == sorted((t["score"] for t in result["texts"]), reverse=True)
    assert "red_square.mp4" not in {s["name"] for s in result["segments"]}  # its own segments are excluded
    upload = write_clip(tmp_path / "query clip.mp4", (200, 200, 20))
    uploaded = client.predict(video=handle_file(str(upload)), top_k=2, api_name="/video_to_text")
    assert len(uploaded["texts"]) == 2 and len(uploaded["segments"]) == 2


@pytest.mark.parametrize("query, message", [
    ("", "type a few words"),
    ("x" * 600, "limit is 500"),
    ("abc\x00", "control"),
    ("%%% ???", "no letters or digits"),
])
def test_bad_queries_get_a_message_not_a_traceback(indexed, query, message):
    with pytest.raises(Exception, match=message) as info:
        indexed["client"].predict(query=query, api_name="/search")
    assert "Traceback" not in str(info.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"page": 0}, "page must be between"),
    ({"page_size": 10_000}, "page_size must be between"),
    ({"folder": "relative/dir"}, "absolute folder path"),
    ({"min_duration_s": 5, "max_duration_s": 1}, "end of the span"),
])
def test_bad_parameters_get_a_message(indexed, kwargs, message):
    with pytest.raises(Exception, match=message):
        indexed["client"].predict(query="square", api_name="/search", **kwargs)


def test_file_route_serves_only_library_files(indexed):
    url, lib, secret = indexed["url"], indexed["lib"], indexed["secret"]

    def get(path: str) -> int:
        return httpx.get(url + "gradio_api/file=" + path).status_code

    assert get(quote(str(lib / "red_square.mp4"))) == 200
    assert get("/etc/passwd") == 403
    assert get(quote(str(secret))) == 403
    assert get(quote(str(lib / "escape.mp4"))) == 403                    # symlink out of the root
    assert get(quote(str(lib)) + "/%2e%2e/secret.mp4") == 403             # encoded dot-dot
    assert get(quote(str(indexed["tmp"] / "db" / "library.sqlite"))) == 403
    assert get(quote(str(indexed["tmp"] / "model.pt"))) == 403


@pytest.mark.parametrize("make_path", [
    lambda env: "/etc/passwd",
    lambda env: str(env["secret"]),
    lambda env: str(env["lib"] / "escape.mp4"),
    lambda env: str(env["lib"]) + "/../secret.mp4",
    lambda env: "red_square.mp4",
])
def test_video_to_text_refuses_paths_outside_the_library(indexed, make_path):
    with pytest.raises(Exception, match="not inside a library folder|not an absolute path"):
        indexed["client"].predict(library_video=make_path(indexed), api_name="/video_to_text")


def raw_call(url: str, api_name: str, data: list) -> str:
    """Call an endpoint over plain HTTP (what a hostile script could send); returns the SSE text."""
    event = httpx.post(f"{url}gradio_api/call/{api_name}", json={"data": data}).json()["event_id"]
    return httpx.get(f"{url}gradio_api/call/{api_name}/{event}", timeout=60).text


def test_forged_upload_reference_is_refused(indexed):
    """A FileData naming a file Gradio never received (here a library file and /etc/passwd) is refused."""
    for target in (str(indexed["lib"] / "red_square.mp4"), "/etc/passwd", str(indexed["secret"])):
        forged = {"path": target, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.mp4", "url": None,
                  "size": None, "mime_type": None, "is_stream": False}
        answer = raw_call(indexed["url"], "video_to_text", [forged, "", None, None, 3])
        assert "event: error" in answer and "top secret" not in answer, answer
        # Gradio refuses it before the handler runs; the app's own check refuses it too
        with pytest.raises(PathNotAllowedError, match="upload folder"):
            indexed["handle"].service.video_to_text(upload=forged)


def test_upload_type_and_size_limits(indexed, tmp_path):
    client = indexed["client"]
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(Exception, match="unsupported file type"):
        client.predict(video=handle_file(str(text)), api_name="/video_to_text")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"definitely not a video")
    with pytest.raises(Exception, match="cannot read that video.*not a recognised video container"):
        client.predict(video=handle_file(str(junk)), api_name="/video_to_text")
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\x00" * 300_000)  # over the 200 kB limit of this app: refused by Gradio's upload route
    with pytest.raises(Exception):
        client.predict(video=handle_file(str(big)), api_name="/video_to_text")
    response = httpx.post(indexed["url"] + "gradio_api/upload", files={"files": ("big.mp4", big.read_bytes())})
    assert response.status_code == 413


def test_index_folder_refuses_bad_folders(indexed):
    client = indexed["client"]
    for folder, message in [("", "full path"), ("relative", "absolute"), ("/no/such/folder", "no such folder")]:
        with pytest.raises(Exception, match=message):
            client.predict(folder=folder, api_name="/index_folder")


def test_rescan_finds_new_and_deleted_files(indexed):
    client, lib = indexed["client"], indexed["lib"]
    added = write_clip(lib / "yellow_square.mp4", (230, 230, 20))
    try:
        client.predict(api_name="/rescan")
        progress = wait_done(client)
        assert progress["state"] == "done" and progress["files_done"] == 1 and progress["files_skipped"] >= 3
        assert str(added) in client.predict(api_name="/list_videos")
    finally:
        added.unlink()
    client.predict(api_name="/rescan")
    wait_done(client)
    assert str(added) not in client.predict(api_name="/list_videos")
    assert client.predict(api_name="/library_status")["videos"] == 3


def test_remove_folder_endpoint_on_the_index(indexed):
    client, lib, tmp = indexed["client"], indexed["lib"], indexed["tmp"]
    extra = tmp / "extra"
    clip = write_clip(extra / "purple_square.mp4", (160, 30, 200))
    client.predict(folder=str(extra), api_name="/index_folder")
    assert wait_done(client)["files_done"] == 1
    status = client.predict(api_name="/library_status")
    assert [r["folder"] for r in status["roots"]] == [str(lib.resolve()), str(extra.resolve())]
    assert status["roots"][1]["videos"] == 1 and status["videos"] == 4
    with pytest.raises(Exception, match="is not a library folder .the library folders are: "):
        client.predict(folder=str(lib / "sub"), api_name="/remove_folder")
    assert client.predict(folder=str(extra), api_name="/remove_folder") == {"removed_videos": 1}
    status = client.predict(api_name="/library_status")
    assert [r["folder"] for r in status["roots"]] == [str(lib.resolve())] and status["videos"] == 3
    names = {r["name"] for r in client.predict(query="a purple square", page_size=10, api_name="/search")["results"]}
    assert names == {"red_square.mp4", "blue_square.mp4", "green_square.mp4"}
    assert httpx.get(indexed["url"] + "gradio_api/file=" + quote(str(clip))).status_code == 403
    assert clip.is_file()


def test_api_lists_every_named_endpoint(indexed):
    from app.api import ENDPOINTS

    named = indexed["client"].view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(ENDPOINTS) <= {name.lstrip("/") for name in named}
    doc = (Path(__file__).resolve().parent.parent / "docs" / "app.md").read_text()
    for name in ENDPOINTS:
        assert f"`{name}`" in doc, f"docs/app.md does not list the endpoint {name}"
