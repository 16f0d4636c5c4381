"""``python -m training.evaluate`` end to end on tiny on-disk datasets (synthetic videos
written as MP4 in both the synthetic and the MSR-VTT layout, and a pairs file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from data.clip import load_clip
from data.sampling import SamplingConfig
from data.synthetic import SyntheticConfig, write_synthetic_dataset
from data.transforms import TransformConfig
from tests.training_fixtures import tiny_model_config
from encoders.checkpoint import save_model
from encoders.dual_encoder import create_dual_encoder
from training.evaluate import main as evaluate_main
from training.evaluate_io import read_results_json
from training.retrieval_metrics import evaluate_retrieval

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic clips (6 forward/backward pairs), 4 frames of 32x32, MSR-VTT layout;
    the last 3 pairs (6 videos) are the test split."""
    root = tmp_path_factory.mktemp("synthetic_disk")
    write_synthetic_dataset(root, SyntheticConfig(num_videos=12, seed=3, num_frames=4, height=32, width=32,
                                                  max_events=2), msrvtt_layout=True, test_fraction=0.5)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = create_dual_encoder(tiny_model_config())
    return save_model(model, tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def _reference_results(checkpoint: Path, rows: list[dict], root: Path, all_captions: bool):
    """Metrics computed clip by clip, independently of the evaluation code's batching and grouping."""
    from encoders.checkpoint import load_model

    model = load_model(checkpoint)
    sampling, transform = SamplingConfig(num_frames=4, mode="middle"), TransformConfig(size=32)
    with torch.no_grad():
        videos = torch.cat([model.encode_video(load_clip(root / row["video"], sampling, transform)[None])
                            for row in rows])
        captions, owners = [], []
        for position, row in enumerate(rows):
            chosen = row["captions"] if all_captions else row["captions"][:1]
            captions += chosen
            owners += [position] * len(chosen)
        texts = model.encode_text(model.tokenize(captions))
    similarity = model.similarity(texts, videos)
    return evaluate_retrieval(similarity, np.array(owners)), len(captions), similarity, np.array(owners)


def _assert_matches(document: dict, reference, name: str = "raw") -> None:
    for direction in ("text_to_video", "video_to_text"):
        got, want = document["results"][name][direction], getattr(reference, direction)
        for key in ("r1", "r5", "r10", "median_rank", "mean_rank", "num_queries", "num_gallery"):
            assert got[key] == pytest.approx(getattr(want, key)), (direction, key)


def test_synthetic_cli_subprocess_matches_clip_by_clip_reference(dataset_dir: Path, checkpoint: Path,
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "training.evaluate", "--checkpoint", str(checkpoint), "--dataset", "synthetic",
         "--root", str(dataset_dir), "--out", str(out), "--num-workers", "0", "--batch-size", "4"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"),
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| raw | text-to-video" in done.stdout and "video-to-text" in done.stdout
    document = read_results_json(out)
    rows = [json.loads(line) for line in (dataset_dir / "captions.jsonl").read_text().splitlines()]
    test_rows = [row for row in rows if row["split"] == "test"]
    assert len(test_rows) == 6
    reference, num_captions, similarity, owners = _reference_results(checkpoint, test_rows, dataset_dir,
                                                                     all_captions=True)
    meta = document["meta"]
    assert meta["num_videos"] == 6 and meta["num_captions"] == num_captions == 18
    assert meta["num_frames"] == 4 and meta["img_size"] == 32 and meta["sampling"] == "middle"
    assert meta["skipped_videos"] == [] and meta["eval_set"].endswith("split=test)")
    _assert_matches(document, reference)
    # Forward/backward twins from pair_id: the order score agrees with the clip-by-clip one.
    from training.retrieval_eval import order_pair_accuracy

    pair_of = [row["pair_id"] for row in test_rows]
    twin = np.array([next(j for j, p in enumerate(pair_of) if p == pair_of[i] and j != i) for i in range(6)])
    assert meta["order_pair_accuracy"] == pytest.approx(order_pair_accuracy(similarity, owners, twin))


def test_msrvtt_layout_with_dsl(dataset_dir: Path, checkpoint: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "msrvtt.json"
    code = evaluate_main(["--checkpoint", str(checkpoint), "--dataset", "msrvtt", "--root", str(dataset_dir),
                          "--postprocess", "dsl", "--out", str(out), "--num-workers", "0"])
    assert code == 0
    assert "text-to-video (dsl)" in capsys.readouterr().out
    document = read_results_json(out)
    assert set(document["results"]) == {"raw", "dsl"}
    assert document["meta"]["num_videos"] == 6 and document["meta"]["num_captions"] == 6  # JSFusion: one each
    rows = [json.loads(line) for line in (dataset_dir / "captions.jsonl").read_text().splitlines()]
    reference = _reference_results(checkpoint, [r for r in rows if r["split"] == "test"], dataset_dir,
                                   all_captions=False)[0]
    _assert_matches(document, reference)
    assert document["results"]["dsl"]["text_to_video"]["postprocess"] == "dsl"


def test_qbnorm_uses_training_captions_as_bank(dataset_dir: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "qb.json"
    assert evaluate_main(["--checkpoint", str(checkpoint), "--dataset", "synthetic", "--root", str(dataset_dir),
                          "--postprocess", "qbnorm", "--out", str(out), "--num-workers", "0"]) == 0
    document = read_results_json(out)
    assert document["meta"]["qbnorm_bank_size"] == 18  # 6 training videos x 3 paraphrases
    assert document["results"]["qbnorm"]["text_to_video"]["postprocess"] == "qbnorm"


def test_pairs_rows_of_one_video_become_several_captions(dataset_dir: Path, checkpoint: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (dataset_dir / "captions.jsonl").read_text().splitlines()][:4]
    pairs = tmp_path / "pairs.jsonl"
    lines = [{"video": str(dataset_dir / r["video"]), "caption": r["caption"]} for r in rows]
    lines.append({"video": str(dataset_dir / rows[0]["video"]), "caption": rows[0]["captions"][1]})
    pairs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "pairs.json"
    assert evaluate_main(["--checkpoint", str(checkpoint), "--dataset", "pairs", "--root", str(tmp_path),
                          "--out", str(out), "--num-workers", "0"]) == 0
    document = read_results_json(out)
    assert document["meta"]["num_videos"] == 4 and document["meta"]["num_captions"] == 5
    t2v, v2t = document["results"]["raw"]["text_to_video"], document["results"]["raw"]["video_to_text"]
    assert t2v["num_queries"] == 5 and t2v["num_gallery"] == 4
    assert v2t["num_queries"] == 4 and v2t["num_gallery"] == 5


def test_unreadable_video_is_left_out_and_reported(dataset_dir: Path, checkpoint: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (dataset_dir / "captions.jsonl").read_text().splitlines()][:3]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    lines = [{"video": str(dataset_dir / r["video"]), "caption": r["caption"]} for r in rows]
    lines.append({"video": str(broken), "caption": "a caption of a broken file"})
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "broken.json"
    assert evaluate_main(["--checkpoint", str(checkpoint), "--dataset", "pairs", "--root", str(tmp_path),
                          "--out", str(out), "--num-workers", "0"]) == 0
    meta = read_results_json(out)["meta"]
    assert meta["skipped_videos"] == ["broken"]
    assert meta["num_videos"] == 3 and meta["num_captions"] == 3


def test_foreign_checkpoint_fails_with_message(dataset_dir: Path, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    code = evaluate_main(["--checkpoint", str(foreign), "--dataset", "synthetic", "--root", str(dataset_dir)])
    assert code == 2
    assert "foreign.pt is not a mambasearch.dual_encoder checkpoint" in caplog.text


def test_order_pair_accuracy_by_hand() -> None:
    from training.retrieval_eval import order_pair_accuracy

    # Videos 0/1 and 2/3 are time-reversed twins; video 4 has none.
    similarity = np.array([
        [0.9, 0.2, 0.0, 0.0, 0.0],   # caption of video 0: beats its twin
        [0.5, 0.4, 0.0, 0.0, 0.0],   # caption of video 1: loses to its twin
        [0.0, 0.0, 0.3, 0.3, 0.0],   # caption of video 2: tie -> failure
        [0.0, 0.0, 0.1, 0.7, 0.0],   # caption of video 3: beats its twin
        [0.0, 0.0, 0.0, 0.0, 1.0],   # caption of video 4: no twin, not counted
    ])
    twin = np.array([1, 0, 3, 2, -1])
    assert order_pair_accuracy(similarity, np.arange(5), twin) == pytest.approx(50.0)
    assert order_pair_accuracy(similarity, np.arange(5), np.full(5, -1)) is None
    nearly_tied = similarity.copy()
    nearly_tied[3, 3] = 0.1 + 1e-4
    assert order_pair_accuracy(nearly_tied, np.arange(5), twin) == pytest.approx(25.0)


def test_frame_mean_model_never_prefers_an_order_in_memory() -> None:
    from data.synthetic import SyntheticConfig, SyntheticTemporalDataset
    from training.retrieval_eval import order_pair_accuracy

    torch.manual_seed(0)
    dataset = SyntheticTemporalDataset(SyntheticConfig(num_videos=8, seed=5, num_frames=4, height=32, width=32,
                                                       max_events=2))
    videos = torch.stack([dataset[i].video for i in range(8)])
    captions = [dataset[i].caption for i in range(8)]
    twin = np.array([i ^ 1 for i in range(8)])
    for tower, pooling in (("frame_mean", "cls"), ("frame_mean", "cls_frame_mean"), ("videomamba", "per_frame")):
        model = create_dual_encoder(tiny_model_config(video_tower=tower, pooling=pooling)).eval()
        with torch.no_grad():
            similarity = model.similarity(model.encode_text(model.tokenize(captions)), model.encode_video(videos))
        score = order_pair_accuracy(similarity, np.arange(8), twin)
        if tower == "frame_mean":
            assert score == 0.0, pooling
        else:
            assert score > 0.0  # an order-aware (even untrained) model breaks the ties
