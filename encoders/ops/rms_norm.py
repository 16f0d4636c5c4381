"""Residual add + RMSNorm in one pass: the pre-norm step in front of every mixer.

``add_rms_norm(hidden, residual, weight, eps)`` returns ``(normed, residual_out)``:

- ``residual_out = residual + hidden`` in float32 (``hidden`` alone when
  ``residual`` is None), the stream the next block adds onto;
- ``normed = residual_out * rsqrt(mean(residual_out ** 2, -1) + eps) * weight``,
  statistics in float32, returned in ``weight``'s dtype; with ``padded_length``,
  in a (..., padded_length, width) tensor whose rows after the sequence are
  zero (the mixer's inference runs on sequences padded to aligned rows).

On CUDA, when no gradient is needed (inference, indexing), a Triton kernel
reads each input once and writes each output once. PyTorch's ops for the same
(add, cast, pow, mean, rsqrt, two multiplies, cast) each read and write the
float32 stream: about 16 % of VideoMamba-Ti inference at 64 frames on an H100
(docs/benchmarks.md). Elsewhere, and whenever autograd needs the graph, the
same computation runs as PyTorch ops.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .autograd import needs_autograd

try:  # Triton ships with CUDA builds of PyTorch; CPU-only installs lack it.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

#: Rows a program normalises (VideoMamba widths are 192-768 columns).
_BLOCK_ROWS = 16


if triton is not None:

    @triton.jit
    def _add_rms_norm_kernel(
        hidden_ptr, residual_ptr, weight_ptr, normed_ptr, residual_out_ptr, rows, width, eps, length, padding,
        HAS_RESIDUAL: tl.constexpr, STORE_RESIDUAL: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_W: tl.constexpr,
    ):
        """(rows, width) row-major tiles: BLOCK_ROWS rows a program, each whole.
        Rows come in sequences of ``length``; in ``normed`` each sequence is
        followed by ``padding`` rows (not written here)."""
        row = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)[:, None]
        col = tl.arange(0, BLOCK_W)[None, :]
        mask = (row < rows) & (col < width)
        offs = row.to(tl.int64) * width + col
        x = tl.load(hidden_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            x += tl.load(residual_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if STORE_RESIDUAL:
            tl.store(residual_out_ptr + offs, x, mask=mask)
        inv_rms = tl.rsqrt(tl.sum(x * x, axis=1) / width + eps)
        weight = tl.load(weight_ptr + col, mask=col < width, other=0.0).to(tl.float32)
        normed_offs = (row + (row // length) * padding).to(tl.int64) * width + col
        tl.store(normed_ptr + normed_offs, (x * inv_rms[:, None] * weight).to(normed_ptr.dtype.element_ty),
                 mask=mask)


def _fused_path(hidden: Tensor, residual: Optional[Tensor], weight: Tensor) -> bool:
    return (triton is not None and hidden.is_cuda and not needs_autograd(hidden, residual, weight)
            and (residual is None or residual.shape == hidden.shape) and weight.shape == hidden.shape[-1:])


def add_rms_norm_reference(hidden: Tensor, residual: Optional[Tensor], weight: Tensor, eps: float,
                           padded_length: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """:func:`add_rms_norm` as PyTorch ops (autograd, any device)."""
    stream = (hidden if residual is None else residual + hidden).float()
    normed = (stream * torch.rsqrt(stream.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(weight.dtype)
    if padded_length is not None and padded_length != normed.shape[-2]:
        normed = F.pad(normed, (0, 0, 0, padded_length - normed.shape[-2]))
    return normed, stream


def _launch(hidden: Tensor, residual: Optional[Tensor], weight: Tensor, eps: float,
            store_residual: bool, padded_length: Optional[int] = None) -> tuple[Tensor, Optional[Tensor]]:
    width = hidden.shape[-1]
    hidden = hidden.contiguous()
    residual = residual.contiguous() if residual is not None else None
    rows = hidden.numel() // width
    length = hidden.shape[-2]  # callers send 1-D input to the reference
    padded_length = length if padded_length is None else padded_length
    if padded_length < length:
        raise ValueError(f"add_rms_norm: padded_length {padded_length} is shorter than the sequence ({length})")
    normed = torch.empty(*hidden.shape[:-2], padded_length, width, device=hidden.device, dtype=weight.dtype)
    normed[..., length:, :].zero_()
    stream = torch.empty(hidden.shape, device=hidden.device, dtype=torch.float32) if store_residual else None
    _add_rms_norm_kernel[(triton.cdiv(rows, _BLOCK_ROWS),)](
        hidden, residual if residual is not None else hidden, weight.contiguous(), normed,
        stream if stream is not None else normed, rows, width, eps, length, padded_length - length,
        HAS_RESIDUAL=residual is not None, STORE_RESIDUAL=store_residual,
        BLOCK_ROWS=_BLOCK_ROWS, BLOCK_W=triton.next_power_of_2(width), num_warps=4)
    return normed, stream


def add_rms_norm(hidden: Tensor, residual: Optional[Tensor], weight: Tensor, eps: float,
                 padded_length: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """(normed, residual_out) as in the module docstring. ``hidden`` and
    ``residual`` (..., length, width), any float dtypes; ``weight`` (width,);
    ``padded_length`` (>= length) or None: the length of normed's sequences."""
    if not _fused_path(hidden, residual, weight) or hidden.dim() < 2:
        return add_rms_norm_reference(hidden, residual, weight, eps, padded_length)
    return _launch(hidden, residual, weight, eps, store_residual=True, padded_length=padded_length)


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """RMSNorm alone: ``add_rms_norm(x, None, weight, eps)[0]`` without writing the float32 copy of x."""
    if not _fused_path(x, None, weight) or x.dim() < 2:
        return add_rms_norm_reference(x, None, weight, eps)[0]
    return _launch(x, None, weight, eps, store_residual=False)[0]
