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
from training.dual_encoder import DualEncoder
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
    """

    video_emb: Tensor
    text_emb: Tensor
    text_to_video: np.ndarray
    video_ids: list[str]
    skipped_videos: list[str] = field(default_factory=list)


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
        return EncodedEvalSet(
            video_emb=torch.stack([embeddings[i] for i in kept]),
            text_emb=text_emb,
            text_to_video=new_index[eval_set.text_to_video[caption_keep]],
            video_ids=[eval_set.video_ids[i] for i in kept],
            skipped_videos=skipped,
        )
    finally:
        model.train(was_training)


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


__all__ = ["EncodedEvalSet", "autocast_context", "encode_eval_set", "encode_texts", "retrieval_results"]
