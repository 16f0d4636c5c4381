"""Video-encoder registry and factory: one name per published architecture.

    model = create_video_encoder("videomamba_tiny", num_frames=16, img_size=112)

Presets are small dicts of :class:`VideoMambaConfig` fields; keyword overrides
replace any field. ``pretrained`` loads a local OpenGVLab-layout state dict
through :func:`checkpoint_filter_fn` (positions interpolated, head dropped if
it does not fit) with strict key checking.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Optional

import torch

from .models.videomamba import VideoMamba, VideoMambaConfig, checkpoint_filter_fn

logger = logging.getLogger(__name__)

_VIDEO_PRESETS: dict[str, dict[str, Any]] = {
    # OpenGVLab VideoMamba (Li et al., ECCV 2024): tubelet 1, separable positions.
    "videomamba_tiny": dict(embed_dim=192, depth=24),
    "videomamba_small": dict(embed_dim=384, depth=24),
    "videomamba_middle": dict(embed_dim=576, depth=32),
    # KAIST VideoMamba (Park et al., ECCV 2024): tubelet 2, one joint position
    # table over all tokens, full reversal for the backward scan.
    "videomamba_kaist": dict(
        embed_dim=384, depth=24, tubelet_size=2, num_frames=16, pos_embed="joint", backward_order="full"
    ),
}


def list_video_encoders() -> list[str]:
    """Names accepted by :func:`create_video_encoder`."""
    return sorted(_VIDEO_PRESETS)


def video_encoder_config(name: str, **overrides: Any) -> VideoMambaConfig:
    """The preset's config with ``overrides`` applied; unknown names or fields raise ValueError."""
    if name not in _VIDEO_PRESETS:
        raise ValueError(f"unknown video encoder {name!r}; available: {', '.join(list_video_encoders())}")
    fields = {f.name for f in dataclasses.fields(VideoMambaConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown option(s) for {name}: {', '.join(unknown)}; valid: {', '.join(sorted(fields))}")
    return VideoMambaConfig(**{**_VIDEO_PRESETS[name], **overrides})


def create_video_encoder(name: str, pretrained: Optional[str | os.PathLike] = None, **overrides: Any) -> VideoMamba:
    """Build a registered video encoder; optionally load local OpenGVLab-layout weights."""
    model = VideoMamba(video_encoder_config(name, **overrides))
    if pretrained is not None:
        load_video_weights(model, pretrained)
    return model


def load_video_weights(model: VideoMamba, path: str | os.PathLike) -> None:
    """Load a state-dict file into ``model`` (strict), naming every mismatch."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video encoder weights not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable PyTorch state dict ({err.__class__.__name__}: {err})") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(raw).__name__}")
    state = checkpoint_filter_fn(raw, model)
    target = model.state_dict()
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    wrong = sorted(k for k in set(state) & set(target) if state[k].shape != target[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected: {', '.join(unexpected)}")
        if wrong:
            parts.append(
                "wrong shape: "
                + ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}" for k in wrong)
            )
        raise ValueError(f"{path} does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    logger.info("loaded video encoder weights from %s", path)
