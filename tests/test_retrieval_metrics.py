"""Retrieval metrics against hand-computed answers on small similarity matrices."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from training.evaluate_io import RESULTS_SCHEMA, read_results_json, write_results_json
from training.retrieval_metrics import (
    RetrievalResults,
    compute_retrieval_metrics,
    dual_softmax,
    evaluate_retrieval,
    format_results_table,
    metrics_from_ranks,
    querybank_normalize,
    rank_text_to_video,
    rank_video_to_text,
)

# --------------------------------------------------------------------------- basic

# Rows are texts, columns videos; text i belongs to video i.
SIM_3X3 = np.array([
    [0.9, 0.1, 0.3],
    [0.2, 0.4, 0.8],
    [0.5, 0.6, 0.7],
])


def test_text_to_video_ranks_hand_computed() -> None:
    # text 0: correct 0.9; wrong >= 0.9: none            -> rank 1
    # text 1: correct 0.4; wrong >= 0.4: 0.8             -> rank 2
    # text 2: correct 0.7; wrong >= 0.7: none (0.5, 0.6) -> rank 1
    ranks = rank_text_to_video(SIM_3X3, [0, 1, 2])
    assert ranks.tolist() == [1, 2, 1]
    assert ranks.dtype == np.int64


def test_video_to_text_ranks_hand_computed() -> None:
    # video 0 column (0.9, 0.2, 0.5): correct text 0 = 0.9; no wrong >= 0.9 -> rank 1
    # video 1 column (0.1, 0.4, 0.6): correct text 1 = 0.4; wrong 0.6       -> rank 2
    # video 2 column (0.3, 0.8, 0.7): correct text 2 = 0.7; wrong 0.8       -> rank 2
    ranks, video_ids = rank_video_to_text(SIM_3X3, [0, 1, 2])
    assert ranks.tolist() == [1, 2, 2]
    assert video_ids.tolist() == [0, 1, 2]


def test_metrics_hand_computed() -> None:
    results = compute_retrieval_metrics(SIM_3X3, np.array([0, 1, 2]))
    t2v, v2t = results.text_to_video, results.video_to_text
    # t2v ranks [1, 2, 1]: 2 of 3 at rank 1, all within 5 and 10; median 1; mean 4/3
    assert t2v.r1 == pytest.approx(200 / 3)
    assert (t2v.r5, t2v.r10) == (100.0, 100.0)
    assert t2v.median_rank == 1.0
    assert t2v.mean_rank == pytest.approx(4 / 3)
    # v2t ranks [1, 2, 2]: R@1 1/3; median 2; mean 5/3
    assert v2t.r1 == pytest.approx(100 / 3)
    assert v2t.median_rank == 2.0
    assert v2t.mean_rank == pytest.approx(5 / 3)
    assert (t2v.num_queries, t2v.num_gallery, v2t.num_queries, v2t.num_gallery) == (3, 3, 3, 3)
    assert (results.num_texts, results.num_videos) == (3, 3)


def test_recall_cutoffs_5_and_10() -> None:
    # 2 texts, 12 videos. Row 0 scores are 0/12 .. 11/12 and its correct video is 5:
    # the wrong videos 6..11 (6 of them) score higher -> rank 7: not in R@5, in R@10.
    # Row 1 is reversed (11/12 .. 0/12) and its correct video is 11 (score 0): all 11
    # wrong videos are higher -> rank 12: outside R@10.
    sim = np.stack([np.arange(12) / 12, np.arange(12)[::-1] / 12])
    ranks = rank_text_to_video(sim, [5, 11])
    assert ranks.tolist() == [7, 12]
    metrics = metrics_from_ranks(ranks, num_gallery=12)
    assert (metrics.r1, metrics.r5, metrics.r10) == (0.0, 0.0, 50.0)
    assert metrics.median_rank == 9.5  # median of (7, 12)
    assert metrics.mean_rank == 9.5


# ------------------------------------------------------------------ several captions

# 4 texts, 2 videos; texts 0, 1 describe video 0 and texts 2, 3 describe video 1.
SIM_MULTI = np.array([
    [0.9, 0.1],  # t0 -> v0
    [0.3, 0.6],  # t1 -> v0
    [0.2, 0.5],  # t2 -> v1
    [0.7, 0.4],  # t3 -> v1
])
TARGETS_MULTI = np.array([0, 0, 1, 1])


def test_multi_caption_text_to_video() -> None:
    # t0: 0.9 vs 0.1 -> 1; t1: 0.3 vs 0.6 -> 2; t2: 0.5 vs 0.2 -> 1; t3: 0.4 vs 0.7 -> 2
    assert rank_text_to_video(SIM_MULTI, TARGETS_MULTI).tolist() == [1, 2, 1, 2]
    t2v = compute_retrieval_metrics(SIM_MULTI, TARGETS_MULTI).text_to_video
    assert (t2v.r1, t2v.median_rank, t2v.mean_rank, t2v.num_queries) == (50.0, 1.5, 1.5, 4)


def test_multi_caption_video_to_text_counts_best_correct_caption() -> None:
    # v0 column (0.9, 0.3, 0.2, 0.7): correct t0 = 0.9 and t1 = 0.3; best 0.9;
    #   wrong captions (t2 0.2, t3 0.7) >= 0.9: none -> rank 1. (t1 alone would rank 4.)
    # v1 column (0.1, 0.6, 0.5, 0.4): correct t2 = 0.5 and t3 = 0.4; best 0.5;
    #   wrong captions >= 0.5: t1 (0.6) -> rank 2.
    ranks, video_ids = rank_video_to_text(SIM_MULTI, TARGETS_MULTI)
    assert ranks.tolist() == [1, 2]
    assert video_ids.tolist() == [0, 1]
    v2t = compute_retrieval_metrics(SIM_MULTI, TARGETS_MULTI).video_to_text
    assert (v2t.r1, v2t.median_rank, v2t.num_queries, v2t.num_gallery) == (50.0, 1.5, 2, 4)


def test_video_without_caption_is_a_distractor_only() -> None:
    # 2 texts, 3 videos; video 2 has no caption.
    # t2v: t0 row (0.5, 0.1, 0.9): correct 0.5, wrong 0.9 -> rank 2
    #      t1 row (0.1, 0.8, 0.2): correct 0.8 -> rank 1
    # v2t: queries are videos 0 and 1 only: v0 column (0.5, 0.1) -> 1; v1 (0.1, 0.8) -> 1
    sim = np.array([[0.5, 0.1, 0.9], [0.1, 0.8, 0.2]])
    results = compute_retrieval_metrics(sim, [0, 1])
    assert results.text_to_video.r1 == 50.0
    assert results.video_to_text.num_queries == 2
    assert results.video_to_text.r1 == 100.0
    ranks, video_ids = rank_video_to_text(sim, [0, 1])
    assert video_ids.tolist() == [0, 1]
    assert ranks.tolist() == [1, 1]


# ----------------------------------------------------------------------------- ties


def test_constant_scores_get_the_worst_rank() -> None:
    # Every score equal: each correct item ties with the 2 wrong ones -> rank 3 both ways.
    results = compute_retrieval_metrics(np.ones((3, 3)), [0, 1, 2])
    for metrics in (results.text_to_video, results.video_to_text):
        assert metrics.r1 == 0.0
        assert metrics.median_rank == 3.0
        assert metrics.mean_rank == 3.0


def test_tie_with_wrong_item_is_pessimistic() -> None:
    # Row (0.5, 0.5, 0.2), correct video 0: tied with wrong video 1 -> rank 2, not 1 or 1.5.
    # Row (0.3, 0.3, 0.3), correct video 2: tied with both wrong videos -> rank 3.
    sim = np.array([[0.5, 0.5, 0.2], [0.3, 0.3, 0.3]])
    assert rank_text_to_video(sim, [0, 2]).tolist() == [2, 3]


def test_correct_captions_tied_with_each_other_do_not_compete() -> None:
    # 3 texts, 2 videos, texts 0 and 1 describe video 0.
    # v0 column (0.8, 0.8, 0.3): both correct captions at 0.8, wrong t2 at 0.3 -> rank 1
    # v1 column (0.1, 0.2, 0.9): correct t2 0.9 -> rank 1
    sim = np.array([[0.8, 0.1], [0.8, 0.2], [0.3, 0.9]])
    ranks, _ = rank_video_to_text(sim, [0, 0, 1])
    assert ranks.tolist() == [1, 1]
    # Now the wrong caption t2 ties the best correct one in column v0 -> rank 2.
    sim[2, 0] = 0.8
    ranks, _ = rank_video_to_text(sim, [0, 0, 1])
    assert ranks.tolist() == [2, 1]


def _reference_ranks(scores: np.ndarray, correct: np.ndarray) -> int:
    """Independent reference: sort by (score desc, wrong before correct) and take the
    1-based position of the first correct item, i.e. the worst tie-break."""
    order = sorted(range(scores.size), key=lambda j: (-scores[j], bool(correct[j])))
    return 1 + next(position for position, j in enumerate(order) if correct[j])


def test_random_integer_scores_with_many_ties_match_reference() -> None:
    rng = np.random.default_rng(0)
    num_videos = 17
    targets = np.concatenate([np.arange(num_videos), rng.integers(0, num_videos, 23)])
    # Scores in {0, ..., 4}: ties everywhere.
    sim = rng.integers(0, 5, size=(targets.size, num_videos)).astype(np.float32)
    t2v = rank_text_to_video(sim, targets)
    for text, target in enumerate(targets):
        assert t2v[text] == _reference_ranks(sim[text], np.arange(num_videos) == target)
    v2t, video_ids = rank_video_to_text(sim, targets)
    for rank, video in zip(v2t, video_ids):
        assert rank == _reference_ranks(sim[:, video], targets == video)
    # Chunked evaluation gives the same answer as one chunk.
    import training.retrieval_metrics as module
    original = module._CHUNK_ROWS
    module._CHUNK_ROWS = 7
    try:
        assert np.array_equal(rank_text_to_video(sim, targets), t2v)
        assert np.array_equal(rank_video_to_text(sim, targets)[0], v2t)
    finally:
        module._CHUNK_ROWS = original


def test_ranks_do_not_depend_on_gallery_order() -> None:
    rng = np.random.default_rng(1)
    sim = rng.integers(0, 3, size=(12, 6)).astype(np.float64)
    targets = np.arange(12) % 6
    permutation = rng.permutation(6)  # new column c holds old column permutation[c]
    inverse = np.argsort(permutation)
    before = compute_retrieval_metrics(sim, targets).to_dict()
    after = compute_retrieval_metrics(sim[:, permutation], inverse[targets]).to_dict()
    assert before == after


# ------------------------------------------------------------------------ validation


def test_torch_bf16_input_is_accepted() -> None:
    sim = torch.tensor(SIM_3X3, dtype=torch.bfloat16)
    ranks = rank_text_to_video(sim, torch.tensor([0, 1, 2]))
    assert ranks.tolist() == [1, 2, 1]


@pytest.mark.parametrize("bad_targets", [[0, 1], [0, 1, 3], [0, -1, 2], [0.0, 1.0, 2.0]])
def test_invalid_targets_are_rejected(bad_targets: list) -> None:
    with pytest.raises(ValueError):
        compute_retrieval_metrics(SIM_3X3, np.array(bad_targets))


def test_nan_scores_are_rejected() -> None:
    sim = SIM_3X3.copy()
    sim[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compute_retrieval_metrics(sim, [0, 1, 2])


# ------------------------------------------------------------------------------- DSL

# Video 0 is a hub: text 1 (correct video 1) scores it higher than its own video.
SIM_HUB = np.array([
    [0.9, 0.1],
    [0.8, 0.7],
])


def test_dual_softmax_values_hand_computed() -> None:
    # inverse temperature 10, prior = softmax over texts (column-wise):
    #   column 0: softmax(9, 8)  = (1/(1+e^-1), e^-1/(1+e^-1)) = (0.731059, 0.268941)
    #   column 1: softmax(1, 7)  = (1/(1+e^6),  e^6/(1+e^6))   = (0.002473, 0.997527)
    # DSL = sim * prior:
    #   t0: (0.9*0.731059, 0.1*0.002473) = (0.657953, 0.000247)
    #   t1: (0.8*0.268941, 0.7*0.997527) = (0.215153, 0.698269)
    p0 = 1 / (1 + math.exp(-1))
    p1 = 1 / (1 + math.exp(6))
    expected = np.array([[0.9 * p0, 0.1 * p1], [0.8 * (1 - p0), 0.7 * (1 - p1)]])
    np.testing.assert_allclose(dual_softmax(SIM_HUB, inverse_temperature=10.0), expected, rtol=1e-12)


def test_dsl_fixes_the_hub_query() -> None:
    # Raw: t1 ranks its video 1 (0.7) below hub video 0 (0.8) -> t2v R@1 = 50.
    # DSL (above): t1 row (0.215, 0.698) -> video 1 first -> t2v R@1 = 100.
    # v2t after DSL (prior = softmax over videos per text, inverse temperature 10):
    #   t0 prior (1/(1+e^-8), e^-8/(1+e^-8)), t1 prior (0.731, 0.269)
    #   v0 query: t0 0.9*0.99966 = 0.8997, t1 0.8*0.731 = 0.585  -> t0 first (correct)
    #   v1 query: t0 0.1*0.00034 = 0.00003, t1 0.7*0.269 = 0.188 -> t1 first (correct)
    raw = evaluate_retrieval(SIM_HUB, [0, 1])
    dsl = evaluate_retrieval(SIM_HUB, [0, 1], postprocess="dsl", dsl_inverse_temperature=10.0)
    assert raw.text_to_video.r1 == 50.0
    assert dsl.text_to_video.r1 == 100.0
    assert dsl.video_to_text.r1 == 100.0
    assert dsl.text_to_video.postprocess == "dsl" and dsl.video_to_text.postprocess == "dsl"


# --------------------------------------------------------------------------- QB-Norm

# Test queries: t0 -> v1, t1 -> v2; raw top-1 of both is the hub v0.
SIM_QB = np.array([
    [0.80, 0.75, 0.10],
    [0.60, 0.20, 0.50],
])
# Training captions: every one of them has v0 as its top-1 -> activation set {v0}.
BANK_QB = np.array([
    [0.9, 0.3, 0.1],
    [0.8, 0.2, 0.4],
    [0.7, 0.6, 0.5],
])


def test_qbnorm_values_hand_computed() -> None:
    # beta = 10; log Z_j = logsumexp_b(10 * bank[b, j]):
    #   log Z0 = log(e^9 + e^8 + e^7) = 9 + log(1 + e^-1 + e^-2) = 9.407606
    #   log Z1 = log(e^3 + e^2 + e^6) = 6 + log(1 + e^-3 + e^-4) = 6.065884
    #   log Z2 = log(e^1 + e^4 + e^5) = 5 + log(1 + e^-1 + e^-4) = 5.326563
    # Both test rows have top-1 v0, which is in the activation set -> both normalised:
    #   t0: (8 - 9.407606, 7.5 - 6.065884, 1 - 5.326563) = (-1.407606, 1.434116, -4.326563)
    #   t1: (6 - 9.407606, 2 - 6.065884, 5 - 5.326563)   = (-3.407606, -4.065884, -0.326563)
    log_z = np.array([9 + math.log(1 + math.exp(-1) + math.exp(-2)),
                      6 + math.log(1 + math.exp(-3) + math.exp(-4)),
                      5 + math.log(1 + math.exp(-1) + math.exp(-4))])
    expected = 10 * SIM_QB - log_z[None, :]
    normalized = querybank_normalize(SIM_QB, BANK_QB, k=1, beta=10.0)
    np.testing.assert_allclose(normalized, expected, rtol=1e-12)
    np.testing.assert_allclose(normalized[0], [-1.407606, 1.434116, -4.326563], atol=1e-6)
    # The inverted softmax itself: exp of the returned scores.
    np.testing.assert_allclose(np.exp(normalized[1, 2]),
                               math.exp(5) / (math.exp(1) + math.exp(4) + math.exp(5)), rtol=1e-12)


def test_qbnorm_suppresses_hub_video() -> None:
    # Raw: t0 ranks v1 (0.75) under hub v0 (0.80); t1 ranks v2 (0.5) under v0 (0.6) -> R@1 0.
    # After QB-Norm (values above) both correct videos come first -> R@1 100.
    raw = evaluate_retrieval(SIM_QB, [1, 2])
    normed = evaluate_retrieval(SIM_QB, [1, 2], postprocess="qbnorm",
                                text_bank_similarity=BANK_QB, qbnorm_beta=10.0)
    assert raw.text_to_video.r1 == 0.0
    assert normed.text_to_video.r1 == 100.0
    assert normed.text_to_video.postprocess == "qbnorm"
    # No video bank: video-to-text stays on raw scores and says so.
    assert normed.video_to_text.postprocess == "none"
    assert normed.video_to_text == raw.video_to_text


def test_qbnorm_is_dynamic_only_rows_hitting_the_activation_set_change() -> None:
    # Extra query t2 = (0.1, 0.9, 0.2): its top-1 v1 is not in the activation set {v0},
    # so its row is returned unchanged while rows 0 and 1 are normalised.
    sim = np.vstack([SIM_QB, [0.1, 0.9, 0.2]])
    normalized = querybank_normalize(sim, BANK_QB, k=1, beta=10.0)
    np.testing.assert_array_equal(normalized[2], sim[2])
    assert not np.allclose(normalized[:2], sim[:2])
    # With k = 3 every video is in the activation set, so every row is normalised.
    all_active = querybank_normalize(sim, BANK_QB, k=3, beta=10.0)
    assert not np.allclose(all_active[2], sim[2])


def test_qbnorm_activation_set_includes_ties_at_kth_place() -> None:
    # One bank query with v0 and v1 tied for top-1: both join the activation set, so a
    # test query whose top-1 is v1 is normalised.
    bank = np.array([[0.5, 0.5, 0.1]])
    sim = np.array([[0.2, 0.9, 0.3]])
    assert not np.allclose(querybank_normalize(sim, bank, k=1, beta=10.0), sim)
    bank_v0_only = np.array([[0.6, 0.5, 0.1]])
    np.testing.assert_array_equal(querybank_normalize(sim, bank_v0_only, k=1, beta=10.0), sim)


def test_qbnorm_does_not_overflow_with_large_scores() -> None:
    # exp(20 * 100) overflows float64; the log-space result must stay finite.
    normalized = querybank_normalize(SIM_QB * 100, BANK_QB * 100, k=1, beta=20.0)
    assert np.isfinite(normalized).all()
    assert rank_text_to_video(normalized, [1, 2]).tolist() == [1, 1]


def test_qbnorm_video_to_text_uses_video_bank() -> None:
    # v2t queries are videos; the video bank is (bank videos x test texts).
    # Texts t0, t1, t2 describe videos 0, 1, 2. Scores (texts x videos):
    sim = np.array([
        [0.9, 0.7, 0.6],  # t0: a "hub" caption close to every video
        [0.0, 0.5, 0.2],  # t1
        [0.2, 0.1, 0.4],  # t2
    ])
    # Raw v2t, one row per video over texts: v0 (0.9, 0.0, 0.2) -> t0 first, rank 1;
    # v1 (0.7, 0.5, 0.1) -> t0 above t1, rank 2; v2 (0.6, 0.2, 0.4) -> t0 above t2,
    # rank 2. Ranks (1, 2, 2), R@1 = 33.3.
    # Video bank: every bank video's top caption is t0 -> activation set {t0}; all three
    # video queries have top-1 t0, so all are normalised with beta 10:
    #   log Z(t0) = log(3 e^9) = 9 + log 3 = 10.0986
    #   log Z(t1) = log(3 e^1) = 1 + log 3 = 2.0986,  log Z(t2) = 2.0986
    #   v0: t0 9 - 10.0986 = -1.10, t1 0 - 2.0986 = -2.10, t2 2 - 2.0986 = -0.10
    #       -> t2 above t0: v0 drops to rank 2 (the price of suppressing a hub)
    #   v1: t0 7 - 10.0986 = -3.10, t1 5 - 2.0986 = 2.90, t2 1 - 2.0986 = -1.10 -> rank 1
    #   v2: t0 6 - 10.0986 = -4.10, t1 2 - 2.0986 = -0.10, t2 4 - 2.0986 = 1.90 -> rank 1
    # -> ranks (2, 1, 1), R@1 = 66.7, MnR = 4/3.
    video_bank = np.array([[0.9, 0.1, 0.1]] * 3)
    text_bank = np.array([[0.1, 0.1, 0.1]])
    raw = evaluate_retrieval(sim, [0, 1, 2])
    normed = evaluate_retrieval(sim, [0, 1, 2], postprocess="qbnorm", qbnorm_beta=10.0,
                                text_bank_similarity=text_bank, video_bank_similarity=video_bank)
    assert raw.video_to_text.r1 == pytest.approx(100 / 3)
    assert normed.video_to_text.postprocess == "qbnorm"
    assert normed.video_to_text.r1 == pytest.approx(200 / 3)
    assert normed.video_to_text.mean_rank == pytest.approx(4 / 3)


def test_qbnorm_requires_a_bank() -> None:
    with pytest.raises(ValueError, match="text_bank_similarity"):
        evaluate_retrieval(SIM_QB, [1, 2], postprocess="qbnorm")
    with pytest.raises(ValueError, match="gallery columns"):
        querybank_normalize(SIM_QB, BANK_QB[:, :2])
    with pytest.raises(ValueError, match="unknown postprocess"):
        evaluate_retrieval(SIM_QB, [1, 2], postprocess="rerank")  # type: ignore[arg-type]


# ------------------------------------------------------------------ output and table


def test_to_dict_is_json_serialisable_and_complete() -> None:
    results = compute_retrieval_metrics(SIM_MULTI, TARGETS_MULTI)
    encoded = json.loads(json.dumps(results.to_dict()))
    assert set(encoded) == {"text_to_video", "video_to_text", "num_texts", "num_videos"}
    assert set(encoded["text_to_video"]) == {"r1", "r5", "r10", "median_rank", "mean_rank",
                                             "num_queries", "num_gallery", "postprocess"}
    assert encoded["video_to_text"]["median_rank"] == 1.5


def test_format_results_table_markdown_and_plain() -> None:
    raw = compute_retrieval_metrics(SIM_3X3, [0, 1, 2])
    dsl = evaluate_retrieval(SIM_3X3, [0, 1, 2], postprocess="dsl")
    markdown = format_results_table({"raw": raw, "dsl": dsl})
    lines = markdown.splitlines()
    assert len(lines) == 2 + 4  # header, rule, 2 runs x 2 directions
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    assert "R@1" in lines[0] and "MdR" in lines[0] and "MnR" in lines[0]
    assert lines[2].split("|")[1].strip() == "raw"
    assert [cell.strip() for cell in lines[2].split("|")[3:8]] == ["66.7", "100.0", "100.0", "1.0", "1.3"]
    assert "text-to-video (dsl)" in markdown
    plain = format_results_table(raw, style="plain")
    assert "|" not in plain
    assert plain.splitlines()[3].split() == ["results", "video-to-text", "33.3", "100.0", "100.0", "2.0", "1.7"]
    with pytest.raises(ValueError):
        format_results_table(raw, style="html")  # type: ignore[arg-type]


def test_write_results_json_round_trip(tmp_path) -> None:
    results = {"raw": compute_retrieval_metrics(SIM_3X3, [0, 1, 2]),
               "dsl": evaluate_retrieval(SIM_3X3, [0, 1, 2], postprocess="dsl")}
    path = tmp_path / "nested" / "results.json"
    written = write_results_json(path, results, {"checkpoint": tmp_path / "model.pt", "frames": 8})
    assert written == path
    document = read_results_json(path)
    assert document["schema"] == RESULTS_SCHEMA
    assert document["meta"] == {"checkpoint": str(tmp_path / "model.pt"), "frames": 8}
    assert list(document["results"]) == ["raw", "dsl"]
    assert document["results"]["raw"] == results["raw"].to_dict()
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]  # no temp files


def test_write_results_json_single_result_and_errors(tmp_path) -> None:
    result = compute_retrieval_metrics(SIM_3X3, [0, 1, 2])
    path = write_results_json(tmp_path / "r.json", result, None)
    assert list(read_results_json(path)["results"]) == ["results"]
    with pytest.raises(TypeError):
        write_results_json(tmp_path / "bad.json", result, {"model": object()})
    assert not (tmp_path / "bad.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a retrieval results file"):
        read_results_json(foreign)
    assert isinstance(result, RetrievalResults)


def test_postprocessing_keeps_float32_and_agrees_with_float64() -> None:
    rng = np.random.default_rng(3)
    sim64 = rng.uniform(-0.2, 0.6, size=(40, 25))
    bank64 = rng.uniform(-0.2, 0.6, size=(30, 25))
    sim32, bank32 = sim64.astype(np.float32), bank64.astype(np.float32)
    dsl32 = dual_softmax(sim32, 100.0)
    qb32 = querybank_normalize(sim32, bank32, k=1, beta=20.0)
    assert dsl32.dtype == np.float32 and qb32.dtype == np.float32
    np.testing.assert_allclose(dsl32, dual_softmax(sim64, 100.0), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(qb32, querybank_normalize(sim64, bank64, k=1, beta=20.0), rtol=1e-5, atol=1e-5)
    # Each DSL prior column is a distribution over the queries.
    prior = dsl32 / sim32
    np.testing.assert_allclose(prior.sum(axis=0), np.ones(25), rtol=1e-5)
