"""What a training checkpoint must hold to resume exactly: progress, data position and RNG.

RNG states are captured per rank (python ``random``, numpy's global generator, torch CPU
and every CUDA device) as plain values that ``torch.load(weights_only=True)`` reads back.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
import torch


@dataclass
class TrainProgress:
    """Where the run is.

    Attributes:
        step: optimiser steps done.
        epoch: current data epoch.
        batch: batches of ``epoch`` already consumed (the next one has this index).
    """

    step: int = 0
    epoch: int = 0
    batch: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainProgress":
        return cls(int(values["step"]), int(values["epoch"]), int(values["batch"]))


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """This process's RNG states as weights-only-loadable values."""
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(position), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((str(kind), np.asarray(keys.numpy(), dtype=np.uint32), int(position), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = list(state["cuda"])
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


__all__ = ["TrainProgress", "capture_rng_state", "restore_rng_state", "seed_everything"]
