"""Encode an evaluation set with a :class:`DualEncoder` and compute retrieval metrics.

Shared by the periodic evaluation in :mod:`training.contrastive` and by
``python -m training.evaluate``. Videos and captions are encoded in batches under
``torch.no_grad`` (bf16 autocast on CUDA unless disabled); embeddings are gathered on
the CPU in float32. Videos that cannot be decoded are reported and removed together
with their captions (the gallery shrinks; the count is in the result's metadata).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from data.loader import collate_video_text
from training.datasets import RetrievalEvalSet
from encoders.dual_encoder import DualEncoder
from training.retrieval_metrics import RetrievalResults, evaluate_retrieval

logger = logging.getLogger(__name__)


def autocast_context(device: torch.device, use_bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``use_bf16``, else a no-op context."""
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class EncodedEvalSet:
    """Embeddings of an evaluation set (float32, CPU).

    Attributes:
        video_emb: ``(V, D)`` or per-frame ``(V, T, D)`` for the videos that were read.
        text_emb: ``(N, D)`` for the captions of those videos.
        text_to_video: int64 ``(N,)`` indices into ``video_emb``.
        video_ids: the ``V`` ids kept.
        skipped_videos: ids of videos that could not be read (left out with their captions).
        twin: int64 ``(V,)`` index of each video's time-reversed twin among the kept
            videos (-1: none), or None when the set has no such pairs.
    """

    video_emb: Tensor
    text_emb: Tensor
    text_to_video: np.ndarray
    video_ids: list[str]
    skipped_videos: list[str] = field(default_factory=list)
    twin: Optional[np.ndarray] = None


@torch.no_grad()
def encode_texts(model: DualEncoder, texts: Sequence[str], device: torch.device, batch_size: int = 256,
                 use_bf16: bool = False) -> Tensor:
    """``(len(texts), D)`` float32 CPU embeddings."""
    chunks = []
    for start in range(0, len(texts), batch_size):
        tokens = model.tokenize(texts[start:start + batch_size]).to(device)
        with autocast_context(device, use_bf16):
            chunks.append(model.encode_text(tokens).float().cpu())
    if not chunks:
        return torch.zeros(0, model.embed_dim)
    return torch.cat(chunks)


@torch.no_grad()
def encode_eval_set(model: DualEncoder, eval_set: RetrievalEvalSet, device: torch.device,
                    batch_size: int = 64, num_workers: int = 0, use_bf16: bool = False,
                    show_progress: bool = False) -> EncodedEvalSet:
    """Encode every readable video and the captions of those videos (model put in eval
    mode for the call and restored afterwards)."""
    was_training = model.training
    model.eval()
    try:
        loader = DataLoader(eval_set.videos, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                            collate_fn=collate_video_text, generator=torch.Generator().manual_seed(0))
        embeddings: dict[int, Tensor] = {}
        skipped: list[str] = []
        batches = loader
        if show_progress:
            from tqdm import tqdm
            batches = tqdm(loader, desc="encode videos", unit="batch", leave=False)
        for batch in batches:
            for sample in batch.skipped:
                logger.warning("evaluation video %s unreadable (%s: %s); left out with its captions",
                               sample.video_path, sample.error_type, sample.reason)
                skipped.append(eval_set.video_ids[sample.index])
            if len(batch) == 0:
                continue
            with autocast_context(device, use_bf16):
                emb = model.encode_video(batch.video.to(device, non_blocking=True)).float().cpu()
            for row, index in enumerate(batch.indices.tolist()):
                embeddings[index] = emb[row]
        if not embeddings:
            raise RuntimeError(f"no video of {eval_set.name} could be read")
        kept = sorted(embeddings)
        new_index = np.full(len(eval_set.video_ids), -1, dtype=np.int64)
        new_index[kept] = np.arange(len(kept))
        caption_keep = new_index[eval_set.text_to_video] >= 0
        captions = [c for c, k in zip(eval_set.captions, caption_keep) if k]
        if not captions:
            raise RuntimeError(f"no caption of {eval_set.name} belongs to a readable video")
        text_emb = encode_texts(model, captions, device, batch_size=max(batch_size, 256), use_bf16=use_bf16)
        twin = None
        if eval_set.twin is not None:
            old_twin = eval_set.twin[kept]
            twin = np.where(old_twin >= 0, new_index[np.maximum(old_twin, 0)], -1)
        return EncodedEvalSet(
            video_emb=torch.stack([embeddings[i] for i in kept]),
            text_emb=text_emb,
            text_to_video=new_index[eval_set.text_to_video[caption_keep]],
            video_ids=[eval_set.video_ids[i] for i in kept],
            skipped_videos=skipped,
            twin=twin,
        )
    finally:
        model.train(was_training)


def order_pair_accuracy(similarity: Tensor | np.ndarray, text_to_video: np.ndarray,
                        twin: np.ndarray, tie_tolerance: float = 1e-3) -> Optional[float]:
    """Percentage of captions that score their own video above its time-reversed twin by
    more than ``tie_tolerance``.

    The twin holds exactly the same frames in reverse order, so a model blind to order
    ties every such pair and scores 0 (ties count as failures, like the pessimistic rank
    rule of :mod:`training.retrieval_metrics`); an order-aware but untrained model scores
    about 50. The tolerance absorbs rounding: an order-blind model still sums the frames
    in another order (bf16 autocast included, cosine differences stay well below 1e-3).
    With lossy video files the two clips are no longer exact reversals of each other,
    so an order-blind model can score above 0 there; in-memory synthetic data is exact.

    Args:
        similarity: ``(num_texts, num_videos)`` scores.
        text_to_video: ``(num_texts,)`` ground-truth video per caption.
        twin: ``(num_videos,)`` twin index per video, -1 for none.

    Returns:
        The percentage over captions whose video has a twin, or None if none has.
    """
    scores = similarity.detach().cpu().numpy() if isinstance(similarity, Tensor) else np.asarray(similarity)
    targets = np.asarray(text_to_video, dtype=np.int64)
    twins = np.asarray(twin, dtype=np.int64)[targets]
    has_twin = twins >= 0
    if not has_twin.any():
        return None
    rows = np.flatnonzero(has_twin)
    own = scores[rows, targets[rows]]
    other = scores[rows, twins[rows]]
    return 100.0 * float(np.mean(own > other + tie_tolerance))


def retrieval_results(model: DualEncoder, encoded: EncodedEvalSet, postprocess: Sequence[str] = ("none",),
                      bank_texts: Optional[Sequence[str]] = None, device: Optional[torch.device] = None,
                      use_bf16: bool = False) -> dict[str, RetrievalResults]:
    """Metrics for each requested post-processing, keyed "raw", "dsl", "qbnorm".

    Args:
        postprocess: any of "none", "dsl", "qbnorm"; "none" is always computed.
        bank_texts: training captions for QB-Norm (required for "qbnorm").
    """
    similarity = DualEncoder.similarity(encoded.text_emb, encoded.video_emb)
    results = {"raw": evaluate_retrieval(similarity, encoded.text_to_video)}
    if "dsl" in postprocess:
        results["dsl"] = evaluate_retrieval(similarity, encoded.text_to_video, postprocess="dsl")
    if "qbnorm" in postprocess:
        if not bank_texts:
            raise ValueError("QB-Norm needs a bank of training captions")
        bank = encode_texts(model, list(bank_texts), device or torch.device("cpu"), use_bf16=use_bf16)
        bank_similarity = DualEncoder.similarity(bank, encoded.video_emb)
        results["qbnorm"] = evaluate_retrieval(similarity, encoded.text_to_video, postprocess="qbnorm",
                                               text_bank_similarity=bank_similarity)
    return results


__all__ = ["EncodedEvalSet", "autocast_context", "encode_eval_set", "encode_texts", "order_pair_accuracy",
           "retrieval_results"]
