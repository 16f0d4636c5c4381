"""Tiny dual-encoder and training configs for the CPU tests of ``training``."""

from __future__ import annotations

from typing import Any

from encoders.dual_encoder import DualEncoderConfig

TINY_TEXT: dict[str, Any] = {"kind": "clip", "width": 64, "layers": 2, "heads": 2, "context_length": 24}


def tiny_model_config(**overrides: Any) -> DualEncoderConfig:
    """VideoMamba with 2 layers of width 32 on 4 frames of 32x32, a 2-layer 64-wide
    open_clip text tower, 32-d shared space."""
    values: dict[str, Any] = dict(
        video_tower="videomamba", num_frames=4, img_size=32,
        video_overrides={"depth": 2, "embed_dim": 32}, text=dict(TINY_TEXT),
        pooling="per_frame", embed_dim=32)
    values.update(overrides)
    return DualEncoderConfig(**values)


def tiny_train_overrides(out_dir: str, run_name: str, **fields: Any) -> list[str]:
    """Command-line overrides on top of configs/synthetic_tiny.yaml: a small run in ``out_dir``."""
    values: dict[str, Any] = {
        "train.out_dir": out_dir, "train.run_name": run_name, "logging.progress": "false",
        "data.synthetic_train_videos": 16, "data.synthetic_eval_videos": 8,
    }
    values.update({k.replace("__", "."): v for k, v in fields.items()})
    argv: list[str] = []
    for key, value in values.items():
        argv += [f"--{key}", str(value)]
    return argv
