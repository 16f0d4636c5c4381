"""Search API tests: merging, grouping, filters, pagination, validation, captions, CLIs, end to end."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from index import search as search_cli
from index import texts as texts_cli
from index.encoder import DEFAULT_MODEL_PATH, Encoder, EncoderConfig
from index.errors import EmptyQueryError, InvalidQueryError, NotInLibraryError, QueryError, QueryTooLongError
from index.schema import SPACE_SEGMENTS, SPACE_VIDEOS, STATUS_INDEXED, Segment, Video, embedding_to_bytes, utcnow
from index.search import SearchEngine, SearchFilters, SegmentHit, VideoHit, merge_hits, validate_text_query
from index.store import LibraryConfig, LibraryStore
from index.texts import add_texts, read_captions
from tests.index_fixtures import pattern_video, tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Encoder:
    path = tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")
    return Encoder(EncoderConfig(checkpoint=str(path), device="cpu"))


def _axis(i: int, dim: int) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    v[i] = 1.0
    return v


@pytest.fixture()
def crafted(tmp_path, encoder):
    """A library with hand-made vectors: the query direction q = e0, scores set per segment.

    /lib/a/one.mp4 (10 s): segments [0,1] 0.9, [1,2] 0.8, [5,6] 0.7   -> spans [0,2] and [5,6]
    /lib/ab/two.mp4 (30 s): [0,1] 0.85
    /lib/a/three.mp4 (60 s, indexed 10 days ago): [2,3] 0.6
    """
    dim = encoder.embed_dim
    cfg = LibraryConfig(db=str(tmp_path / "lib.db"))
    specs = [("/lib/a/one.mp4", 10.0, [(0, 1, 0.9), (1, 2, 0.8), (5, 6, 0.7)]),
             ("/lib/ab/two.mp4", 30.0, [(0, 1, 0.85)]),
             ("/lib/a/three.mp4", 60.0, [(2, 3, 0.6)])]
    ids = {}
    with LibraryStore(cfg, writable=True) as store:
        for path, duration, segs in specs:
            with store.transaction() as tx:
                if store.library_model() is None:
                    store.set_model(tx, encoder.info)
                vecs = [s * _axis(0, dim) + np.sqrt(1 - s * s) * _axis(1 + i, dim) for i, (_, _, s) in enumerate(segs)]
                mean = np.mean(vecs, axis=0)
                video = Video(path=path, fingerprint=path, size_bytes=1, mtime_ns=1, duration_s=duration,
                              status=STATUS_INDEXED, embedding=embedding_to_bytes(mean))
                tx.session.add(video)
                tx.session.flush()
                ids[path] = video.id
                tx.add_vector(SPACE_VIDEOS, video.id, mean)
                for i, ((a, b, _), v) in enumerate(zip(segs, vecs)):
                    seg = Segment(video_id=video.id, index=i, start_s=float(a), end_s=float(b),
                                  embedding=embedding_to_bytes(v))
                    tx.session.add(seg)
                    tx.session.flush()
                    tx.add_vector(SPACE_SEGMENTS, seg.id, v)
        with store.transaction() as tx:
            tx.session.execute(update(Video).where(Video.path == "/lib/a/three.mp4")
                               .values(indexed_at=utcnow() - timedelta(days=10)))
        store.save()
    engine = SearchEngine(cfg, model=encoder)
    engine.encoder = _FixedText(encoder, _axis(0, dim))
    yield engine, ids
    engine.close()


class _FixedText:
    """The real encoder, except that every text embeds to ``vector`` (so scores are known)."""

    def __init__(self, inner: Encoder, vector: np.ndarray) -> None:
        self._inner, self._vector = inner, vector

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def encode_texts(self, texts):
        return np.stack([self._vector] * len(texts))


def test_merging_scores_and_grouping(crafted):
    engine, ids = crafted
    page = engine.search_text("query", k=10)
    got = [(Path(h.path).name, h.start_s, h.end_s, round(h.score, 3)) for h in page.items]
    assert got == [("one.mp4", 0.0, 2.0, 0.9), ("two.mp4", 0.0, 1.0, 0.85), ("one.mp4", 5.0, 6.0, 0.7),
                   ("three.mp4", 2.0, 3.0, 0.6)]
    assert len(page.items[0].segment_ids) == 2 and not page.has_more
    grouped = engine.search_text("query", k=10, group_by_video=True).items
    assert [Path(v.path).name for v in grouped] == ["one.mp4", "two.mp4", "three.mp4"]
    assert isinstance(grouped[0], VideoHit) and [(s.start_s, s.end_s) for s in grouped[0].spans] == [(0, 2), (5, 6)]
    assert [Path(v.path).name for v in engine.search_videos("query", k=3).items][0] == "two.mp4"
    assert merge_hits([SegmentHit(1, "p", 0, 1, 0.5, (1,)), SegmentHit(1, "p", 1.5, 2, 0.6, (2,))], gap_s=0.5)[0].end_s == 2


def test_pagination(crafted):
    engine, _ = crafted
    full = engine.search_text("query", k=4).items
    pages = [engine.search_text("query", k=2, offset=o) for o in (0, 2, 4)]
    assert pages[0].has_more and pages[1].has_more is False and pages[2].items == []
    assert pages[0].items + pages[1].items == full


def test_filters(crafted):
    engine, _ = crafted

    def names(**kw):
        return [Path(h.path).name for h in engine.search_text("q", k=10, filters=SearchFilters(**kw)).items]

    assert names(path_prefix="/lib/a") == ["one.mp4", "one.mp4", "three.mp4"]  # not /lib/ab
    assert names(path_prefix="/lib/ab/") == ["two.mp4"]
    assert names(path_prefix="/lib/a/one.mp4") == ["one.mp4", "one.mp4"]
    assert names(path_prefix="/lib/a%") == []  # LIKE wildcards are literal
    assert names(min_duration_s=20) == ["two.mp4", "three.mp4"]
    assert names(min_duration_s=20, max_duration_s=40) == ["two.mp4"]
    assert names(indexed_before=utcnow() - timedelta(days=1)) == ["three.mp4"]
    assert "three.mp4" not in names(indexed_after=utcnow() - timedelta(days=1))
    with pytest.raises(InvalidQueryError):
        names(min_duration_s=float("nan"))


@pytest.mark.parametrize("query, error", [
    ("", EmptyQueryError), ("   \n\t", EmptyQueryError), ("x" * 1001, QueryTooLongError),
    (b"bytes", InvalidQueryError), (None, InvalidQueryError), (42, InvalidQueryError),
    ("a\x00b", InvalidQueryError), ("bell\x07", InvalidQueryError), ("?!... ###", InvalidQueryError),
])
def test_query_validation(crafted, query, error):
    engine, _ = crafted
    with pytest.raises(error) as caught:
        engine.search_text(query)
    assert isinstance(caught.value, QueryError) and isinstance(caught.value, ValueError) and str(caught.value)


def test_parameter_and_video_query_validation(crafted, tmp_path):
    engine, _ = crafted
    assert validate_text_query("  Ein Hund läuft  ") == "Ein Hund läuft"
    for kwargs in ({"k": 0}, {"k": 10_000}, {"offset": -1}, {"k": True}):
        with pytest.raises(InvalidQueryError):
            engine.search_text("query", **kwargs)
    with pytest.raises(InvalidQueryError, match="not a regular"):
        engine.similar_segments(tmp_path / "missing.mp4")
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(InvalidQueryError):  # never opened (would block)
        engine.video_to_texts(fifo)
    video = pattern_video(tmp_path / "q.mp4", seed=1, seconds=2)
    with pytest.raises(InvalidQueryError, match="after"):
        engine.similar_segments(video, start_s=1.5, end_s=1.0)
    with pytest.raises(NotInLibraryError):
        engine.similar_to_segment(123456)


def test_captions_video_to_text_and_clis(tmp_path, encoder, capsys):
    lib = tmp_path / "lib"
    for i in range(3):
        pattern_video(lib / f"v{i}.mp4", seed=i, seconds=2)
    db = str(tmp_path / "lib.db")
    from data.segments import SegmentationConfig
    from index.build import BuildConfig, build_library

    cfg = LibraryConfig(db=db)
    with LibraryStore(cfg, writable=True) as store:
        build_library(store, encoder, [str(lib)], BuildConfig(segmentation=SegmentationConfig(window_s=1.0),
                                                               progress=False))
        lines = tmp_path / "caps.txt"
        lines.write_text("a red circle\n\na blue square\na red circle\n" + "x" * 2000 + "\n")
        summary = add_texts(store, encoder, read_captions(lines), "caps")
        assert (summary.added, summary.duplicates, summary.skipped) == (2, 1, 1)
        jsonl = tmp_path / "caps.jsonl"
        jsonl.write_text('{"video_id": 7, "captions": ["one", "two"]}\n{"caption": "three"}\n')
        assert add_texts(store, encoder, read_captions(jsonl), "j").added == 3
        msr = tmp_path / "MSRVTT_data.json"
        msr.write_text(json.dumps({"videos": [], "sentences": [{"video_id": "video1", "caption": "a man sings"}]}))
        assert add_texts(store, encoder, read_captions(msr), "msrvtt").added == 1
        assert add_texts(store, encoder, read_captions(msr), "msrvtt").duplicates == 1
    with SearchEngine(cfg, model=encoder) as engine:
        texts = engine.video_to_texts(lib / "v0.mp4", 0.0, 1.0, k=10).items
        assert len(texts) == 6 and texts[0].score >= texts[-1].score
        assert {t.text for t in engine.video_to_texts(lib / "v0.mp4", k=10, source="msrvtt").items} == {"a man sings"}
        similar = engine.similar_segments(lib / "v1.mp4", k=5).items
        assert similar and all(Path(h.path).name != "v1.mp4" for h in similar)
        seg_id = engine.search_text("a red circle", k=1).items[0].segment_ids[0]
        assert engine.segment_to_texts(seg_id, k=2).items
        hit = engine.search_text("a red circle", k=1, thumbnails=True).items[0]
        assert hit.thumbnail and Path(hit.thumbnail).read_bytes()[:2] == b"\xff\xd8"
    model = encoder.info.checkpoint_path
    assert texts_cli.main(["add", str(lines), "--db", db, "--model", model, "--source", "cli"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["added"] == 2
    assert search_cli.main(["--db", db, "--model", model, "text", "a red circle", "-k", "2", "--group"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["items"]) == 2 and out["items"][0]["spans"]
    assert search_cli.main(["--db", db, "--model", model, "video", str(lib / "v2.mp4"), "--texts", "-k", "3"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 3
    assert search_cli.main(["--db", db, "--model", model, "text", ""]) == 2
    assert json.loads(capsys.readouterr().out)["error_type"] == "EmptyQueryError"


DEMO = REPO / DEFAULT_MODEL_PATH


@pytest.mark.skipif(not DEMO.is_file(), reason=f"needs the trained demo checkpoint {DEFAULT_MODEL_PATH} "
                    "(with random weights a caption does not find its own clip)")
def test_end_to_end_caption_finds_its_own_clip(tmp_path):
    """Synthetic clips with known captions: each caption's best hit is its own clip."""
    from data.synthetic import SyntheticConfig, SyntheticTemporalDataset
    from index.build import BuildConfig, build_library
    from data.segments import SegmentationConfig
    from tests.data_fixtures import write_video

    encoder = Encoder(EncoderConfig(checkpoint=str(DEMO), device="cpu"))
    dataset = SyntheticTemporalDataset(SyntheticConfig(num_videos=8, seed=1234))
    lib = tmp_path / "lib"
    captions = {}
    for i in range(len(dataset)):
        item = dataset.item(i)
        path = write_video(lib / f"s{i}.mp4", item.frames, fps=8)
        captions[str(path)] = item.captions[0]
    cfg = LibraryConfig(db=str(tmp_path / "lib.db"))
    with LibraryStore(cfg, writable=True) as store:
        build_library(store, encoder, [str(lib)], BuildConfig(segmentation=SegmentationConfig(window_s=60.0),
                                                               progress=False))
    with SearchEngine(cfg, model=encoder) as engine:
        correct = sum(engine.search_text(text, k=1).items[0].path == path for path, text in captions.items())
    assert correct >= 0.75 * len(captions), f"{correct}/{len(captions)} captions found their clip first"
