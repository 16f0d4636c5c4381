"""Depthwise causal 1-D convolution, the short convolution in front of every scan."""

from __future__ import annotations

import functools
import logging
from typing import Callable, Optional

import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _causal_conv1d_cuda() -> Optional[Callable]:
    """The optional `causal-conv1d` package's fused kernel, or None."""
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception as err:
        logger.debug("causal-conv1d unavailable: %s", err)
        return None
    return causal_conv1d_fn


def causal_conv1d(x: Tensor, weight: Tensor, bias: Optional[Tensor], silu: bool = True) -> Tensor:
    """y[:, c, t] = act(bias[c] + sum_k weight[c, k] * x[:, c, t - (K-1) + k]), zeros before t=0.

    x: (batch, channels, length); weight: (channels, K) or (channels, 1, K);
    returns a contiguous (batch, channels, length) tensor in x's dtype.
    Uses the fused `causal-conv1d` kernel on CUDA when installed, else one
    `F.conv1d` call on a left-padded input (the output comes out contiguous,
    no slice-and-copy of a symmetric padding).
    """
    w = weight.reshape(weight.shape[0], -1)
    width = w.shape[1]
    fused = _causal_conv1d_cuda() if x.is_cuda else None
    if fused is not None and 2 <= width <= 4:
        return fused(x, w.to(x.dtype), None if bias is None else bias.to(x.dtype), "silu" if silu else None)
    y = F.conv1d(F.pad(x, (width - 1, 0)), w.unsqueeze(1).to(x.dtype),
                 None if bias is None else bias.to(x.dtype), groups=x.shape[1])
    return F.silu(y) if silu else y
