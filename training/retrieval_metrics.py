"""Text-video retrieval metrics (MSR-VTT protocol) and score post-processing.

Conventions used throughout this module
---------------------------------------
* ``similarity`` is a ``(num_texts, num_videos)`` matrix; larger means more similar.
  It may be a ``numpy.ndarray`` or a ``torch.Tensor`` of any floating dtype (bf16 is
  up-cast to float32). NaN or infinite entries are rejected with ``ValueError``.
* ``text_to_video`` is an integer array of length ``num_texts``: entry ``t`` is the
  column index of the ground-truth video of text ``t``. Several texts may share a
  video (MSR-VTT has ~20 captions per video); a video with no text is a pure
  distractor for text-to-video and is left out of the video-to-text queries.
* Ranks are 1-based. R@K is a percentage in ``[0, 100]``. MdR is ``numpy.median``
  of the ranks (it can end in .5 for an even number of queries), MnR their mean.

Tie rule (pessimistic)
----------------------
A query's rank is ``1 + (number of WRONG items whose score is >= the best correct
score)``. A correct item tied with wrong items is therefore ranked after all of
them. We pick the pessimistic rule over the mean ("expected") rank because

* it can never inflate a result: a collapsed model that gives every pair the same
  score gets rank N for every query (R@1 = 0 whenever there are wrong items), where
  an optimistic rule would report R@1 = 100 and the mean rule a fractional rank
  with a recall that is not what any real ranking would deliver;
* every rank is an integer that some concrete ordering actually achieves, so R@K
  is the recall of a real ranked list (the worst of the tie-breaks);
* it does not depend on sort stability or on the order of the gallery.

Correct items never compete with each other: with several correct captions for a
video, the rank is that of the best-ranked correct caption, and correct captions
tied with one another do not push each other down.

Post-processing
---------------
* DSL (dual softmax, Cheng et al. 2021, "CAMoE"): each score is multiplied by a
  softmax prior computed over the *query set* (for text-to-video: over all texts,
  per video). It needs every test query at once, so it is an offline number only.
* QB-Norm (Bogolin et al., CVPR 2022) with the dynamic inverted softmax: a bank of
  queries from the training split (e.g. training captions) is scored against the
  test gallery; gallery items that are a top-k hit for some bank query form the
  activation set. A test query whose raw top-1 item is in that set has its scores
  replaced by the inverted softmax ``exp(beta*s_j) / sum_b exp(beta*bank_bj)``;
  other queries keep their raw scores. Hubs (items that are close to many bank
  queries) get a large denominator and fall down the ranking. It is usable at
  serving time because the bank is fixed in advance.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Literal, Mapping, Sequence, Union

import numpy as np

try:  # torch is a project dependency, but the metrics themselves only need numpy
    import torch
except ImportError:  # pragma: no cover - exercised only in torch-less environments
    torch = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

ArrayLike = Union[np.ndarray, "torch.Tensor", Sequence[Sequence[float]]]
PostProcess = Literal["none", "dsl", "qbnorm"]

RECALL_CUTOFFS: tuple[int, ...] = (1, 5, 10)
# Rows handled per chunk when comparing a whole row against a threshold; bounds
# the temporary boolean matrix to about CHUNK_ROWS * num_columns bytes.
_CHUNK_ROWS = 4096


# --------------------------------------------------------------------------- inputs


def _as_float_matrix(similarity: ArrayLike, name: str = "similarity") -> np.ndarray:
    """``similarity`` as a finite 2-D float32 or float64 numpy array, copied only when needed.

    float32/float64 keep their precision, float16/bfloat16 become float32, other
    dtypes float64.
    """
    if torch is not None and isinstance(similarity, torch.Tensor):
        tensor = similarity.detach().cpu()
        if tensor.dtype not in (torch.float32, torch.float64):
            tensor = tensor.float()
        matrix = tensor.numpy()
    else:
        matrix = np.asarray(similarity)
        if matrix.dtype == np.float16:
            matrix = matrix.astype(np.float32)
        elif matrix.dtype not in (np.float32, np.float64):  # ints, bools, long double
            matrix = matrix.astype(np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(matrix.shape)}")
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(matrix.shape)}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return matrix


def _as_index_vector(text_to_video: ArrayLike, num_texts: int, num_videos: int) -> np.ndarray:
    """Validate ``text_to_video`` and return it as an int64 vector of length ``num_texts``."""
    if torch is not None and isinstance(text_to_video, torch.Tensor):
        indices = text_to_video.detach().cpu().numpy()
    else:
        indices = np.asarray(text_to_video)
    if indices.ndim != 1 or indices.shape[0] != num_texts:
        raise ValueError(
            f"text_to_video must have shape ({num_texts},), got {tuple(indices.shape)}")
    if not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"text_to_video must hold integers, got dtype {indices.dtype}")
    indices = indices.astype(np.int64, copy=False)
    if indices.min() < 0 or indices.max() >= num_videos:
        raise ValueError(
            f"text_to_video values must lie in [0, {num_videos}), got "
            f"[{indices.min()}, {indices.max()}]")
    return indices


# ---------------------------------------------------------------------------- ranks


def rank_text_to_video(similarity: ArrayLike, text_to_video: ArrayLike) -> np.ndarray:
    """1-based pessimistic rank of each text's ground-truth video.

    Args:
        similarity: ``(num_texts, num_videos)`` scores.
        text_to_video: ``(num_texts,)`` integer ground-truth video index per text.

    Returns:
        ``(num_texts,)`` int64 ranks: ``1 + #{wrong videos v : s[t, v] >= s[t, gt(t)]}``.
    """
    scores = _as_float_matrix(similarity)
    targets = _as_index_vector(text_to_video, *scores.shape)
    ranks = np.empty(scores.shape[0], dtype=np.int64)
    for start in range(0, scores.shape[0], _CHUNK_ROWS):
        rows = scores[start:start + _CHUNK_ROWS]
        row_ids = np.arange(rows.shape[0])
        correct = rows[row_ids, targets[start:start + _CHUNK_ROWS]]
        # The count includes the correct video itself, hence no "+ 1".
        ranks[start:start + rows.shape[0]] = (rows >= correct[:, None]).sum(axis=1)
    return ranks


def rank_video_to_text(similarity: ArrayLike, text_to_video: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """1-based pessimistic rank of the best-ranked correct caption of each video.

    Args:
        similarity: ``(num_texts, num_videos)`` scores (videos are the queries here).
        text_to_video: ``(num_texts,)`` integer ground-truth video index per text.

    Returns:
        ``(ranks, video_ids)``: ``video_ids`` (int64) are the videos that have at least
        one caption, in increasing order; ``ranks[i]`` (int64) is
        ``1 + #{wrong texts t : s[t, v] >= max_{c correct} s[c, v]}`` for ``v = video_ids[i]``.
    """
    scores = _as_float_matrix(similarity)
    num_texts, num_videos = scores.shape
    targets = _as_index_vector(text_to_video, num_texts, num_videos)
    correct_scores = scores[np.arange(num_texts), targets]
    best_correct = np.full(num_videos, -np.inf, dtype=np.float64)
    np.maximum.at(best_correct, targets, correct_scores.astype(np.float64))
    video_ids = np.flatnonzero(np.isfinite(best_correct))
    threshold = best_correct.astype(scores.dtype)  # exact: values came from `scores`

    at_or_above = np.zeros(num_videos, dtype=np.int64)
    for start in range(0, num_texts, _CHUNK_ROWS):
        rows = scores[start:start + _CHUNK_ROWS]
        at_or_above += (rows >= threshold[None, :]).sum(axis=0)
    # Correct captions at or above their video's best score: exactly the ones tied
    # at the maximum (at least one per captioned video). They are not competitors.
    correct_at_max = np.bincount(
        targets, weights=(correct_scores >= threshold[targets]).astype(np.float64),
        minlength=num_videos).astype(np.int64)
    ranks = 1 + at_or_above[video_ids] - correct_at_max[video_ids]
    num_uncaptioned = num_videos - video_ids.size
    if num_uncaptioned:
        logger.warning("%d of %d videos have no caption; they are left out of the "
                       "video-to-text queries", num_uncaptioned, num_videos)
    return ranks.astype(np.int64), video_ids.astype(np.int64)


# -------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class DirectionMetrics:
    """Retrieval metrics for one direction. Recalls are percentages, ranks are 1-based."""

    r1: float
    r5: float
    r10: float
    median_rank: float
    mean_rank: float
    num_queries: int
    num_gallery: int
    postprocess: str = "none"

    def to_dict(self) -> dict[str, float | int | str]:
        """Plain JSON-serialisable dict with the same field names."""
        return {key: (value if isinstance(value, str) else
                      int(value) if isinstance(value, (int, np.integer)) else float(value))
                for key, value in asdict(self).items()}


def metrics_from_ranks(ranks: np.ndarray, num_gallery: int, postprocess: str = "none") -> DirectionMetrics:
    """Summarise 1-based ``ranks`` (``(num_queries,)`` ints >= 1) into R@1/5/10, MdR, MnR."""
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array, got shape {ranks.shape}")
    if ranks.min() < 1:
        raise ValueError("ranks are 1-based; got a rank below 1")
    recalls = [100.0 * float(np.mean(ranks <= cutoff)) for cutoff in RECALL_CUTOFFS]
    return DirectionMetrics(
        r1=recalls[0], r5=recalls[1], r10=recalls[2],
        median_rank=float(np.median(ranks)), mean_rank=float(np.mean(ranks)),
        num_queries=int(ranks.size), num_gallery=int(num_gallery), postprocess=postprocess)


@dataclass(frozen=True)
class RetrievalResults:
    """Both directions of one evaluation."""

    text_to_video: DirectionMetrics
    video_to_text: DirectionMetrics
    num_texts: int
    num_videos: int

    def to_dict(self) -> dict[str, object]:
        """Nested JSON-serialisable dict: ``{"text_to_video": {...}, "video_to_text": {...}, ...}``."""
        return {
            "text_to_video": self.text_to_video.to_dict(),
            "video_to_text": self.video_to_text.to_dict(),
            "num_texts": int(self.num_texts),
            "num_videos": int(self.num_videos),
        }


def compute_retrieval_metrics(similarity: ArrayLike, text_to_video: ArrayLike) -> RetrievalResults:
    """Text-to-video and video-to-text metrics on raw scores.

    Args:
        similarity: ``(num_texts, num_videos)`` float scores.
        text_to_video: ``(num_texts,)`` integer ground-truth video index per text.
    """
    scores = _as_float_matrix(similarity)
    num_texts, num_videos = scores.shape
    t2v = metrics_from_ranks(rank_text_to_video(scores, text_to_video), num_videos)
    v2t_ranks, _ = rank_video_to_text(scores, text_to_video)
    v2t = metrics_from_ranks(v2t_ranks, num_texts)
    return RetrievalResults(t2v, v2t, num_texts, num_videos)


# ------------------------------------------------------------------ post-processing


def dual_softmax(similarity: ArrayLike, inverse_temperature: float = 100.0) -> np.ndarray:
    """DSL scores for ranking the columns of each row (rows = queries).

    ``out[q, g] = s[q, g] * softmax_over_q(inverse_temperature * s[:, g])``: the prior for
    gallery item ``g`` is a softmax over the whole query set, so an item that scores
    high for many queries shares its prior among them. For video-to-text pass the
    transposed matrix. The formula is the published one; note that with negative raw
    scores a larger prior makes the product more negative.

    Computed in the input's precision (float32 stays float32, float64 stays float64),
    in row chunks, with the usual max shift so the exponentials cannot overflow.

    Args:
        similarity: ``(num_queries, num_gallery)`` scores.
        inverse_temperature: multiplies the scores inside the softmax (CLIP's logit
            scale is 100).

    Returns:
        ``(num_queries, num_gallery)`` scores, float32 or float64 like the input.
    """
    scores = _as_float_matrix(similarity)
    if inverse_temperature <= 0:
        raise ValueError(f"inverse_temperature must be positive, got {inverse_temperature}")
    dtype = scores.dtype.type
    column_max = scores.max(axis=0)
    prior = np.empty_like(scores)
    column_sum = np.zeros(scores.shape[1], dtype=np.float64)
    for start in range(0, scores.shape[0], _CHUNK_ROWS):
        chunk = prior[start:start + _CHUNK_ROWS]
        np.subtract(scores[start:start + _CHUNK_ROWS], column_max[None, :], out=chunk)
        chunk *= dtype(inverse_temperature)
        np.exp(chunk, out=chunk)
        column_sum += chunk.sum(axis=0, dtype=np.float64)
    inverse_sum = (1.0 / column_sum).astype(scores.dtype)
    for start in range(0, scores.shape[0], _CHUNK_ROWS):
        chunk = prior[start:start + _CHUNK_ROWS]
        chunk *= inverse_sum[None, :]
        chunk *= scores[start:start + _CHUNK_ROWS]
    return prior


def _top_k_members(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean ``(num_rows, num_cols)`` mask of each row's top-k, ties at the k-th score included."""
    k = min(k, scores.shape[1])
    kth_largest = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
    return scores >= kth_largest[:, None]


def querybank_normalize(similarity: ArrayLike, bank_similarity: ArrayLike,
                        k: int = 1, beta: float = 20.0) -> np.ndarray:
    """QB-Norm with the dynamic inverted softmax (Bogolin et al., CVPR 2022).

    Rows are queries, columns the gallery. For text-to-video pass test captions x test
    videos and training captions x test videos; for video-to-text pass the transposed
    pair (test videos x test captions, training videos x test captions).

    1. Activation set ``A``: gallery items in the top-``k`` of at least one bank query
       (items tied with a bank query's k-th score are included).
    2. A test query whose raw top-1 item is in ``A`` (any of its items tied for the
       maximum counts) gets the inverted softmax
       ``exp(beta * s[q, g]) / sum_b exp(beta * bank[b, g])``; other queries keep their
       raw scores ("dynamic": only queries that land on a potential hub are touched).

    The inverted softmax is returned in log space,
    ``beta * s[q, g] - logsumexp_b(beta * bank[b, g])``, which ranks identically and
    cannot overflow. Scores of normalised and untouched rows are on different scales,
    so compare values only within a row (per-query ranking), never across rows.
    Computed in the inputs' common precision (float32 unless either is float64).

    Args:
        similarity: ``(num_queries, num_gallery)`` test scores.
        bank_similarity: ``(num_bank_queries, num_gallery)`` bank scores from the same model.
        k: top-k used to build the activation set (the paper's default is 1).
        beta: inverse temperature of the inverted softmax (the paper uses 20 for
            cosine similarities).

    Returns:
        ``(num_queries, num_gallery)`` float32 or float64 scores.
    """
    scores = _as_float_matrix(similarity)
    bank = _as_float_matrix(bank_similarity, "bank_similarity")
    if bank.shape[1] != scores.shape[1]:
        raise ValueError(f"bank_similarity has {bank.shape[1]} gallery columns, "
                         f"similarity has {scores.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    dtype = np.result_type(scores.dtype, bank.dtype)

    activation_set = _top_k_members(bank, k).any(axis=0)

    # log sum_b exp(beta * bank[b, g]), max-shifted, accumulated over bank row chunks.
    bank_max = bank.max(axis=0).astype(np.float64)
    bank_sum = np.zeros(bank.shape[1], dtype=np.float64)
    for start in range(0, bank.shape[0], _CHUNK_ROWS):
        shifted = bank[start:start + _CHUNK_ROWS].astype(dtype) - bank_max.astype(dtype)[None, :]
        shifted *= dtype.type(beta)
        bank_sum += np.exp(shifted, out=shifted).sum(axis=0, dtype=np.float64)
    log_normalizer = (beta * bank_max + np.log(bank_sum)).astype(dtype)

    normalized = scores.astype(dtype, copy=True)
    num_normalized = 0
    for start in range(0, scores.shape[0], _CHUNK_ROWS):
        chunk = normalized[start:start + _CHUNK_ROWS]
        is_top1 = chunk >= chunk.max(axis=1, keepdims=True)
        rows = np.flatnonzero((is_top1 & activation_set[None, :]).any(axis=1))
        num_normalized += rows.size
        chunk[rows] = dtype.type(beta) * chunk[rows] - log_normalizer[None, :]
    logger.debug("QB-Norm: activation set %d/%d items, %d/%d queries normalised",
                 int(activation_set.sum()), activation_set.size, num_normalized, scores.shape[0])
    return normalized


def evaluate_retrieval(similarity: ArrayLike, text_to_video: ArrayLike, *,
                       postprocess: PostProcess = "none",
                       dsl_inverse_temperature: float = 100.0,
                       text_bank_similarity: ArrayLike | None = None,
                       video_bank_similarity: ArrayLike | None = None,
                       qbnorm_k: int = 1, qbnorm_beta: float = 20.0) -> RetrievalResults:
    """Metrics in both directions, optionally after DSL or QB-Norm.

    Each direction is post-processed with its own query set: text-to-video ranks
    videos per caption, video-to-text ranks captions per video (on the transposed
    matrix). Every ``DirectionMetrics.postprocess`` records what was really applied.

    Args:
        similarity: ``(num_texts, num_videos)`` test scores.
        text_to_video: ``(num_texts,)`` ground-truth video index per text.
        postprocess: ``"none"``, ``"dsl"`` or ``"qbnorm"``.
        dsl_inverse_temperature: see :func:`dual_softmax`.
        text_bank_similarity: ``(num_bank_texts, num_videos)``; required for ``"qbnorm"``
            (training captions x test videos).
        video_bank_similarity: ``(num_bank_videos, num_texts)``, optional for
            ``"qbnorm"`` (training videos x test captions). Without it video-to-text is
            reported on raw scores and labelled ``"none"``.
        qbnorm_k, qbnorm_beta: see :func:`querybank_normalize`.
    """
    scores = _as_float_matrix(similarity)
    num_texts, num_videos = scores.shape
    targets = _as_index_vector(text_to_video, num_texts, num_videos)

    if postprocess == "none":
        return compute_retrieval_metrics(scores, targets)

    if postprocess == "dsl":
        t2v_scores = dual_softmax(scores, dsl_inverse_temperature)
        v2t_scores = dual_softmax(scores.T, dsl_inverse_temperature).T
        t2v_label = v2t_label = "dsl"
    elif postprocess == "qbnorm":
        if text_bank_similarity is None:
            raise ValueError("postprocess='qbnorm' needs text_bank_similarity "
                             "(training captions x test videos)")
        t2v_scores = querybank_normalize(scores, text_bank_similarity, qbnorm_k, qbnorm_beta)
        t2v_label = "qbnorm"
        if video_bank_similarity is None:
            logger.info("QB-Norm: no video bank given; video-to-text uses raw scores")
            v2t_scores, v2t_label = scores, "none"
        else:
            v2t_scores = querybank_normalize(scores.T, video_bank_similarity,
                                             qbnorm_k, qbnorm_beta).T
            v2t_label = "qbnorm"
    else:
        raise ValueError(f"unknown postprocess {postprocess!r}; expected 'none', 'dsl' or 'qbnorm'")

    t2v = metrics_from_ranks(rank_text_to_video(t2v_scores, targets), num_videos, t2v_label)
    v2t_ranks, _ = rank_video_to_text(v2t_scores, targets)
    v2t = metrics_from_ranks(v2t_ranks, num_texts, v2t_label)
    return RetrievalResults(t2v, v2t, num_texts, num_videos)


# -------------------------------------------------------------------------- display


_TABLE_COLUMNS = ("R@1", "R@5", "R@10", "MdR", "MnR")


def format_results_table(results: RetrievalResults | Mapping[str, RetrievalResults],
                         style: Literal["markdown", "plain"] = "markdown") -> str:
    """Render results as a table, one row per (run, direction).

    Args:
        results: one ``RetrievalResults`` or a mapping ``name -> RetrievalResults``
            (e.g. ``{"raw": ..., "dsl": ...}``), rendered in mapping order.
        style: ``"markdown"`` (pipe table) or ``"plain"`` (space-aligned columns).

    Returns:
        The table as a string without a trailing newline. Recalls have one decimal,
        ranks one decimal (MdR can be a half-integer).
    """
    named = {"results": results} if isinstance(results, RetrievalResults) else dict(results)
    header = ("run", "direction", *_TABLE_COLUMNS)
    rows: list[tuple[str, ...]] = []
    for name, result in named.items():
        for direction, metrics in (("text-to-video", result.text_to_video),
                                   ("video-to-text", result.video_to_text)):
            label = direction if metrics.postprocess == "none" else f"{direction} ({metrics.postprocess})"
            rows.append((name, label, f"{metrics.r1:.1f}", f"{metrics.r5:.1f}",
                         f"{metrics.r10:.1f}", f"{metrics.median_rank:.1f}",
                         f"{metrics.mean_rank:.1f}"))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        padded = [cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i])
                  for i, cell in enumerate(cells)]
        return "| " + " | ".join(padded) + " |" if style == "markdown" else "  ".join(padded).rstrip()

    if style == "markdown":
        rule = "|" + "|".join(("-" * (w + 2)) if i < 2 else ("-" * (w + 1) + ":")
                              for i, w in enumerate(widths)) + "|"
    elif style == "plain":
        rule = "  ".join("-" * w for w in widths)
    else:
        raise ValueError(f"unknown style {style!r}; expected 'markdown' or 'plain'")
    return "\n".join([render(header), rule, *(render(row) for row in rows)])
