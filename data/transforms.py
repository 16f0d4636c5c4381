"""Turning decoded frames into model input tensors.

``frames_to_tensor(frames, config)`` takes RGB ``uint8`` frames ``(T, H, W, 3)``
(numpy or torch) and returns a ``float32`` tensor ``(3, T, H', W')``:

1. resize with bicubic interpolation (antialiased when shrinking):
   "short_side" scales so the shorter side equals ``size`` (aspect kept);
   "square" scales to ``size x size`` (aspect not kept);
2. optionally centre-crop to ``size x size`` (only meaningful after "short_side");
3. scale to [0, 1] and normalise per channel with ``(x - mean) / std``
   (ImageNet statistics by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

ResizeMode = Literal["short_side", "square"]

# Frames resized per interpolate call: bounds float32 memory on 1080p/4K input.
_RESIZE_CHUNK = 4


@dataclass(frozen=True)
class TransformConfig:
    """Resize / crop / normalise settings.

    Attributes:
        size: target short side ("short_side") or side length ("square"), pixels.
        resize: "short_side" or "square".
        center_crop: after resizing, crop the centre ``size x size``.
        normalize: apply ``(x - mean) / std`` after scaling to [0, 1].
        mean, std: per-channel RGB statistics.
    """

    size: int = 224
    resize: ResizeMode = "short_side"
    center_crop: bool = True
    normalize: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")
        if self.resize not in ("short_side", "square"):
            raise ValueError(f"resize must be 'short_side' or 'square', got {self.resize!r}")


def resized_shape(height: int, width: int, config: TransformConfig) -> tuple[int, int]:
    """``(H', W')`` after the resize step (before any crop)."""
    if config.resize == "square":
        return config.size, config.size
    short = min(height, width)
    scale = config.size / short
    if height <= width:
        return config.size, max(1, int(round(width * scale)))
    return max(1, int(round(height * scale))), config.size


def output_shape(height: int, width: int, config: TransformConfig) -> tuple[int, int]:
    """``(H', W')`` of the tensor :func:`frames_to_tensor` returns for ``height x width`` input."""
    h, w = resized_shape(height, width, config)
    if config.center_crop:
        return min(h, config.size), min(w, config.size)
    return h, w


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Crop the central ``size x size`` of the last two dims (smaller inputs are left as they are)."""
    h, w = x.shape[-2:]
    top = max(0, (h - size) // 2)
    left = max(0, (w - size) // 2)
    return x[..., top : top + min(size, h), left : left + min(size, w)]


def frames_to_tensor(frames: np.ndarray | torch.Tensor, config: TransformConfig | None = None) -> torch.Tensor:
    """RGB ``uint8`` frames ``(T, H, W, 3)`` -> ``float32`` tensor ``(3, T, H', W')``.

    See the module doc for the steps.  ``H', W'`` are given by :func:`output_shape`.
    """
    config = config or TransformConfig()
    x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {tuple(x.shape)}")
    t, h, w, _ = x.shape
    out_h, out_w = resized_shape(h, w, config)
    x = x.permute(0, 3, 1, 2)  # (T, 3, H, W)
    chunks = []
    for start in range(0, t, _RESIZE_CHUNK):
        chunk = x[start : start + _RESIZE_CHUNK].float()
        if (out_h, out_w) != (h, w):
            chunk = F.interpolate(
                chunk, size=(out_h, out_w), mode="bicubic", align_corners=False, antialias=True
            ).clamp_(0.0, 255.0)
        if config.center_crop:
            chunk = center_crop(chunk, config.size)
        chunks.append(chunk)
    y = torch.cat(chunks).div_(255.0)
    if config.normalize:
        mean = torch.tensor(config.mean, dtype=y.dtype).view(1, 3, 1, 1)
        std = torch.tensor(config.std, dtype=y.dtype).view(1, 3, 1, 1)
        y = (y - mean) / std
    return y.permute(1, 0, 2, 3).contiguous()


def tensor_to_frames(video: torch.Tensor, config: TransformConfig | None = None) -> np.ndarray:
    """Inverse of the normalisation: ``(3, T, H, W)`` float -> ``uint8 (T, H, W, 3)`` (for previews)."""
    config = config or TransformConfig()
    x = video.detach().float().permute(1, 2, 3, 0)
    if config.normalize:
        x = x * torch.tensor(config.std) + torch.tensor(config.mean)
    return (x.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ResizeMode",
    "TransformConfig",
    "center_crop",
    "frames_to_tensor",
    "output_shape",
    "resized_shape",
    "tensor_to_frames",
]
