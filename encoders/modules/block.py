"""Pre-norm residual block around a mixer, Mamba style (add -> norm -> mixer)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..ops.rms_norm import add_rms_norm, rms_norm
from .bimamba import TokenLayout


class RMSNorm(nn.Module):
    """Root-mean-square norm with a weight and no bias.

    Statistics are computed in float32 whatever the input dtype, and the
    output takes the weight's dtype (or the autocast dtype is left to the next
    layer), so a float32 residual stream feeds bf16 weights without an extra
    round trip through bf16."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps)


class DropPath(nn.Module):
    """Stochastic depth: zero a whole sample's branch with probability ``p`` in training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MambaBlock(nn.Module):
    """residual <- residual + drop_path(hidden); hidden <- mixer(norm(residual)).

    Returns (hidden, residual); the residual stream is kept in float32 so that
    24+ layers of bf16 additions do not lose precision. The first block gets
    ``residual=None`` and starts the stream from its input.
    """

    def __init__(self, dim: int, mixer: nn.Module, drop_path: float = 0.0, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.mixer = mixer
        self.norm = RMSNorm(dim, eps=norm_eps)
        self.drop_path = DropPath(drop_path)

    def forward(
        self, hidden: Tensor, residual: Optional[Tensor], layout: Optional[TokenLayout] = None
    ) -> tuple[Tensor, Tensor]:
        if residual is not None:
            hidden = self.drop_path(hidden)
        # One fused pass in inference (encoders.ops.rms_norm); PyTorch ops under
        # autograd. It writes the mixer's input padded as the mixer runs it.
        padded_length = getattr(self.mixer, "padded_length", None)
        if padded_length is None:
            normed, residual = add_rms_norm(hidden, residual, self.norm.weight, self.norm.eps)
            return self.mixer(normed, layout), residual
        length = hidden.shape[1]
        normed, residual = add_rms_norm(hidden, residual, self.norm.weight, self.norm.eps,
                                        padded_length=padded_length(hidden))
        return self.mixer(normed, layout, length=length), residual
