"""AdamW parameter groups and the warmup + cosine learning-rate schedule."""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from training.config import OptimConfig

logger = logging.getLogger(__name__)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weight matrices, and everything that must not decay.

    No decay for: 1-D parameters (norm weights, biases, ``D``, the temperature), and the
    names in ``model.no_weight_decay()`` (positional embeddings, cls token, ``A_log``,
    ``D``, ``temp``). Frozen parameters (``requires_grad=False``) are left out.
    """
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name in skip or name.endswith(".bias"):
            no_decay.append(param)
        else:
            decay.append(param)
    logger.info("AdamW groups: %d tensors with weight decay %.3g, %d without",
                len(decay), weight_decay, len(no_decay))
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups` at ``config.lr`` (the scheduler scales it)."""
    return torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr,
                             betas=tuple(config.betas), eps=config.eps)


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based).

    Linear from ``1 / (warmup_steps + 1)`` to 1 over the first ``warmup_steps`` steps,
    then a half cosine from 1 to ``min_ratio`` reached at ``total_steps``.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following :func:`warmup_cosine_factor`; call ``step()`` after each optimiser step."""
    warmup, min_ratio = config.warmup_steps, config.min_lr_ratio
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, total_steps, warmup, min_ratio))


__all__ = ["build_optimizer", "build_scheduler", "parameter_groups", "warmup_cosine_factor"]
