"""Tubelet patch embedding as one GEMM: what ``nn.Conv3d`` with kernel == stride computes.

A video transformer's (or VideoMamba's) patch embedding is a Conv3d whose
kernel equals its stride, (tubelet, patch, patch): every output is a linear
map of one non-overlapping tubelet. For bf16 video on an H100, cuDNN runs it as
``implicit_convolveNd_sgemm`` at 0.78 ms for 4 clips of 64 frames at 224 px, 4 %
of VideoMamba-Ti's inference time (docs/benchmarks.md); cut into tubelets it
is one copy of the video and a GEMM. The result comes token-major, (batch,
time, patches, embed), which is the layout the tokens need next anyway.
"""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor


def patch_embed(video: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``nn.Conv3d(C, E, kernel_size=k, stride=k)(video)`` with k = weight's
    (tubelet, patch_h, patch_w), laid out token-major.

    Args:
        video: (B, C, T, H, W); T a multiple of the tubelet (checked by the
            caller); rows and columns past the last whole patch are dropped,
            as the convolution drops them.
        weight: (E, C, tubelet, patch_h, patch_w), the Conv3d's weight.
        bias: (E,) or None.

    Returns:
        (B, T // tubelet, (H // patch_h) * (W // patch_w), E), patches in
        row-major order: ``conv(video).flatten(3).permute(0, 2, 3, 1)``.
        Differentiable; any device and dtype (autocast applies to the GEMM).
    """
    batch, channels, frames, height, width = video.shape
    embed, _, tubelet, patch_h, patch_w = weight.shape
    t, h, w = frames // tubelet, height // patch_h, width // patch_w
    tubelets = video[..., :h * patch_h, :w * patch_w].reshape(batch, channels, t, tubelet, h, patch_h, w, patch_w)
    tubelets = tubelets.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(batch, t, h * w, -1)
    return F.linear(tubelets, weight.reshape(embed, -1), bias)


__all__ = ["patch_embed"]
