"""VideoMamba video backbone: OpenGVLab's (separable positions, tubelet 1) and
KAIST's (joint positions, tubelet 2) variants in one module.

Input clips are (batch, 3, T, H, W) float tensors. Tokens are laid out
cls first, then frame-major (all patches of time step 0, then time step 1, ...),
L = 1 + (T / tubelet) * (H / patch) * (W / patch).

Parameter names equal OpenGVLab's classification model
(``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``temporal_pos_embedding``,
``layers.N.{norm,mixer.*}``, ``norm_f``, ``head``) so their checkpoints load
with ``strict=True``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, Mapping, Optional

import torch
import torch.nn as nn
import torch.utils.checkpoint
from torch import Tensor

from ..modules.bimamba import BACKWARD_ORDERS, BiMambaMixer, TokenLayout
from ..modules.block import DropPath, MambaBlock, RMSNorm
from ..ops.patch_embed import patch_embed
from .pos_embed import resize_joint_pos_embed, resize_spatial_pos_embed, resize_temporal_pos_embed

logger = logging.getLogger(__name__)

POS_EMBED_KINDS = ("separable", "joint")
OUTPUT_KINDS = ("cls", "frames", "tokens")
Output = Literal["cls", "frames", "tokens"]


@dataclass
class VideoMambaConfig:
    """Architecture of a VideoMamba backbone (defaults: OpenGVLab VideoMamba-Ti, 8 frames)."""

    img_size: int = 224
    patch_size: int = 16
    tubelet_size: int = 1
    num_frames: int = 8
    in_chans: int = 3
    embed_dim: int = 192
    depth: int = 24
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    norm_eps: float = 1e-5
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    pos_embed: str = "separable"
    backward_order: str = "full"
    num_classes: int = 0
    fc_drop_rate: float = 0.0
    grad_checkpointing: bool = False
    scan_backend: Optional[str] = None

    def __post_init__(self) -> None:
        if self.pos_embed not in POS_EMBED_KINDS:
            raise ValueError(f"pos_embed must be one of {POS_EMBED_KINDS}, got {self.pos_embed!r}")
        if self.backward_order not in BACKWARD_ORDERS:
            raise ValueError(f"backward_order must be one of {BACKWARD_ORDERS}, got {self.backward_order!r}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.num_frames % self.tubelet_size:
            raise ValueError(f"num_frames {self.num_frames} is not a multiple of tubelet_size {self.tubelet_size}")

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def temporal_size(self) -> int:
        return self.num_frames // self.tubelet_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class VideoMamba(nn.Module):
    """VideoMamba backbone (+ optional classification head)."""

    def __init__(self, cfg: VideoMambaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_dim = self.num_features = cfg.embed_dim
        self.grad_checkpointing = cfg.grad_checkpointing

        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv3d(
            cfg.in_chans,
            cfg.embed_dim,
            kernel_size=(cfg.tubelet_size, cfg.patch_size, cfg.patch_size),
            stride=(cfg.tubelet_size, cfg.patch_size, cfg.patch_size),
        )
        num_patches = cfg.grid_size**2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        if cfg.pos_embed == "separable":
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + num_patches, cfg.embed_dim))
            self.temporal_pos_embedding = nn.Parameter(torch.zeros(1, cfg.temporal_size, cfg.embed_dim))
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.temporal_size * num_patches, cfg.embed_dim))
        self.pos_drop = nn.Dropout(cfg.drop_rate)

        # Stochastic depth: block i adds the previous block's output with rate
        # [0, linspace(0, rate, depth)][i]; the final add uses the full rate.
        rates = [0.0] + torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist()
        self.layers = nn.ModuleList(
            MambaBlock(
                cfg.embed_dim,
                BiMambaMixer(
                    cfg.embed_dim,
                    d_state=cfg.d_state,
                    d_conv=cfg.d_conv,
                    expand=cfg.expand,
                    backward_order=cfg.backward_order,
                    scan_backend=cfg.scan_backend,
                ),
                drop_path=rates[i],
                norm_eps=cfg.norm_eps,
            )
            for i in range(cfg.depth)
        )
        self.drop_path = DropPath(cfg.drop_path_rate)
        self.norm_f = RMSNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.head_drop = nn.Dropout(cfg.fc_drop_rate)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """OpenGVLab's scheme: truncated-normal(0.02) linears with zero bias,
        truncated-normal(0.02) spatial positions (joint: copied along time, as
        KAIST's "temporal expanding"), zero temporal positions, and out_proj
        rescaled by 1/sqrt(depth). The mixers keep Mamba's dt/A/D init (their
        code zeroes dt_proj's bias by accident; the intended init is kept)."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and not name.endswith(("dt_proj", "dt_proj_b")):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for layer in self.layers:
            nn.init.kaiming_uniform_(layer.mixer.out_proj.weight, a=math.sqrt(5))
            layer.mixer.out_proj.weight /= math.sqrt(self.cfg.depth)
        spatial = torch.empty(1, 1 + self.cfg.grid_size**2, self.embed_dim)
        nn.init.trunc_normal_(spatial, std=0.02)
        if self.cfg.pos_embed == "separable":
            self.pos_embed.copy_(spatial)
        else:
            grid = spatial[:, 1:].repeat(1, self.cfg.temporal_size, 1)
            self.pos_embed.copy_(torch.cat([spatial[:, :1], grid], dim=1))

    def no_weight_decay(self) -> set[str]:
        names = {"cls_token", "pos_embed", "temporal_pos_embedding"}
        for name, param in self.named_parameters():
            if getattr(param, "_no_weight_decay", False):
                names.add(name)
        return names

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def _positions(self, frames: int, grid: tuple[int, int]) -> tuple[Tensor, Optional[Tensor]]:
        """Positional embeddings for an input of ``frames`` tubelets on ``grid`` patches,
        interpolated on the fly when they differ from the configured size."""
        native = (self.cfg.grid_size, self.cfg.grid_size)
        if self.cfg.pos_embed == "separable":
            spatial = resize_spatial_pos_embed(self.pos_embed, native, grid)
            temporal = resize_temporal_pos_embed(self.temporal_pos_embedding, frames)
            return spatial, temporal
        joint = resize_joint_pos_embed(self.pos_embed, (self.cfg.temporal_size, *native), (frames, *grid))
        return joint, None

    def embed(self, video: Tensor) -> tuple[Tensor, TokenLayout]:
        """(B, 3, T, H, W) -> tokens (B, L, C) with positions added, and their layout."""
        if video.dim() != 5 or video.shape[1] != self.cfg.in_chans:
            raise ValueError(
                f"VideoMamba expects (batch, {self.cfg.in_chans}, frames, height, width), got {tuple(video.shape)}"
            )
        if video.shape[2] % self.cfg.tubelet_size:
            raise ValueError(f"{video.shape[2]} frames is not a multiple of tubelet_size {self.cfg.tubelet_size}")
        proj = self.patch_embed.proj
        x = patch_embed(video, proj.weight, proj.bias)  # (B, T', h*w, C): the Conv3d, as one GEMM
        batch, frames, _, dim = x.shape
        h, w = video.shape[3] // self.cfg.patch_size, video.shape[4] // self.cfg.patch_size
        pos, temporal = self._positions(frames, (h, w))
        cls = self.cls_token + pos[:, :1]
        if temporal is not None:
            x = x + pos[:, None, 1:] + temporal[:, :, None]
        else:
            x = x + pos[:, 1:].view(1, frames, h * w, dim)
        x = torch.cat([cls.expand(batch, -1, -1).to(x.dtype), x.reshape(batch, frames * h * w, dim)], dim=1)
        return self.pos_drop(x), TokenLayout(frames, h * w, 1)

    def forward_features(self, video: Tensor) -> tuple[Tensor, TokenLayout]:
        """(B, 3, T, H, W) -> final-normed tokens (B, L, C) and their layout."""
        hidden, layout = self.embed(video)
        residual = None
        for layer in self.layers:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                hidden, residual = torch.utils.checkpoint.checkpoint(
                    layer, hidden, residual, layout, use_reentrant=False
                )
            else:
                hidden, residual = layer(hidden, residual, layout)
        residual = residual + self.drop_path(hidden)
        return self.norm_f(residual), layout

    @staticmethod
    def pool(tokens: Tensor, layout: TokenLayout, output: Output) -> Tensor:
        """Reduce (B, L, C) tokens: "cls" -> (B, C); "frames" -> (B, T', C) as
        cls + mean of each time step's tokens (the retrieval model's per-frame
        feature); "tokens" -> (B, L, C) unchanged."""
        if output == "tokens":
            return tokens
        cls = tokens[:, 0]
        if output == "cls":
            return cls
        if output == "frames":
            body = tokens[:, layout.num_prefix :].unflatten(1, (layout.num_frames, layout.tokens_per_frame))
            return cls.unsqueeze(1) + body.mean(dim=2)
        raise ValueError(f"output must be one of {OUTPUT_KINDS}, got {output!r}")

    def forward(self, video: Tensor, output: Optional[Output] = None) -> Tensor:
        """Without ``output``: class logits if the model has a head, else the cls feature."""
        tokens, layout = self.forward_features(video)
        if output is not None:
            return self.pool(tokens, layout, output)
        return self.head(self.head_drop(tokens[:, 0]))


def checkpoint_filter_fn(state_dict: Mapping[str, Tensor], model: VideoMamba) -> dict[str, Tensor]:
    """Adapt an OpenGVLab-layout VideoMamba state dict to ``model``.

    Unwraps ``{"model": ...}`` / ``{"module": ...}`` and a ``module.`` prefix,
    interpolates positional embeddings to the model's frames and resolution,
    inflates a 2-D patch embedding to the model's tubelet (centre frame), and
    drops a classification head whose shape does not fit. Everything else is
    passed through untouched, so that ``load_state_dict(strict=True)`` reports
    any genuinely missing or unexpected key by name.
    """
    for wrapper in ("model", "module", "state_dict"):
        if wrapper in state_dict and isinstance(state_dict[wrapper], Mapping):
            state_dict = state_dict[wrapper]
    cfg = model.cfg
    target = model.state_dict()
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if key == "pos_embed" and value.shape != target["pos_embed"].shape:
            value = _adapt_pos_embed(value, cfg)
        elif key == "temporal_pos_embedding" and value.shape != target[key].shape:
            value = resize_temporal_pos_embed(value, cfg.temporal_size)
        elif key == "patch_embed.proj.weight" and value.dim() == 4:
            value = value.unsqueeze(2)
        if key == "patch_embed.proj.weight" and value.shape[2] != cfg.tubelet_size:
            inflated = value.new_zeros(value.shape[0], value.shape[1], cfg.tubelet_size, *value.shape[3:])
            inflated[:, :, cfg.tubelet_size // 2] = value.mean(dim=2)
            value = inflated
        if key.startswith("head.") and (key not in target or target[key].shape != value.shape):
            logger.info("dropping %s %s: it does not fit this model's head", key, tuple(value.shape))
            continue
        out[key] = value
    return out


def _adapt_pos_embed(pos: Tensor, cfg: VideoMambaConfig) -> Tensor:
    """Resize a separable (1, 1+N, C) or joint (1, 1+T*N, C) position table to ``cfg``."""
    grid = cfg.grid_size
    if cfg.pos_embed == "separable":
        old = int(round(math.sqrt(pos.shape[1] - 1)))
        if old * old != pos.shape[1] - 1:
            raise ValueError(f"pos_embed with {pos.shape[1] - 1} positions is not a square grid")
        return resize_spatial_pos_embed(pos, (old, old), (grid, grid))
    # Joint: the checkpoint may hold a spatial (image) table to expand along
    # time, or a joint table of another size.
    n = pos.shape[1] - 1
    old = int(round(math.sqrt(n)))
    if old * old == n:
        spatial = resize_spatial_pos_embed(pos, (old, old), (grid, grid))
        return torch.cat([spatial[:, :1], spatial[:, 1:].repeat(1, cfg.temporal_size, 1)], dim=1)
    if n % (grid * grid) == 0:
        return resize_joint_pos_embed(pos, (n // (grid * grid), grid, grid), (cfg.temporal_size, grid, grid))
    raise ValueError(
        f"cannot interpret a joint pos_embed of {n} positions for a {grid}x{grid} patch grid; "
        "resize it to the model's resolution first"
    )
