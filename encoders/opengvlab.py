"""OpenGVLab's released VideoMamba weights: finding the files and reading their keys.

Two families of checkpoints are published in the Hugging Face repository
``OpenGVLab/VideoMamba`` (REFERENCE.md section 1):

* classification (``videomamba_{t,s,m}16_{in1k,k400,ssv2,...}_...res224.pth``): the
  backbone with the parameter names of :class:`encoders.VideoMamba` (``norm_f``,
  ``head``); ImageNet ones are image models (2-D patch kernel, no
  ``temporal_pos_embedding``).
* retrieval (``videomamba_m16_{5M,17M,25M}_f8_res224.pth``, UMT style): the backbone
  under ``vision_encoder.`` (final norm ``norm``, plus ``pool_norm``, and
  ``clip_decoder.*`` alignment heads), a BERT-base under ``text_encoder.bert.`` whose
  layers from the fusion layer on (9-11) also cross-attend to video, an MLM head
  ``text_encoder.cls.*``, ``vision_proj``, ``text_proj``, ``temp``, ``itm_head`` and the
  CLIP teacher ``clip_teacher.*``.

This module knows only those layouts and this package's encoders; assembling a
retrieval model lives in ``encoders.convert`` (``encoders`` never imports
``training``).

    path = resolve_checkpoint("videomamba_t16_k400_f8_res224")  # local file, cache or hub
    model = create_pretrained_video_encoder(path, num_frames=16, keep_head=False)

Nothing is downloaded unless ``resolve_checkpoint`` is given a hub file name, is
allowed to download and the machine is online.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
from torch import Tensor

from .factory import create_video_encoder
from .models.videomamba import VideoMamba, checkpoint_filter_fn

logger = logging.getLogger(__name__)

HUB_REPO = "OpenGVLab/VideoMamba"
WEIGHTS_ENV = "MAMBASEARCH_WEIGHTS"


@dataclass(frozen=True)
class RetrievalAnchor:
    """OpenGVLab's published zero-shot MSR-VTT 1k-A numbers for one retrieval checkpoint
    (after re-ranking the top 128 with their cross-attention matcher)."""

    pairs: str
    t2v: tuple[float, float, float]
    v2t_r1: float


RETRIEVAL_CHECKPOINTS: dict[str, RetrievalAnchor] = {
    "videomamba_m16_5M_f8_res224": RetrievalAnchor("5M", (32.0, 53.1, 63.6), 28.2),
    "videomamba_m16_17M_f8_res224": RetrievalAnchor("17M", (34.7, 58.9, 68.0), 29.5),
    "videomamba_m16_25M_f8_res224": RetrievalAnchor("25M", (35.6, 58.1, 69.5), 29.1),
}

# Classification (and masked-pretraining) file names of the model zoo.
CLASSIFICATION_NAME = re.compile(
    r"^videomamba_[tsmb]16_(in1k|k400|ssv2|breakfast|coin)(_mask_(ft|pt))?(_f\d+)?_res\d+(to\d+)*$")

_PRESET_BY_WIDTH = {192: "videomamba_tiny", 384: "videomamba_small", 576: "videomamba_middle"}
_LAYER_KEY = re.compile(r"^layers\.(\d+)\.")
_BERT_LAYER_KEY = re.compile(r"^encoder\.layer\.(\d+)\.")


class PretrainedUnavailable(FileNotFoundError):
    """A published checkpoint is neither local nor downloadable now; the message says
    which file to download and where to put it."""


class StateDictMismatch(ValueError):
    """Weights do not fit a model. The message names every missing and unexpected key
    and every tensor of the wrong shape; the lists are kept as attributes."""

    def __init__(self, source: str, missing: list[str], unexpected: list[str],
                 wrong_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
                 describe: Optional[Callable[[str], str]] = None) -> None:
        self.missing, self.unexpected, self.wrong_shape = missing, unexpected, wrong_shape
        name = describe or (lambda key: key)
        parts = []
        if missing:
            parts.append(f"missing ({len(missing)}): {', '.join(map(name, missing))}")
        if unexpected:
            parts.append(f"unexpected ({len(unexpected)}): {', '.join(unexpected)}")
        if wrong_shape:
            parts.append(f"wrong shape ({len(wrong_shape)}): " + ", ".join(
                f"{name(key)} {found} in the checkpoint vs {wanted} in the model" for key, found, wanted in wrong_shape))
        super().__init__(f"{source} does not fit the model: " + "; ".join(parts))


def check_state_dict(state: Mapping[str, Tensor], target: Mapping[str, Tensor], source: str,
                     ignore_unexpected: bool = False, describe: Optional[Callable[[str], str]] = None) -> None:
    """Raise :class:`StateDictMismatch` unless ``state`` has exactly ``target``'s keys and shapes.

    ``target`` may hold meta tensors (only shapes are compared). With
    ``ignore_unexpected`` extra keys are logged as warnings instead of failing.
    ``describe`` annotates a key in the message (e.g. with its name in the checkpoint).
    """
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    wrong = sorted((key, tuple(state[key].shape), tuple(target[key].shape))
                   for key in set(state) & set(target) if tuple(state[key].shape) != tuple(target[key].shape))
    if unexpected and ignore_unexpected:
        logger.warning("%s: ignoring %d unexpected key(s): %s", source, len(unexpected), ", ".join(unexpected))
        unexpected = []
    if missing or unexpected or wrong:
        raise StateDictMismatch(source, missing, unexpected, wrong, describe)


# ------------------------------------------------------------------ finding files


def weights_dir() -> Path:
    """Folder searched for published checkpoints before the hub cache:
    ``$MAMBASEARCH_WEIGHTS``, else the user cache folder ``.../mambasearch/weights``."""
    override = os.environ.get(WEIGHTS_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("mambasearch")) / "weights"


def hub_filename(name: str) -> str:
    """``videomamba_m16_5M_f8_res224`` -> ``videomamba_m16_5M_f8_res224.pth``."""
    return name if name.endswith(".pth") else f"{name}.pth"


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return flag or bool(constants.HF_HUB_OFFLINE)


def _unavailable_message(filename: str, reason: str) -> str:
    return (f"{filename} is not available ({reason}). Download "
            f"https://huggingface.co/{HUB_REPO}/resolve/main/{filename} and pass its path, or put it at "
            f"{weights_dir() / filename} (set {WEIGHTS_ENV} to use another folder).")


def resolve_checkpoint(source: str | os.PathLike[str], download: bool = True,
                       cache_dir: Optional[str | os.PathLike[str]] = None) -> Path:
    """The local file for ``source``.

    Args:
        source: a path to an existing file; or a file name of the ``OpenGVLab/VideoMamba``
            hub repository, with or without ``.pth``.
        download: allow a download through ``huggingface_hub`` (cached in its cache,
            with a progress bar) when the file is in neither :func:`weights_dir` nor that
            cache. Never downloads when ``HF_HUB_OFFLINE`` is set.
        cache_dir: ``huggingface_hub`` cache folder (default: its own).

    Raises:
        FileNotFoundError: ``source`` looks like a path (has a folder part) and is missing.
        PretrainedUnavailable: a hub name that cannot be had now; the message names the
            file, its URL and the folder to put it in.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return path
    text = os.fspath(source)
    if os.sep in text or (os.altsep and os.altsep in text) or path.suffix not in ("", ".pth"):
        raise FileNotFoundError(f"checkpoint file not found: {text}")
    filename = hub_filename(text)
    local = weights_dir() / filename
    if local.is_file():
        return local
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(HUB_REPO, filename, cache_dir=cache_dir)
    if isinstance(cached, str) and Path(cached).is_file():
        return Path(cached)
    if not download:
        raise PretrainedUnavailable(_unavailable_message(filename, "downloads are disabled"))
    if _hub_offline():
        raise PretrainedUnavailable(_unavailable_message(filename, "HF_HUB_OFFLINE is set"))
    from huggingface_hub import hf_hub_download

    logger.info("downloading %s from the hub repository %s", filename, HUB_REPO)
    try:
        return Path(hf_hub_download(HUB_REPO, filename, cache_dir=cache_dir))
    except Exception as error:  # offline, DNS, HTTP 404, interrupted transfer, ...
        reason = f"download failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        raise PretrainedUnavailable(_unavailable_message(filename, reason)) from error


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The state dict in a ``.pth`` file, unwrapped from ``"model"`` / ``"module"`` /
    ``"state_dict"`` and without a DDP ``module.`` prefix; read with ``weights_only=True``
    (memory-mapped when the file allows it).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable state dict of tensors (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from error
    state: Any = raw
    for wrapper in ("model", "module", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping) or not state:
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    bad = sorted(str(key) for key, value in state.items() if not isinstance(value, Tensor))
    if bad:
        raise ValueError(f"{path}: entries that are not tensors: {', '.join(bad)}")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return dict(state)


# -------------------------------------------------------------- video backbone


def is_retrieval_state_dict(state: Mapping[str, Tensor]) -> bool:
    """True for the UMT-style retrieval layout (backbone under ``vision_encoder.``)."""
    return any(key.startswith("vision_encoder.") for key in state)


def video_backbone_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The backbone of a classification or retrieval checkpoint in :class:`VideoMamba`'s names.

    Retrieval layout: keys under ``vision_encoder.`` with ``norm.*`` renamed ``norm_f.*``;
    ``pool_norm``, ``clip_decoder`` and the fixed CLIP position tables are left out, as is
    everything outside ``vision_encoder.``. Classification layout: the keys unchanged
    (``clip_teacher.*`` / ``clip_decoder.*`` of masked-pretraining files left out).
    Positions are not resized here (:func:`encoders.checkpoint_filter_fn` does that).
    """
    out: dict[str, Tensor] = {}
    if is_retrieval_state_dict(state):
        for key, value in state.items():
            if not key.startswith("vision_encoder."):
                continue
            key = key[len("vision_encoder."):]
            if key.startswith(("pool_norm.", "clip_decoder.", "clip_pos_embed", "clip_img_pos_embed")):
                continue
            out["norm_f." + key[len("norm."):] if key.startswith("norm.") else key] = value
        return out
    for key, value in state.items():
        if key.startswith(("clip_teacher.", "clip_decoder.", "clip_pos_embed", "clip_img_pos_embed")):
            continue
        out[key] = value
    return out


def infer_video_config(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """:class:`encoders.VideoMambaConfig` fields read off a backbone state dict (our names):
    ``embed_dim``, ``depth``, ``patch_size``, ``tubelet_size``, ``img_size``,
    ``num_frames`` (1 for an image checkpoint), ``d_state``, ``d_conv``, ``expand``,
    ``num_classes`` (0 without a head).

    Raises:
        ValueError: a tensor needed to read a size is missing (named).
    """
    needed = ("cls_token", "pos_embed", "patch_embed.proj.weight", "layers.0.mixer.A_log",
              "layers.0.mixer.in_proj.weight", "layers.0.mixer.conv1d.weight")
    absent = [key for key in needed if key not in state]
    if absent:
        raise ValueError(f"not a VideoMamba backbone state dict: missing {', '.join(absent)}")
    embed_dim = int(state["cls_token"].shape[-1])
    patch = state["patch_embed.proj.weight"]
    tubelet = 1 if patch.dim() == 4 else int(patch.shape[2])
    patch_size = int(patch.shape[-1])
    positions = int(state["pos_embed"].shape[1]) - 1
    grid = int(round(math.sqrt(positions)))
    if grid * grid != positions:
        raise ValueError(f"pos_embed holds {positions} positions, not a square grid")
    temporal = state.get("temporal_pos_embedding")
    d_inner = int(state["layers.0.mixer.in_proj.weight"].shape[0]) // 2
    head = state.get("head.weight")
    return dict(
        embed_dim=embed_dim,
        depth=1 + max(int(m.group(1)) for m in map(_LAYER_KEY.match, state) if m),
        patch_size=patch_size,
        tubelet_size=tubelet,
        img_size=grid * patch_size,
        num_frames=int(temporal.shape[1]) * tubelet if temporal is not None else 1,
        d_state=int(state["layers.0.mixer.A_log"].shape[1]),
        d_conv=int(state["layers.0.mixer.conv1d.weight"].shape[-1]),
        expand=d_inner // embed_dim,
        num_classes=int(head.shape[0]) if head is not None else 0,
    )


def video_preset(embed_dim: int) -> str:
    """The registry name for a backbone width (VideoMamba-Ti/S/M; others: Ti plus overrides)."""
    return _PRESET_BY_WIDTH.get(embed_dim, "videomamba_tiny")


def adapt_video_state(state: Mapping[str, Tensor], model: VideoMamba) -> dict[str, Tensor]:
    """A backbone state dict (our names) made to fit ``model``: positions interpolated,
    a 2-D patch kernel inflated, a misfit head dropped (:func:`checkpoint_filter_fn`),
    and a missing ``temporal_pos_embedding`` (image checkpoint) set to zeros, which is
    how a video model starts. Anything else missing stays missing."""
    image = "temporal_pos_embedding" not in state
    out = checkpoint_filter_fn(dict(state), model)
    target = model.state_dict()
    if image and "temporal_pos_embedding" in target:
        out["temporal_pos_embedding"] = torch.zeros_like(target["temporal_pos_embedding"], device="cpu")
        logger.info("image checkpoint: temporal_pos_embedding starts at zero")
    return out


def load_video_backbone(model: VideoMamba, source: str | os.PathLike[str], download: bool = True,
                        strict: bool = True) -> None:
    """Load an OpenGVLab checkpoint (classification, image or the backbone of a retrieval
    one; a path or a hub file name) into ``model`` with :func:`adapt_video_state`.

    Raises:
        StateDictMismatch: naming every missing/unexpected key and wrong shape
            (``strict=False``: unexpected keys are only logged).
        FileNotFoundError / PretrainedUnavailable / ValueError: see :func:`resolve_checkpoint`
            and :func:`read_state_dict`.
    """
    path = resolve_checkpoint(source, download=download)
    state = adapt_video_state(video_backbone_state(read_state_dict(path)), model)
    check_state_dict(state, model.state_dict(), str(path), ignore_unexpected=not strict)
    model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()}, strict=True)
    logger.info("loaded VideoMamba backbone weights from %s", path)


def create_pretrained_video_encoder(source: str | os.PathLike[str], num_frames: Optional[int] = None,
                                    img_size: Optional[int] = None, keep_head: bool = True,
                                    download: bool = True, **overrides: Any) -> VideoMamba:
    """A :class:`VideoMamba` whose architecture is read off an OpenGVLab checkpoint, loaded.

    Args:
        source: a file or a hub file name (:func:`resolve_checkpoint`).
        num_frames, img_size: input size of the model (default: the checkpoint's; 8 frames
            for an image checkpoint). Positions are interpolated to fit.
        keep_head: keep the classification head (False: ``num_classes=0``, features out).
        overrides: further :class:`encoders.VideoMambaConfig` fields (drop_path_rate, ...).
    """
    path = resolve_checkpoint(source, download=download)
    backbone = video_backbone_state(read_state_dict(path))
    fields = infer_video_config(backbone)
    if fields["num_frames"] == 1 and "temporal_pos_embedding" not in backbone:
        fields["num_frames"] = 8
    fields["num_frames"] = num_frames or fields["num_frames"]
    fields["img_size"] = img_size or fields["img_size"]
    if not keep_head:
        fields["num_classes"] = 0
    fields.update(overrides)
    model = create_video_encoder(video_preset(fields["embed_dim"]), **fields)
    state = adapt_video_state(backbone, model)
    check_state_dict(state, model.state_dict(), str(path))
    model.load_state_dict(state, strict=True)
    logger.info("loaded %s: %d-wide, %d layers, %d frames at %d px, %s", path, fields["embed_dim"],
                fields["depth"], fields["num_frames"], fields["img_size"],
                f"{fields['num_classes']}-way head" if fields["num_classes"] else "no head")
    return model


# -------------------------------------------------------------- retrieval layout


@dataclass
class RetrievalParts:
    """A retrieval checkpoint split by destination (see :func:`split_retrieval_state_dict`).

    Attributes:
        video: backbone tensors in :class:`VideoMamba` names (``norm`` -> ``norm_f``).
        pool_norm: ``weight``, ``bias`` of the LayerNorm after pooling.
        bert: ``transformers.BertModel`` names (``embeddings.*``, ``encoder.layer.N.*``)
            for the text-only layers ``N < text_layers``.
        projections: ``vision_proj.*``, ``text_proj.*`` and ``temp``.
        ignored: keys deliberately left out, by reason.
        unexpected: keys this layout does not know (an error unless loading non-strictly).
        text_layers: how many BERT layers ``bert`` holds.
        text_prefix: the checkpoint's prefix of the BERT keys (``text_encoder.bert.``).
    """

    video: dict[str, Tensor] = field(default_factory=dict)
    pool_norm: dict[str, Tensor] = field(default_factory=dict)
    bert: dict[str, Tensor] = field(default_factory=dict)
    projections: dict[str, Tensor] = field(default_factory=dict)
    ignored: dict[str, list[str]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    text_layers: int = 0
    text_prefix: str = "text_encoder.bert."


_TEXT_PREFIXES = ("text_encoder.bert.", "text_encoder.")
_IGNORED_PREFIXES = {
    "clip_teacher.": "CLIP teacher (pretraining only)",
    "vision_encoder.clip_decoder.": "CLIP alignment decoder (pretraining only)",
    "vision_encoder.clip_pos_embed": "CLIP alignment positions (pretraining only)",
    "vision_encoder.clip_img_pos_embed": "CLIP alignment positions (pretraining only)",
    "itm_head.": "video-text matching head (re-ranker)",
    "text_encoder.cls.": "masked-language-model head (pretraining only)",
}


def bert_fusion_layer(bert: Mapping[str, Tensor]) -> int:
    """The first BERT layer with cross-attention (BertModel names); all layers when none has it."""
    layers = {int(m.group(1)) for m in map(_BERT_LAYER_KEY.match, bert) if m}
    fused = {int(m.group(1)) for key, m in ((k, _BERT_LAYER_KEY.match(k)) for k in bert)
             if m and ".crossattention." in key}
    return min(fused) if fused else (max(layers) + 1 if layers else 0)


def split_retrieval_state_dict(state: Mapping[str, Tensor], text_layers: Optional[int] = None) -> RetrievalParts:
    """Sort the keys of a UMT-style VideoMamba retrieval checkpoint by destination.

    The text tower may sit under ``text_encoder.bert.`` (pretraining's BertForMaskedLM)
    or directly under ``text_encoder.`` (fine-tuning's BertModel). BERT layers from
    ``text_layers`` on (default: the first cross-attention layer, 9 for their models)
    belong to the video-text matcher and are ignored, as are the pooler, the
    ``position_ids`` buffer, the MLM and matching heads, the CLIP teacher and decoders.
    """
    parts = RetrievalParts()
    text_prefix = next((p for p in _TEXT_PREFIXES if any(k.startswith(p + "embeddings.") for k in state)), None)
    bert_all = ({k[len(text_prefix):]: v for k, v in state.items()
                 if k.startswith(text_prefix) and not k.startswith("text_encoder.cls.")}
                if text_prefix else {})
    parts.text_layers = bert_fusion_layer(bert_all) if text_layers is None else int(text_layers)
    parts.text_prefix = text_prefix or parts.text_prefix

    def ignore(key: str, reason: str) -> None:
        parts.ignored.setdefault(reason, []).append(key)

    for key, value in state.items():
        reason = next((r for p, r in _IGNORED_PREFIXES.items() if key.startswith(p)), None)
        if reason is not None:
            ignore(key, reason)
        elif key.startswith("vision_encoder.pool_norm."):
            parts.pool_norm[key[len("vision_encoder.pool_norm."):]] = value
        elif key.startswith("vision_encoder."):
            continue  # collected below
        elif key.startswith(("vision_proj.", "text_proj.")) or key == "temp":
            parts.projections[key] = value
        elif text_prefix and key.startswith(text_prefix):
            name = key[len(text_prefix):]
            layer = _BERT_LAYER_KEY.match(name)
            if name.endswith(("position_ids", "token_type_ids")) and name.startswith("embeddings."):
                ignore(key, "BERT index buffer (rebuilt)")
            elif name.startswith("pooler."):
                ignore(key, "BERT pooler (unused: the [CLS] hidden state is the feature)")
            elif layer and int(layer.group(1)) >= parts.text_layers:
                ignore(key, f"BERT layers {parts.text_layers}+ (cross-attention matcher)")
            else:
                parts.bert[name] = value
        else:
            parts.unexpected.append(key)
    parts.video = video_backbone_state(state)
    return parts


def infer_bert_sizes(bert: Mapping[str, Tensor]) -> dict[str, int | float]:
    """BERT sizes from BertModel-named tensors: ``width``, ``vocab_size``,
    ``max_positions``, ``type_vocab_size``, ``mlp_ratio``. (The head count is not stored.)"""
    needed = ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
              "embeddings.token_type_embeddings.weight", "encoder.layer.0.intermediate.dense.weight")
    absent = [key for key in needed if key not in bert]
    if absent:
        raise ValueError(f"no BERT text encoder found: missing {', '.join(absent)}")
    vocab_size, width = bert["embeddings.word_embeddings.weight"].shape
    return dict(
        width=int(width), vocab_size=int(vocab_size),
        max_positions=int(bert["embeddings.position_embeddings.weight"].shape[0]),
        type_vocab_size=int(bert["embeddings.token_type_embeddings.weight"].shape[0]),
        mlp_ratio=bert["encoder.layer.0.intermediate.dense.weight"].shape[0] / width,
    )


__all__ = [
    "CLASSIFICATION_NAME",
    "HUB_REPO",
    "RETRIEVAL_CHECKPOINTS",
    "PretrainedUnavailable",
    "RetrievalAnchor",
    "RetrievalParts",
    "StateDictMismatch",
    "adapt_video_state",
    "bert_fusion_layer",
    "check_state_dict",
    "create_pretrained_video_encoder",
    "hub_filename",
    "infer_bert_sizes",
    "infer_video_config",
    "is_retrieval_state_dict",
    "load_video_backbone",
    "read_state_dict",
    "resolve_checkpoint",
    "split_retrieval_state_dict",
    "video_backbone_state",
    "video_preset",
    "weights_dir",
]
