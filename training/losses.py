"""Symmetric InfoNCE (CLIP loss) over the global batch of all ranks.

With ``W`` ranks each holding ``n`` pairs, every rank gathers all ``N = W * n`` text and
video embeddings (:func:`training.distributed.all_gather_with_grad`) and computes the
cross-entropy of ITS OWN rows in both directions: its texts against all N videos and
its videos against all N texts, the matching pair being the positive. The gather's
backward sums the gradients of all ranks into each rank's local features, and DDP
averages parameter gradients over ranks, so the update equals the gradient of the
loss over the whole global batch, exactly as a single process with batch N would
compute it (the temperature included).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from training.distributed import DistributedContext, all_gather_with_grad


class ContrastiveLoss(NamedTuple):
    """``loss``: scalar to backpropagate (mean over this rank's rows of both directions);
    ``text_to_video`` / ``video_to_text``: its two halves (detached); ``accuracy``:
    fraction of this rank's texts whose top-scoring video is the positive (detached)."""

    loss: Tensor
    text_to_video: Tensor
    video_to_text: Tensor
    accuracy: Tensor


def symmetric_infonce(text_emb: Tensor, video_emb: Tensor, temperature: Tensor,
                      context: DistributedContext) -> ContrastiveLoss:
    """Symmetric InfoNCE of this rank's pairs against the global batch.

    Args:
        text_emb: ``(n, D)`` L2-normalised text embeddings of this rank.
        video_emb: ``(n, D)`` or per-frame ``(n, T, D)`` L2-normalised video embeddings;
            per-frame scores are the mean over frames of the per-frame cosines (computed
            as the dot product with the mean frame embedding, which is identical).
        temperature: scalar tensor; logits are ``cosine / temperature``.
        context: the process group (single process: plain CLIP loss).

    The logits are computed in float32 whatever the autocast dtype.
    """
    if video_emb.dim() == 3:
        video_emb = video_emb.mean(dim=1)
    if text_emb.shape != video_emb.shape:
        raise ValueError(f"text {tuple(text_emb.shape)} and video {tuple(video_emb.shape)} embeddings differ")
    count = text_emb.shape[0]
    all_text = all_gather_with_grad(text_emb.float(), context)
    all_video = all_gather_with_grad(video_emb.float(), context)
    start = context.rank * count
    local_text = all_text[start:start + count]
    local_video = all_video[start:start + count]
    scale = 1.0 / temperature.float()
    logits_t2v = scale * local_text @ all_video.t()   # (n, N)
    logits_v2t = scale * local_video @ all_text.t()   # (n, N)
    targets = torch.arange(start, start + count, device=text_emb.device)
    loss_t2v = F.cross_entropy(logits_t2v, targets)
    loss_v2t = F.cross_entropy(logits_v2t, targets)
    accuracy = (logits_t2v.argmax(dim=1) == targets).float().mean()
    return ContrastiveLoss((loss_t2v + loss_v2t) / 2, loss_t2v.detach(), loss_v2t.detach(), accuracy.detach())


__all__ = ["ContrastiveLoss", "symmetric_infonce"]
