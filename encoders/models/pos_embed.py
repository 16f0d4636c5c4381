"""Resizing positional embeddings when the frame count or resolution changes.

Spatial grids are resized bicubically, time linearly (REFERENCE.md section 1).
All functions take and return (1, tokens, C) tensors and leave the prefix
(cls) positions untouched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def resize_spatial_pos_embed(pos_embed: Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int],
                             num_prefix: int = 1) -> Tensor:
    """(1, num_prefix + H*W, C) -> (1, num_prefix + H'*W', C), bicubic."""
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    dim = grid.shape[-1]
    if grid.shape[1] != old_grid[0] * old_grid[1]:
        raise ValueError(f"pos_embed has {grid.shape[1]} spatial positions, expected a {old_grid} grid")
    grid = grid.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


def resize_temporal_pos_embed(temporal: Tensor, new_frames: int) -> Tensor:
    """(1, T, C) -> (1, T', C), linear interpolation along time."""
    if temporal.shape[1] == new_frames:
        return temporal
    x = temporal.permute(0, 2, 1).float()
    x = F.interpolate(x, size=new_frames, mode="linear", align_corners=False)
    return x.permute(0, 2, 1).to(temporal.dtype)


def resize_joint_pos_embed(pos_embed: Tensor, old_thw: tuple[int, int, int], new_thw: tuple[int, int, int],
                           num_prefix: int = 1) -> Tensor:
    """(1, num_prefix + T*H*W, C) -> (1, num_prefix + T'*H'*W', C): bicubic in
    space (frame by frame), then linear in time."""
    if tuple(old_thw) == tuple(new_thw):
        return pos_embed
    (t, h, w), (t2, h2, w2) = old_thw, new_thw
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    dim = grid.shape[-1]
    if grid.shape[1] != t * h * w:
        raise ValueError(f"pos_embed has {grid.shape[1]} positions, expected {t}x{h}x{w}")
    x = grid.reshape(t, h, w, dim).permute(0, 3, 1, 2).float()  # (t, C, h, w)
    if (h, w) != (h2, w2):
        x = F.interpolate(x, size=(h2, w2), mode="bicubic", align_corners=False)
    if t != t2:
        x = x.permute(1, 2, 3, 0).reshape(1, dim * h2 * w2, t)
        x = F.interpolate(x, size=t2, mode="linear", align_corners=False)
        x = x.reshape(dim, h2, w2, t2).permute(3, 0, 1, 2)
    grid = x.permute(0, 2, 3, 1).reshape(1, t2 * h2 * w2, dim).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)

