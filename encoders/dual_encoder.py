"""The video-text dual encoder: a video tower, a text tower, projections to a shared
space and a learnable temperature.

    config = DualEncoderConfig(video_encoder="videomamba_tiny", num_frames=8, img_size=112)
    model = DualEncoder(config)
    video_emb = model.encode_video(video)                  # (B, D), or (B, T', D) for "per_frame"
    text_emb = model.encode_text(model.tokenize(captions)) # (N, D)
    scores = model.similarity(text_emb, video_emb)         # (N, B) cosine similarities

Video towers (``video_tower``):
    "videomamba": the VideoMamba backbone runs on the whole clip (B, 3, T, H, W);
        its token sequence spans all frames, so it can see the order of events.
    "frame_mean": the same backbone built for single images (``num_frames=1``) runs
        on every frame independently; per-frame features are averaged over time
        (CLIP4Clip "meanP"). It is blind to frame order by construction: a clip and
        its time reversal get identical embeddings. This is the baseline.

Pooling (``pooling``), as features of width C before the projection:
    "cls": the cls token, (B, C). For "frame_mean": the mean over frames of the
        per-frame cls tokens.
    "cls_frame_mean": the cls token plus the mean of all patch tokens of each time
        step, then averaged over time, (B, C). This is the mean over time of the
        per-frame feature below.
    "per_frame": ``cls + per-frame patch mean`` kept per time step, (B, T', C), the
        UMT/VideoMamba retrieval feature; each frame is projected and normalised,
        and the similarity to a text is the mean over frames of the per-frame
        cosine similarities (REFERENCE.md section 1).

Before the projection the pooled features go through a LayerNorm (``pool_norm``,
as in the VideoMamba retrieval model). The projections are ``nn.Linear`` layers (with
bias) from C (video) and from the text tower's output width to ``embed_dim``.

Temperature: stored directly as the parameter ``temp`` (initialised to
``init_temperature`` = 0.07), the logits are ``similarity / temp``. After every
optimiser step the trainer calls :meth:`DualEncoder.clamp_temperature_` to keep it in
``[min_temperature, max_temperature]`` = [0.001, 0.5] (the UMT/VideoMamba convention);
:meth:`DualEncoder.temperature` also clamps when read, so an unclamped value is never used.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data.transforms import TransformConfig
from encoders import VideoMamba, create_video_encoder, video_encoder_config
from encoders.opengvlab import load_video_backbone
from encoders.text import TextEncoder, TextEncoderConfig, create_text_encoder

logger = logging.getLogger(__name__)

VideoTower = Literal["videomamba", "frame_mean"]
Pooling = Literal["cls", "cls_frame_mean", "per_frame"]
VIDEO_TOWERS: tuple[str, ...] = ("videomamba", "frame_mean")
POOLINGS: tuple[str, ...] = ("cls", "cls_frame_mean", "per_frame")
RESIZE_MODES: tuple[str, ...] = ("short_side", "square")


def _default_text_config() -> dict[str, Any]:
    # A small open_clip text transformer from scratch; enough for short captions.
    return TextEncoderConfig(kind="clip", width=256, layers=4, heads=4, context_length=32).to_dict()


@dataclass
class DualEncoderConfig:
    """Everything needed to rebuild a :class:`DualEncoder` (stored in every checkpoint).

    Attributes:
        video_tower: "videomamba" (whole clip) or "frame_mean" (per-frame baseline).
        video_encoder: preset name for :func:`encoders.create_video_encoder`.
        num_frames: frames per input clip (T). For "frame_mean" the backbone itself is
            built with ``num_frames=1`` and any T is accepted.
        img_size: input height and width in pixels.
        video_overrides: further :class:`encoders.VideoMambaConfig` fields (depth,
            embed_dim, drop_path_rate, scan_backend, ...). ``num_frames`` and
            ``img_size`` belong to the fields above and are refused here.
        video_pretrained: optional OpenGVLab checkpoint for the backbone, loaded when the
            model is first built (not when loading a checkpoint): a local file or a file
            name of the ``OpenGVLab/VideoMamba`` hub repository; classification, ImageNet
            (image) or retrieval files, positions interpolated and any head dropped
            (:func:`encoders.opengvlab.load_video_backbone`).
        text: a :class:`encoders.text.TextEncoderConfig` as a dict.
        pooling: "cls", "cls_frame_mean" or "per_frame" (module doc).
        embed_dim: size of the shared embedding space.
        init_temperature, min_temperature, max_temperature: softmax temperature.
        grad_checkpointing: activation checkpointing in both towers (training only).
        resize: how evaluation and indexing resize frames to ``img_size``: "short_side"
            (short side to ``img_size``, then centre crop; this project's default) or
            "square" (bicubic to ``img_size x img_size``, no crop: OpenGVLab's test
            transform). Both scale to [0, 1] and use ImageNet mean/std; clips are read
            with "middle" sampling. :meth:`transform_config` is the transform.
    """

    video_tower: str = "videomamba"
    video_encoder: str = "videomamba_tiny"
    num_frames: int = 8
    img_size: int = 224
    video_overrides: dict[str, Any] = field(default_factory=dict)
    video_pretrained: Optional[str] = None
    text: dict[str, Any] = field(default_factory=_default_text_config)
    pooling: str = "per_frame"
    embed_dim: int = 512
    init_temperature: float = 0.07
    min_temperature: float = 0.001
    max_temperature: float = 0.5
    grad_checkpointing: bool = False
    resize: str = "short_side"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        if self.video_tower not in VIDEO_TOWERS:
            raise ValueError(f"video_tower must be one of {VIDEO_TOWERS}, got {self.video_tower!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        clash = sorted({"num_frames", "img_size"} & set(self.video_overrides))
        if clash:
            raise ValueError(f"set {', '.join(clash)} as model fields, not in video_overrides")
        if self.embed_dim < 1:
            raise ValueError(f"embed_dim must be positive, got {self.embed_dim}")
        if self.num_frames < 1 or self.img_size < 1:
            raise ValueError("num_frames and img_size must be positive")
        if not 0 < self.min_temperature <= self.init_temperature <= self.max_temperature:
            raise ValueError("need 0 < min_temperature <= init_temperature <= max_temperature, got "
                             f"{self.min_temperature}, {self.init_temperature}, {self.max_temperature}")
        TextEncoderConfig.from_dict(self.text).validate()
        self.backbone_config()  # raises for unknown presets / fields

    def backbone_config(self) -> Any:
        """The :class:`encoders.VideoMambaConfig` of the video backbone."""
        frames = 1 if self.video_tower == "frame_mean" else self.num_frames
        overrides = dict(self.video_overrides)
        if self.video_tower == "frame_mean":
            overrides["tubelet_size"] = 1
        return video_encoder_config(self.video_encoder, num_frames=frames, img_size=self.img_size, **overrides)

    def transform_config(self) -> TransformConfig:
        """The frame transform for evaluation and indexing (see ``resize``)."""
        return TransformConfig(size=self.img_size, resize=self.resize, center_crop=self.resize == "short_side")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML friendly); inverse of :meth:`from_dict`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "DualEncoderConfig":
        """Build from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown dual encoder option(s): {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**dict(values))


class DualEncoder(nn.Module):
    """Video and text towers mapping into one L2-normalised embedding space.

    Submodules: ``video`` (:class:`encoders.VideoMamba`), ``text``
    (:class:`encoders.text.TextEncoder`), ``pool_norm`` (LayerNorm of the video
    width), ``vision_proj`` and ``text_proj`` (Linear to ``embed_dim``), and the
    scalar parameter ``temp``.
    """

    def __init__(self, config: DualEncoderConfig, load_pretrained: bool = True) -> None:
        """Build the model. ``load_pretrained=False`` skips ``video_pretrained`` and the
        text tower's checkpoint file (used when all weights come from a checkpoint)."""
        super().__init__()
        config.validate()
        self.config = config
        backbone_cfg = config.backbone_config()
        pretrained = config.video_pretrained if load_pretrained else None
        self.video: VideoMamba = create_video_encoder(
            config.video_encoder, **{**backbone_cfg.to_dict(), "num_classes": 0})
        if pretrained is not None:
            load_video_backbone(self.video, pretrained)
        text_cfg = TextEncoderConfig.from_dict(config.text)
        if not load_pretrained:
            text_cfg = dataclasses.replace(text_cfg, checkpoint_path=None, hf_pretrained=False)
        self.text: TextEncoder = create_text_encoder(text_cfg)
        if text_cfg.kind == "hf" and text_cfg.hf_pooler_type != "cls_pooler":
            # BERT's pooling layer is unused by every other pooler; without it every
            # parameter gets a gradient (DDP requires that) and checkpoints stay smaller.
            transformer = getattr(self.text.tower, "transformer", None)
            if getattr(transformer, "pooler", None) is not None:
                transformer.pooler = None
        width = self.video.embed_dim
        self.pool_norm = nn.LayerNorm(width)
        self.vision_proj = nn.Linear(width, config.embed_dim)
        self.text_proj = nn.Linear(self.text.output_dim, config.embed_dim)
        self.temp = nn.Parameter(torch.tensor(float(config.init_temperature)))
        for proj in (self.vision_proj, self.text_proj):
            nn.init.trunc_normal_(proj.weight, std=0.02)
            nn.init.zeros_(proj.bias)
        if config.grad_checkpointing:
            self.set_grad_checkpointing(True)

    # ------------------------------------------------------------------ properties

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def per_frame(self) -> bool:
        """True when :meth:`encode_video` returns one embedding per time step."""
        return self.config.pooling == "per_frame"

    def temperature(self) -> Tensor:
        """The softmax temperature, clamped to its allowed range (scalar tensor)."""
        return self.temp.clamp(self.config.min_temperature, self.config.max_temperature)

    @torch.no_grad()
    def clamp_temperature_(self) -> None:
        """Clamp the stored temperature in place (call after each optimiser step)."""
        self.temp.clamp_(self.config.min_temperature, self.config.max_temperature)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing in both towers."""
        self.video.set_grad_checkpointing(enable)
        self.text.set_grad_checkpointing(enable)

    def no_weight_decay(self) -> set[str]:
        """Names of parameters to exclude from weight decay besides norms and biases:
        positional embeddings, cls token, SSM ``A_log``/``D`` and the temperature."""
        names = {f"video.{name}" for name in self.video.no_weight_decay()}
        names.add("temp")
        for name, _ in self.text.named_parameters():
            if name.endswith(("positional_embedding", "position_embeddings.weight")):
                names.add(f"text.{name}")
        return names

    # -------------------------------------------------------------------- encoding

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """Token ids, int64 ``(len(texts), context_length)`` on the CPU."""
        return self.text.tokenize(texts)

    def video_features(self, video: Tensor) -> Tensor:
        """Pooled backbone features before ``pool_norm``: (B, C), or (B, T', C) for "per_frame".

        Args:
            video: float ``(B, 3, T, H, W)`` clip, normalised like the training data.
        """
        if video.dim() != 5:
            raise ValueError(f"video must be (B, 3, T, H, W), got shape {tuple(video.shape)}")
        pooling = self.config.pooling
        if self.config.video_tower == "frame_mean":
            batch, channels, frames, height, width = video.shape
            images = video.transpose(1, 2).reshape(batch * frames, channels, 1, height, width)
            per_image = self.video(images, output="cls" if pooling == "cls" else "frames")
            per_frame = per_image.reshape(batch, frames, -1)  # (B, T, C): one row per frame
            # The time average in float32: the same frames in another order then give the
            # same feature up to float32 rounding, also under bf16 autocast.
            return per_frame if pooling == "per_frame" else per_frame.float().mean(dim=1)
        if pooling == "cls":
            return self.video(video, output="cls")
        per_frame = self.video(video, output="frames")  # (B, T', C) = cls + per-frame patch mean
        return per_frame if pooling == "per_frame" else per_frame.mean(dim=1)

    def encode_video(self, video: Tensor) -> Tensor:
        """L2-normalised video embeddings.

        Args:
            video: float ``(B, 3, T, H, W)``.

        Returns:
            ``(B, embed_dim)``, or ``(B, T', embed_dim)`` with "per_frame" pooling
            (``T' = T / tubelet_size``; ``T`` for "frame_mean"), in the autocast/compute
            dtype, each vector of unit norm.
        """
        features = self.video_features(video)
        return F.normalize(self.vision_proj(self.pool_norm(features)), dim=-1)

    def encode_text(self, tokens: Tensor) -> Tensor:
        """L2-normalised text embeddings ``(N, embed_dim)`` from int64 tokens ``(N, context_length)``."""
        return F.normalize(self.text_proj(self.text(tokens)), dim=-1)

    @staticmethod
    def similarity(text_emb: Tensor, video_emb: Tensor) -> Tensor:
        """Cosine similarities ``(N_text, N_video)``.

        Args:
            text_emb: ``(N_text, D)`` normalised.
            video_emb: ``(N_video, D)`` normalised, or ``(N_video, T, D)`` per-frame
                normalised; then the score is the mean over frames of the per-frame
                cosine similarities. Because that mean is linear, it equals the dot
                product with the (unnormalised) mean of the frame embeddings, which is
                how it is computed (memory ``O(N_video * D)``, not ``O(N_text * N_video * T)``).
        """
        if video_emb.dim() == 3:
            video_emb = video_emb.mean(dim=1)
        elif video_emb.dim() != 2:
            raise ValueError(f"video_emb must be (N, D) or (N, T, D), got shape {tuple(video_emb.shape)}")
        if text_emb.dim() != 2 or text_emb.shape[-1] != video_emb.shape[-1]:
            raise ValueError(f"text_emb must be (N, {video_emb.shape[-1]}), got shape {tuple(text_emb.shape)}")
        return text_emb @ video_emb.to(text_emb.dtype).t()

    def forward(self, video: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """``(encode_video(video), encode_text(tokens))`` in one call (what DDP wraps)."""
        return self.encode_video(video), self.encode_text(tokens)


def create_dual_encoder(config: DualEncoderConfig | Mapping[str, Any]) -> DualEncoder:
    """Build a :class:`DualEncoder` from a config or its dict form, loading any pretrained files it names."""
    if not isinstance(config, DualEncoderConfig):
        config = DualEncoderConfig.from_dict(config)
    model = DualEncoder(config)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("built dual encoder: %s tower %s (%d frames, %d px), pooling %s, embed %d, %.2fM parameters",
                config.video_tower, config.video_encoder, config.num_frames, config.img_size,
                config.pooling, config.embed_dim, n_params / 1e6)
    return model


__all__ = ["POOLINGS", "RESIZE_MODES", "VIDEO_TOWERS", "DualEncoder", "DualEncoderConfig", "Pooling", "VideoTower", "create_dual_encoder"]
