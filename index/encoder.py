"""The model side of the library: load a dual-encoder checkpoint, encode clips and texts.

Vectors stored and searched are the model's retrieval embeddings: for a model with
"per_frame" pooling the mean of the per-frame unit vectors (not renormalised), so
the inner product with a text embedding equals ``DualEncoder.similarity`` exactly
(the score the model was trained and evaluated with); for the other poolings the
unit-norm clip embedding. Texts are unit vectors.

Threads: one :class:`Encoder` may be shared by several threads (the app's searches and
its indexing run use the same loaded model). Every forward pass holds the encoder's
lock, so at most one forward pass runs on the model at a time; a long call
(``encode_clips`` of an indexing batch, ``encode_texts`` of a caption corpus) takes and
releases the lock per batch, so a search waits for at most one batch of the other
thread, never for the whole call.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from data.sampling import SamplingConfig
from index.fingerprint import checkpoint_fingerprint
from index.store import ModelInfo

logger = logging.getLogger(__name__)

#: Where ``--model`` points by default: the demo checkpoint trained on synthetic clips,
#: relative to the source checkout (see :func:`default_model_path`).
DEFAULT_MODEL_PATH = "demo/videomamba_ti_synthetic.pt"


def default_model_path() -> str:
    """The shipped demo model: ``DEFAULT_MODEL_PATH`` if it exists relative to the
    working directory, else resolved against the source checkout, so the
    commands work from any folder."""
    candidate = Path(DEFAULT_MODEL_PATH)
    if candidate.exists():
        return str(candidate.resolve())
    return str(Path(__file__).resolve().parent.parent / candidate)


@dataclass(frozen=True)
class EncoderConfig:
    """Which checkpoint, where it runs, batch sizes.

    Attributes:
        checkpoint: path of a ``encoders.checkpoint.save_model`` file.
        device: "cpu", "cuda", "cuda:1"...; None = CUDA when available.
        batch_size: clips per forward pass; None = 32 on a GPU, 8 on a CPU. On a CPU the
            batch does not change throughput (docs/benchmarks.md: 1.1-1.2 clips/s for 1 to
            16 clips), so a small one keeps memory and the progress steps small.
        text_batch_size: texts per forward pass.
        seek_mode: decoder seek mode for indexing ("exact", or "keyframe": faster, frames up to a GOP early).
    """

    checkpoint: str = DEFAULT_MODEL_PATH
    device: str | None = None
    batch_size: int | None = None
    text_batch_size: int = 256
    seek_mode: str = "exact"


class Encoder:
    """A loaded checkpoint with its input settings; methods return float32 numpy arrays.

    Thread-safe: forward passes are serialised by :attr:`lock` (see the module doc).
    """

    def __init__(self, config: EncoderConfig | None = None) -> None:
        from encoders.checkpoint import load_model

        self.config = config or EncoderConfig()
        path = Path(self.config.checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"model checkpoint not found: {path} (pass --model CKPT)")
        device = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(device)
        #: Clips per forward pass (``config.batch_size`` or the device's default).
        self.batch_size = int(self.config.batch_size or (32 if self.device.type == "cuda" else 8))
        self.model = load_model(path, map_location=self.device)
        cfg = self.model.config
        self.info = ModelInfo(
            fingerprint=checkpoint_fingerprint(path), checkpoint_path=os.path.abspath(path),
            embed_dim=int(cfg.embed_dim), config_json=json.dumps(cfg.to_dict(), sort_keys=True, default=str))
        self.sampling = SamplingConfig(num_frames=int(cfg.num_frames), mode="middle")
        self.transform = cfg.transform_config()  # the model's test preprocessing
        self.context_length = int(getattr(self.model.text, "context_length", 77))
        #: Held during every forward pass; re-entrant so a caller may hold it across several calls.
        self.lock = threading.RLock()
        logger.info("model %s on %s", self.info.describe(), self.device)

    @property
    def embed_dim(self) -> int:
        return self.info.embed_dim

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    @torch.inference_mode()
    def encode_clips(self, clips: torch.Tensor | np.ndarray) -> np.ndarray:
        """``(B, 3, T, H, W)`` normalised clips -> ``(B, D)`` retrieval embeddings (module doc).

        Safe to call from several threads at once (one forward pass at a time, per batch).
        """
        video = torch.as_tensor(clips)
        if video.dim() == 4:
            video = video.unsqueeze(0)
        out: list[np.ndarray] = []
        for start in range(0, video.shape[0], self.batch_size):
            batch = video[start:start + self.batch_size].to(self.device, dtype=torch.float32,
                                                                   non_blocking=True)
            with self.lock, self._autocast():
                emb = self.model.encode_video(batch)
                if emb.dim() == 3:
                    emb = emb.float().mean(dim=1)
                out.append(emb.float().cpu().numpy())
        if not out:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> ``(N, D)`` unit vectors. Safe to call from several threads at once."""
        out: list[np.ndarray] = []
        for start in range(0, len(texts), self.config.text_batch_size):
            tokens = self.model.tokenize(list(texts[start:start + self.config.text_batch_size])).to(self.device)
            with self.lock, self._autocast():
                emb = self.model.encode_text(tokens)
                out.append(emb.float().cpu().numpy())
        if not out:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)


__all__ = ["DEFAULT_MODEL_PATH", "Encoder", "EncoderConfig"]
