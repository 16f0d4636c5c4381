"""app.security: which paths may be served, which uploads and queries are accepted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.security import (
    PathGuard,
    PathNotAllowedError,
    UserError,
    check_folder,
    check_upload,
    parse_auth,
    uploaded_path,
    validate_count,
    validate_query,
    validate_span,
)


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    """A library root with a video, a sibling secret, and links in and out of the root."""
    root = tmp_path / "library"
    (root / "sub").mkdir(parents=True)
    video = root / "sub" / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    (root / "escape.mp4").symlink_to(secret)
    (root / "escape_dir").symlink_to(tmp_path)
    (root / "inside_link.mp4").symlink_to(video)
    return {"root": root, "video": video, "secret": secret}


def test_guard_accepts_files_inside_the_root(tree):
    guard = PathGuard([tree["root"]])
    assert guard.check(str(tree["video"])) == tree["video"].resolve()
    assert guard.check(tree["root"] / "inside_link.mp4") == tree["video"].resolve()


@pytest.mark.parametrize("relative", [
    "../secret.txt",                 # dot-dot out of the root
    "sub/../../secret.txt",          # dot-dot through a subfolder
    "escape.mp4",                    # symlinked file pointing outside
    "escape_dir/secret.txt",         # symlinked folder pointing outside
    "sub",                           # a folder, not a file
    "missing.mp4",                   # does not exist
])
def test_guard_refuses_traversal_and_symlink_escapes(tree, relative):
    guard = PathGuard([tree["root"]])
    with pytest.raises(PathNotAllowedError):
        guard.check(os.path.join(str(tree["root"]), relative))


@pytest.mark.parametrize("bad", [None, "", 3, b"/etc/passwd", "relative/clip.mp4", "/etc/passwd", "/tmp/\x00x.mp4"])
def test_guard_refuses_odd_values(tree, bad):
    with pytest.raises(PathNotAllowedError):
        PathGuard([tree["root"]]).check(bad)


def test_guard_prefix_sibling_is_not_inside(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "library2").mkdir()
    other = tmp_path / "library2" / "x.mp4"
    other.write_bytes(b"x")
    with pytest.raises(PathNotAllowedError):
        PathGuard([tmp_path / "lib"]).check(str(other))


def test_guard_add_remove_replace(tree, tmp_path):
    guard = PathGuard()
    with pytest.raises(PathNotAllowedError):
        guard.check(str(tree["video"]))
    guard.add(tree["root"])
    guard.add(tree["root"])
    assert guard.folders == [tree["root"].resolve()]
    assert guard.check(str(tree["video"]))
    guard.remove(tree["root"])
    assert guard.folders == []
    guard.replace([tree["root"], tree["root"] / "sub"])
    assert len(guard.folders) == 2


def test_check_upload(tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    guard = PathGuard([uploads], what="the upload folder")
    good = uploads / "clip.MP4"
    good.write_bytes(b"x" * 100)
    assert check_upload(str(good), guard, 1000, (".mp4",)) == good.resolve()
    with pytest.raises(UserError, match="limit"):
        check_upload(str(good), guard, 99, (".mp4",))
    text = uploads / "notes.txt"
    text.write_bytes(b"x")
    with pytest.raises(UserError, match="unsupported file type"):
        check_upload(str(text), guard, 1000, (".mp4",))
    empty = uploads / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        check_upload(str(empty), guard, 1000, (".mp4",))
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(b"x")
    with pytest.raises(PathNotAllowedError, match="upload folder"):
        check_upload(str(outside), guard, 1000, (".mp4",))


def test_uploaded_path_forms():
    assert uploaded_path(None) is None
    assert uploaded_path("") is None
    assert uploaded_path("/a/b.mp4") == "/a/b.mp4"
    assert uploaded_path({"path": "/a/b.mp4", "meta": {"_type": "gradio.FileData"}}) == "/a/b.mp4"
    assert uploaded_path({"url": "http://x"}) is None
    with pytest.raises(UserError):
        uploaded_path(42)


@pytest.mark.parametrize("query, cleaned", [
    ("  a red   circle\n moves ", "a red circle moves"),
    ("Cafe\u0301", "Caf\u00e9"),            # NFC
    ("ü 日本語 7", "ü 日本語 7"),
])
def test_validate_query_cleans(query, cleaned):
    assert validate_query(query, 100) == cleaned


@pytest.mark.parametrize("query, message", [
    ("", "type a few words"),
    ("   \n\t ", "type a few words"),
    ("x" * 101, "limit is 100"),
    ("abc\x00def", "control"),
    ("abc\x1b[31m", "control"),
    ("\ud800abc", "control or invalid"),
    ("?!... ---", "no letters or digits"),
    (None, "must be text"),
    (b"bytes", "must be text"),
    (["list"], "must be text"),
])
def test_validate_query_refuses(query, message):
    with pytest.raises(UserError, match=message):
        validate_query(query, 100)


def test_validate_span():
    assert validate_span(None, None) == (None, None)
    assert validate_span("", 2) == (None, 2.0)
    assert validate_span(1, "2.5") == (1.0, 2.5)
    for start, end in [(-1, None), (2, 1), (1, 1), ("x", None), (float("nan"), None), (None, float("inf")),
                       (True, None)]:
        with pytest.raises(UserError):
            validate_span(start, end)


def test_validate_count():
    assert validate_count(3, "k", 1, 10) == 3
    assert validate_count(3.0, "k", 1, 10) == 3
    assert validate_count("4", "k", 1, 10) == 4
    for bad in (0, 11, 2.5, True, None, "x"):
        with pytest.raises(UserError):
            validate_count(bad, "k", 1, 10)


def test_parse_auth():
    assert parse_auth("me:pa:ss") == ("me", "pa:ss")
    for bad in ("nopass", ":pw", "user:", ""):
        with pytest.raises(ValueError):
            parse_auth(bad)


def test_check_folder(tmp_path):
    assert check_folder(str(tmp_path)) == tmp_path.resolve()
    for bad in ("", "  ", "relative/dir", str(tmp_path / "missing"), None, f"{tmp_path}\x00"):
        with pytest.raises(UserError):
            check_folder(bad)
    file = tmp_path / "f.mp4"
    file.write_bytes(b"x")
    with pytest.raises(UserError):
        check_folder(str(file))
