"""Helpers for the app tests: free ports, tiny videos and models, a launched app, and an
in-memory library backend for the tests of the app's own logic (paths, validation, paging).

:class:`MemoryBackend` implements ``app.backend.LibraryBackend`` over a list of video
files with fixed segments; its "search" ranks segments by how many query words occur in
the file name. It lets the security and validation tests run without a model; the
end-to-end tests use the real ``index``-backed library.
"""

from __future__ import annotations

import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from app.backend import (
    Failure,
    IndexProgress,
    LibraryStatus,
    ProgressCallback,
    RootStatus,
    SearchFilters,
    SearchPage,
    SegmentHit,
    TextHit,
)
from app.config import AppConfig, LimitsConfig
from app.launcher import AppHandle, create_app

TINY_TEXT = {"kind": "clip", "width": 64, "layers": 2, "heads": 2, "context_length": 24}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_clip(path: Path, colour: tuple[int, int, int], num_frames: int = 20, fps: float = 10.0,
               size: int = 32, moving: bool = True) -> Path:
    """A tiny H.264 MP4 (PyAV): a coloured square moving over grey."""
    from data.synthetic import encode_mp4

    frames = np.full((num_frames, size, size, 3), 80, dtype=np.uint8)
    side = size // 3
    for i in range(num_frames):
        x = (i * (size - side)) // max(num_frames - 1, 1) if moving else (size - side) // 2
        frames[i, side:2 * side, x:x + side] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_mp4(path, frames, fps)
    return path


def write_library_folder(folder: Path) -> list[Path]:
    """Three tiny clips with telling names, one in a subfolder."""
    return [
        write_clip(folder / "red_square.mp4", (230, 20, 20)),
        write_clip(folder / "blue_square.mp4", (20, 20, 230)),
        write_clip(folder / "sub" / "green_square.mp4", (20, 230, 20), num_frames=30),
    ]


def make_tiny_model(path: Path) -> Path:
    """A random tiny DualEncoder checkpoint (VideoMamba depth 2, 32-d, 32 px, 4 frames, 2-layer text)."""
    from encoders.checkpoint import save_model
    from encoders.dual_encoder import create_dual_encoder

    model = create_dual_encoder(dict(
        video_tower="videomamba", num_frames=4, img_size=32, video_overrides={"depth": 2, "embed_dim": 32},
        text=dict(TINY_TEXT), pooling="cls", embed_dim=32))
    return save_model(model, path)


@dataclass
class MemoryVideo:
    path: Path
    duration_s: float


class MemoryBackend:
    """In-memory ``LibraryBackend`` (see module doc). ``index_folders`` registers every
    ``.mp4`` under the folders, one 1-second segment per second of a 2-second video."""

    def __init__(self, db_path: Path, texts: Sequence[str] = ()) -> None:
        self.db_path = db_path
        self._roots: list[Path] = []
        self._videos: list[MemoryVideo] = []
        self._texts = list(texts)
        self.closed = False

    # -- helpers for tests
    def add_video(self, path: Path, duration_s: float = 2.0) -> None:
        self._videos.append(MemoryVideo(path, duration_s))

    def add_root(self, path: Path) -> None:
        self._roots.append(Path(path).resolve())

    def _segments(self, filters: SearchFilters) -> list[SegmentHit]:
        hits = []
        for vid, video in enumerate(self._videos):
            if filters.folder and not str(video.path).startswith(filters.folder):
                continue
            if filters.min_duration_s is not None and video.duration_s < filters.min_duration_s:
                continue
            if filters.max_duration_s is not None and video.duration_s > filters.max_duration_s:
                continue
            for s in range(int(video.duration_s)):
                hits.append(SegmentHit(str(video.path), float(s), float(s + 1), 0.0, vid * 100 + s, vid,
                                       video.duration_s))
        return hits

    @staticmethod
    def _page(hits: list[SegmentHit], page: int, page_size: int) -> SearchPage:
        start = (page - 1) * page_size
        return SearchPage(hits[start:start + page_size], page, page_size, len(hits) > start + page_size)

    # -- LibraryBackend
    def roots(self) -> list[Path]:
        return list(self._roots)

    def status(self) -> LibraryStatus:
        roots = [RootStatus(str(r), sum(str(v.path).startswith(str(r)) for v in self._videos), 0, 0)
                 for r in self._roots]
        segments = len(self._segments(SearchFilters()))
        return LibraryStatus(str(self.db_path), "memory", roots, len(self._videos), segments, 0, len(self._texts))

    def videos(self, limit: int = 500) -> list[str]:
        return [str(v.path) for v in self._videos][:limit]

    def search_text(self, query: str, filters: SearchFilters, page: int, page_size: int) -> SearchPage:
        words = query.lower().split()
        scored = [SegmentHit(**{**h.__dict__, "score": float(sum(w in Path(h.video_path).name for w in words))})
                  for h in self._segments(filters)]
        scored.sort(key=lambda h: (-h.score, h.video_path, h.start_s))
        return self._page(scored, page, page_size)

    def similar_segments(self, segment_id: int, filters: SearchFilters, page: int, page_size: int) -> SearchPage:
        hits = [h for h in self._segments(filters) if h.segment_id != segment_id]
        return self._page(hits, page, page_size)

    def video_to_texts(self, path: Path, start_s: Optional[float], end_s: Optional[float], top_k: int) -> list[TextHit]:
        return [TextHit(t, 1.0 / (i + 1), "memory") for i, t in enumerate(self._texts[:top_k])]

    def video_to_segments(self, path: Path, start_s: Optional[float], end_s: Optional[float],
                          filters: SearchFilters, top_k: int) -> list[SegmentHit]:
        return self._segments(filters)[:top_k]

    def index_folders(self, folders: Sequence[Path], progress: ProgressCallback) -> IndexProgress:
        state = IndexProgress()
        for folder in folders:
            if Path(folder).resolve() not in self._roots:
                self.add_root(folder)
            files = sorted(Path(folder).rglob("*"))
            state.files_total += len([f for f in files if f.is_file()])
            for file in files:
                if not file.is_file():
                    continue
                state.current_file = str(file)
                if file.suffix == ".mp4":
                    self.add_video(file)
                    state.files_done += 1
                    state.segments += 2
                else:
                    state.failures.append(Failure(str(file), "not a video"))
                progress(state)
        return state

    def add_caption_corpus(self, path: Path, source: str) -> int:
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        self._texts += lines
        return len(lines)

    def remove_root(self, folder: Path) -> int:
        before = len(self._videos)
        self._videos = [v for v in self._videos if not str(v.path).startswith(str(folder))]
        self._roots = [r for r in self._roots if r != Path(folder)]
        return before - len(self._videos)

    def close(self) -> None:
        self.closed = True


@contextmanager
def launched(config: AppConfig, backend=None) -> Iterator[tuple[AppHandle, str]]:
    """The app launched in-process on a free port; yields (handle, url) and closes it."""
    handle = create_app(config, backend)
    url = handle.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port())
    try:
        yield handle, url
    finally:
        handle.close()


def memory_config(tmp: Path, **limits) -> AppConfig:
    """An AppConfig with everything under ``tmp``."""
    return AppConfig(db_path=tmp / "db" / "library.sqlite", thumbnails_dir=tmp / "thumbs",
                     limits=LimitsConfig(**limits))


# ---------------------------------------------------------------------------------------------
# Headless Chromium driven through the DevTools protocol over a pipe (no extra packages)

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars")


def find_chromium() -> Optional[str]:
    """Path of a Chromium binary on PATH, or None."""
    import shutil

    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure_chromium() -> tuple[Optional[str], str]:
    """Chromium's path, installing Debian's package with ``scripts/install_chromium.sh`` if missing.

    Returns ``(path, "")`` or ``(None, reason)``.
    """
    import subprocess

    found = find_chromium()
    if found:
        return found, ""
    script = Path(__file__).resolve().parent.parent / "scripts" / "install_chromium.sh"
    try:
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, f"chromium not found and {script.name} could not run: {error}"
    found = find_chromium()
    if found:
        return found, ""
    return None, f"chromium not found and cannot be installed: {(done.stderr or done.stdout).strip()[-300:]}"


class DevToolsPipe:
    """A headless Chromium with ``--remote-debugging-pipe``: JSON messages separated by NUL
    on file descriptors 3 (to the browser) and 4 (from it)."""

    def __init__(self, chromium: str, user_data_dir: Path, width: int = 1280, height: int = 900) -> None:
        import os
        import subprocess

        import fcntl

        def high(fd: int) -> int:  # above 4, so moving it to 3/4 in the child cannot clobber the other end
            moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
            os.close(fd)
            return moved

        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        to_browser_r, from_browser_w = high(to_browser_r), high(from_browser_w)
        flags = list(CHROMIUM_FLAGS) + [f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe",
                                        f"--window-size={width},{height}", "about:blank"]
        # bash (dash takes one-digit fds only) moves the pipe ends to fds 3 and 4; no preexec_fn: the
        # test process has threads
        script = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w} {to_browser_r}<&- {from_browser_w}>&-'
        self.process = subprocess.Popen(["bash", "-c", script, chromium, *flags],
                                        pass_fds=(to_browser_r, from_browser_w),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.session: Optional[str] = None

    def _read_message(self, deadline: float) -> dict:
        import json
        import os
        import select
        import time

        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise ConnectionError("chromium closed the pipe")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: Optional[dict] = None, timeout: float = 30.0, session: bool = True) -> dict:
        """Send one command and return its ``result`` (events in between are dropped)."""
        import json
        import os
        import time

        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def open_page(self, url: str) -> None:
        """Attach to the first page target and navigate it to ``url``."""
        targets = self.call("Target.getTargets", session=False)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True},
                                 session=False)["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Page.navigate", {"url": url})

    def evaluate(self, expression: str, timeout: float = 30.0):
        """Value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, timeout=timeout)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.25):
        """Poll until the expression is truthy; returns its value."""
        import time

        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(f"timed out waiting for: {expression} (last value {value!r})")

    def screenshot(self, path: Path) -> Path:
        """PNG of the whole page."""
        import base64

        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Ask the browser to quit, then make sure it did."""
        import os
        import subprocess

        try:
            self.call("Browser.close", session=False, timeout=5.0)
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------
# Driving the app's Search tab in that browser (shared by tests/test_app_browser.py and
# scripts/make_screenshot.py)

_SET_QUERY_AND_SEARCH = """(() => {
  const box = document.querySelector('#ms-query textarea, #ms-query input');
  const setter = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(box), 'value').set;
  setter.call(box, %s);
  box.dispatchEvent(new Event('input', {bubbles: true}));
  document.querySelector('#ms-search-btn').click();
  return true;
})()"""

_PLAYER_STATE = ("(() => { const v = document.querySelector('#ms-player video');"
                 " return v && (v.readyState >= 2 || v.error) ? {ready: v.readyState,"
                 " error: v.error && v.error.code, time: v.currentTime, src: v.src} : null; })()")


def wait_for_search_box(browser: DevToolsPipe, timeout: float = 60.0) -> None:
    """Wait until the Search tab's query box and button are on the page."""
    browser.wait_for("document.querySelector('#ms-query textarea, #ms-query input') !== null"
                     " && document.querySelector('#ms-search-btn') !== null", timeout=timeout)


def submit_search(browser: DevToolsPipe, query: str) -> None:
    """Type ``query`` into the Search tab (as an input event, so Gradio sees it) and press Search."""
    import json

    browser.evaluate(_SET_QUERY_AND_SEARCH % json.dumps(query))


def wait_for_result_cards(browser: DevToolsPipe, timeout: float = 60.0) -> int:
    """Wait until result cards are shown and every thumbnail has loaded; returns the number of cards."""
    count = browser.wait_for("document.querySelectorAll('#ms-results img').length", timeout=timeout)
    browser.wait_for("Array.from(document.querySelectorAll('#ms-results img'))"
                     ".every(img => img.complete && img.naturalWidth > 0)", timeout=timeout)
    return int(count)


def play_first_result(browser: DevToolsPipe, timeout: float = 60.0) -> dict:
    """Click the first result card and wait until the player has a frame (or an error).

    Returns ``{ready, error, time, src}`` of the player's ``<video>``.
    """
    browser.evaluate("document.querySelector('#ms-results img').click()")
    browser.wait_for("(document.querySelector('#ms-player video') || {}).src", timeout=timeout)
    return browser.wait_for(_PLAYER_STATE, timeout=timeout)


def check_png(path: Path, min_colours: int = 16) -> tuple[int, int]:
    """Check that ``path`` is a PNG that decodes and is not blank; returns its (width, height).

    Raises ``AssertionError`` naming what is wrong.
    """
    from PIL import Image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    with Image.open(path) as image:
        image.load()
        rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    assert width >= 320 and height >= 240, f"{path} is only {width}x{height}"
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    colours = len(np.unique(packed))
    assert colours >= min_colours and float(rgb.std()) > 5.0, \
        f"{path} looks blank ({colours} colours, std {float(rgb.std()):.1f})"
    return width, height
