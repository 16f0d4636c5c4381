"""The app's index-backed library without a web server: live progress from the build's callback,
per-folder counts from ``index.roots``, removing folders, on a real library with a tiny model."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

import app.index_backend as index_backend
from app.config import AppConfig
from app.errors import user_message
from app.jobs import DONE, RUNNING
from app.security import PathNotAllowedError, UserError
from app.service import AppService
from app_fixtures import make_tiny_model, write_clip, write_library_folder
from index.errors import LibraryBusyError
from index.roots import root_stats
from index.store import LibraryConfig, LibraryStore


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture
def service(tmp_path, model):
    config = AppConfig(db_path=tmp_path / "db" / "library.sqlite", model_path=model,
                       thumbnails_dir=tmp_path / "thumbs", index_workers=0)
    service = AppService(config, index_backend.IndexBackend.open(config))
    yield service
    service.close()


def _wait(service: AppService, timeout: float = 60.0):
    snapshot = service.jobs.wait(timeout)
    assert snapshot.state == DONE, snapshot
    return snapshot


def test_live_progress_comes_from_the_build_callback(service, tmp_path, monkeypatch):
    """The run is held inside its progress callback after the first committed file: the app
    already shows that file, the final total and the current file, and searches are answered."""
    lib = tmp_path / "lib"
    write_library_folder(lib)
    (lib / "broken.mp4").write_bytes(b"not a video")
    gate, held = threading.Event(), threading.Event()
    callback_threads: set[str] = set()
    real_build = index_backend.build_library

    def held_build(store, encoder, roots, config, progress):
        def hold(event):
            callback_threads.add(threading.current_thread().name)
            progress(event)
            if event.files_indexed == 1 and not held.is_set():
                held.set()
                assert gate.wait(30), "the test never opened the gate"
        return real_build(store, encoder, roots, config, progress=hold)

    monkeypatch.setattr(index_backend, "build_library", held_build)
    service.index_folder(str(lib))
    assert held.wait(60)
    live = service.progress()
    assert live.state == RUNNING
    assert (live.progress.files_total, live.progress.files_done) == (4, 1)
    assert live.progress.segments >= 1
    assert service.search("square").hits is not None  # searches are answered during the run
    gate.set()
    final = _wait(service)
    assert (final.progress.files_total, final.progress.files_done, final.progress.files_skipped) == (4, 3, 0)
    assert [Path(f.file).name for f in final.progress.failures] == ["broken.mp4"]
    assert "NotAVideoError" in final.progress.failures[0].reason
    assert callback_threads == {"indexing-1"}  # the job's own thread, no extra polling thread
    assert final.progress.current_file == ""


def test_library_status_counts_per_folder_from_the_index(service, tmp_path):
    lib, other = tmp_path / "lib", tmp_path / "other"
    write_library_folder(lib)
    write_clip(other / "white.mp4", (250, 250, 250))
    (other / "junk.mp4").write_bytes(b"junk")
    for folder in (lib, other):
        service.index_folder(str(folder))
        _wait(service)
    status = service.status()
    with LibraryStore(LibraryConfig(db=str(service.config.db_path))) as store:
        expected = [(r.path, r.videos, r.segments, r.failed) for r in root_stats(store)]
    assert [(r.folder, r.videos, r.segments, r.failed) for r in status.roots] == expected
    assert [(r.folder, r.videos, r.failed) for r in status.roots] == [(str(lib), 3, 0), (str(other), 1, 1)]
    assert status.videos == 4 and status.failed == 1 and sum(r.segments for r in status.roots) == status.segments


def test_remove_folder_forgets_its_videos_vectors_thumbnails_and_files(service, tmp_path):
    lib, other = tmp_path / "lib", tmp_path / "other"
    write_library_folder(lib)
    other_clips = [write_clip(other / "white.mp4", (250, 250, 250)), write_clip(other / "black.mp4", (5, 5, 5))]
    for folder in (lib, other):
        service.index_folder(str(folder))
        _wait(service)
    hits = service.search("square", page_size=20).hits
    other_hit = next(h for h in hits if h.video_path.startswith(str(other)))
    thumbnails = Path(service.backend.engine.thumbnail_folder)
    assert any(thumbnails.glob(f"v{other_hit.video_id}_*.jpg"))
    assert service.play_url(other_hit)

    assert service.remove_folder(str(other)) == 2
    assert [r.folder for r in service.status().roots] == [str(lib)]
    assert service.status().videos == 3
    remaining = service.search("square", page_size=20).hits
    assert remaining and not any(h.video_path.startswith(str(other)) for h in remaining)
    assert not any(thumbnails.glob(f"v{other_hit.video_id}_*.jpg"))
    with pytest.raises(PathNotAllowedError):  # its files are no longer served
        service.play_url(other_hit)
    assert all(clip.is_file() for clip in other_clips)  # files on disk are untouched


@pytest.mark.parametrize("folder, message", [
    ("", "pick a library folder"),
    ("relative/folder", "absolute path"),
    ("{lib}/sub", "is not a library folder (the library folders are: {lib})"),
    ("{lib}/red_square.mp4", "is not a library folder"),
    ("/no/such/folder", "is not a library folder"),
])
def test_remove_folder_refuses_what_is_not_a_library_folder(service, tmp_path, folder, message):
    lib = tmp_path / "lib"
    write_library_folder(lib)
    service.index_folder(str(lib))
    _wait(service)
    with pytest.raises(UserError, match=message.format(lib=lib).replace("(", r"\(").replace(")", r"\)")):
        service.remove_folder(folder.format(lib=lib))
    assert service.status().videos == 3


def test_remove_folder_while_another_process_writes_says_busy(service, tmp_path):
    lib = tmp_path / "lib"
    write_library_folder(lib)
    service.index_folder(str(lib))
    _wait(service)
    with LibraryStore(LibraryConfig(db=str(service.config.db_path)), writable=True):  # e.g. python -m index.build
        with pytest.raises(LibraryBusyError) as caught:
            service.remove_folder(str(lib))
    assert "another process is writing" in user_message(caught.value)
    assert service.status().videos == 3 and [r.folder for r in service.status().roots] == [str(lib)]


def test_indexing_cannot_start_while_a_folder_is_removed(service, tmp_path):
    lib = tmp_path / "lib"
    write_library_folder(lib)
    with service.jobs.exclusive("removing a folder"):
        with pytest.raises(UserError, match="removing a folder is in progress"):
            service.index_folder(str(lib))
    service.index_folder(str(lib))  # free again afterwards
    assert _wait(service).progress.files_done == 3


def test_searches_and_an_indexing_run_share_the_encoder(service, tmp_path):
    """Searches keep being answered while the app's indexing thread encodes with the same model,
    and never two forward passes run at once."""
    encoder = service.backend.engine.encoder
    active, most, guard = [0], [0], threading.Lock()
    real = encoder.model.encode_video, encoder.model.encode_text

    def counted(method):
        def wrapper(*args, **kwargs):
            with guard:
                active[0] += 1
                most[0] = max(most[0], active[0])
            try:
                time.sleep(0.01)
                return method(*args, **kwargs)
            finally:
                with guard:
                    active[0] -= 1
        return wrapper

    encoder.model.encode_video, encoder.model.encode_text = counted(real[0]), counted(real[1])
    try:
        lib = tmp_path / "lib"
        for i in range(4):
            write_clip(lib / f"clip{i}.mp4", (40 * i, 200, 60), num_frames=40)
        service.index_folder(str(lib))
        searches = 0
        while service.jobs.running:
            service.search("a square")
            searches += 1
        assert _wait(service).progress.files_done == 4
    finally:
        encoder.model.encode_video, encoder.model.encode_text = real
    assert searches >= 2 and most[0] == 1


def test_captions_added_are_searchable_at_once(service, tmp_path, monkeypatch):
    """A caption corpus added right after indexing is seen by the very next search,
    however long the engine otherwise waits between looks at the library."""
    lib = tmp_path / "lib"
    write_library_folder(lib)
    service.index_folder(str(lib))
    _wait(service)
    store = service.backend.engine.store
    monkeypatch.setattr(store, "config", dataclasses.replace(store.config, refresh_interval_s=3600.0))
    captions = tmp_path / "captions.txt"
    captions.write_text("a red square\na blue circle\na green triangle\n")
    assert service.backend.add_caption_corpus(captions, "shapes") == 3
    video = next(p for p in sorted(lib.rglob("*.mp4")))
    texts, _ = service.video_to_text(None, str(video), None, None, 3)
    assert sorted(t.text for t in texts) == ["a blue circle", "a green triangle", "a red square"]
