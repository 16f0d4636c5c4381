"""Helpers for the index tests: a tiny random dual encoder on disk and tiny generated videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tests.data_fixtures import write_video
from encoders.checkpoint import save_model
from encoders.dual_encoder import DualEncoderConfig, create_dual_encoder

TINY_TEXT = {"kind": "clip", "width": 32, "layers": 1, "heads": 2, "context_length": 16}


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """A random VideoMamba dual encoder (depth 2, width 32, 4 frames of 32 px, 32-d space) saved at ``path``."""
    torch.manual_seed(seed)
    config = DualEncoderConfig(video_tower="videomamba", num_frames=4, img_size=32,
                               video_overrides={"depth": 2, "embed_dim": 32}, text=dict(TINY_TEXT),
                               pooling="per_frame", embed_dim=32)
    return save_model(create_dual_encoder(config), path)


def pattern_video(path: Path, seed: int, seconds: float = 3.0, fps: int = 4, size: int = 32) -> Path:
    """A small H.264 clip of random coloured blocks (content depends on ``seed``)."""
    rng = np.random.default_rng(seed)
    n = max(1, int(round(seconds * fps)))
    base = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    frames = []
    for i in range(n):
        tile = np.roll(base, i % 4, axis=1)
        frames.append(np.kron(tile, np.ones((size // 4, size // 4, 1), dtype=np.uint8)))
    return write_video(path, np.stack(frames), fps=fps)
