"""Whether autograd would record an op: what picks between a fused inference kernel and differentiable ops."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def needs_autograd(*tensors: Optional[Tensor]) -> bool:
    """True when grad mode is on and any of ``tensors`` (None allowed) requires grad."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
