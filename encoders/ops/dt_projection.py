"""The mixer's dt: dt_proj of the low-rank x_proj rows, plus bias, through softplus.

    dt = softplus(weight @ dt_low + bias)      (batch, dim, length)

with dt_low (batch, rank, length) the first ``rank`` rows of x_proj's output.
Mamba runs dt_proj as a GEMM and leaves the bias and the softplus to the scan,
which then computes a softplus (two special-function instructions and a dozen
others) for every (position, channel) of each direction: 6-7 % of the
Gluon forward's time at VideoMamba-Ti and -S widths on an H100
(docs/benchmarks.md). In inference the mixer instead calls
:func:`softplus_dt_projection_pair`, one Triton kernel for both directions that
ends in the bias and the softplus, and scans with ``delta_softplus=False``.

Rounding: the product, bias and softplus are float32 and dt is rounded once,
to dt_low's dtype. (The GEMM path rounds the pre-softplus value instead, whose
error softplus passes on scaled by |x| sigmoid(x) / softplus(x); rounding dt
itself is never less accurate.) Without CUDA, or where autograd needs the
graph, the same computation runs as PyTorch ops.
"""

from __future__ import annotations

import os
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

#: Channels and positions a program covers (four warps): the fastest of eight tiles on an H100
#: at VideoMamba-Ti and -S widths, 8 and 64 frames (docs/benchmarks.md).
_BLOCK_D = 32
_BLOCK_L = 128

#: One direction's (dt_low, weight, bias): (batch, rank, length), (dim, rank), (dim,).
DtInputs = tuple[Tensor, Tensor, Tensor]


if triton is not None:

    from .triton_softplus import softplus

    @triton.jit
    def _softplus_dt_kernel(
        low_f, w_f, bias_f, out_f, low_b, w_b, bias_b, out_b,
        dim, rank, length, s_lb, s_lr,
        RANK_PAD: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, IEEE_DOT: tl.constexpr,
        FAST_LOG: tl.constexpr,
    ):
        """Grid (channel blocks, position blocks, batch x directions: the
        forward direction at even indices). dt_low rows of stride ``s_lr``,
        batch stride ``s_lb`` (the same for both directions), unit stride along
        length; weights (dim, rank) and outputs (batch, dim, length) contiguous."""
        d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
        pos = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
        b = (tl.program_id(2) // 2).to(tl.int64)
        forward = tl.program_id(2) % 2 == 0
        low_ptr = tl.where(forward, low_f, low_b)
        w_ptr = tl.where(forward, w_f, w_b)
        bias_ptr = tl.where(forward, bias_f, bias_b)
        out_ptr = tl.where(forward, out_f, out_b)
        r = tl.arange(0, RANK_PAD)
        low = tl.load(low_ptr + b * s_lb + r[:, None] * s_lr + pos[None, :],
                      mask=(r < rank)[:, None] & (pos < length)[None, :], other=0.0)  # (RANK_PAD, BLOCK_L)
        w = tl.load(w_ptr + d[:, None] * rank + r[None, :], mask=(d < dim)[:, None] & (r < rank)[None, :],
                    other=0.0)  # (BLOCK_D, RANK_PAD)
        acc = tl.dot(w.to(low.dtype), low, input_precision="ieee" if IEEE_DOT else "tf32")
        acc += tl.load(bias_ptr + d, mask=d < dim, other=0.0).to(tl.float32)[:, None]
        tl.store(out_ptr + (b * dim + d[:, None]) * length + pos[None, :],
                 softplus(acc, FAST_LOG).to(out_ptr.dtype.element_ty),
                 mask=(d < dim)[:, None] & (pos < length)[None, :])


def softplus_dt_projection_reference(dt_low: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """:func:`softplus_dt_projection_pair` for one direction as PyTorch ops (float32, any device, autograd)."""
    out = torch.matmul(weight.float(), dt_low.float()) + bias.float()[:, None]
    return F.softplus(out).to(dt_low.dtype)


def _check(name: str, inputs: DtInputs, like: Optional[DtInputs] = None) -> None:
    dt_low, weight, bias = inputs
    if dt_low.dim() != 3 or weight.dim() != 2 or weight.shape[1] != dt_low.shape[1] or bias.shape != weight.shape[:1]:
        raise ValueError(f"softplus_dt_projection: {name} dt_low {tuple(dt_low.shape)}, weight "
                         f"{tuple(weight.shape)} and bias {tuple(bias.shape)} do not fit")
    if like is not None and (dt_low.shape != like[0].shape or weight.shape != like[1].shape
                             or dt_low.stride() != like[0].stride() or dt_low.dtype != like[0].dtype):
        raise ValueError("softplus_dt_projection: the two directions' shapes, strides or dtypes differ")


def softplus_dt_projection_pair(forward: DtInputs, backward: DtInputs) -> tuple[Tensor, Tensor]:
    """dt = softplus(weight @ dt_low + bias) of both directions, one Triton
    launch on CUDA without autograd (PyTorch ops otherwise).

    Each direction is (dt_low (batch, rank, length), weight (dim, rank), bias
    (dim,)); dt_low may be a view with any batch and row strides (x_proj's
    output rows) but needs unit stride along length, and both directions must
    share shapes, strides and dtype. Returns two contiguous (batch, dim,
    length) tensors in dt_low's dtype (module doc: float32 inside, one rounding)."""
    _check("forward", forward)
    _check("backward", backward, like=forward)
    tensors = (*forward, *backward)
    if (triton is None or not forward[0].is_cuda or needs_autograd(*tensors) or forward[0].stride(-1) != 1):
        return (softplus_dt_projection_reference(*forward), softplus_dt_projection_reference(*backward))
    return _launch(forward, backward)


def _launch(forward: DtInputs, backward: DtInputs) -> tuple[Tensor, Tensor]:
    """The Triton kernel on the inputs' device (CUDA, or the CPU under TRITON_INTERPRET=1)."""
    low_f, w_f, bias_f = forward
    low_b, w_b, bias_b = backward
    batch, rank, length = low_f.shape
    dim = w_f.shape[0]
    out_f = torch.empty(batch, dim, length, device=low_f.device, dtype=low_f.dtype)
    out_b = torch.empty_like(out_f)
    grid = (triton.cdiv(dim, _BLOCK_D), triton.cdiv(length, _BLOCK_L), 2 * batch)
    _softplus_dt_kernel[grid](
        low_f, w_f.contiguous(), bias_f.contiguous(), out_f, low_b, w_b.contiguous(), bias_b.contiguous(), out_b,
        dim, rank, length, low_f.stride(0), low_f.stride(1),
        RANK_PAD=max(16, triton.next_power_of_2(rank)), BLOCK_D=_BLOCK_D, BLOCK_L=_BLOCK_L,
        IEEE_DOT=low_f.dtype == torch.float32, FAST_LOG=os.environ.get("TRITON_INTERPRET") != "1")
    return out_f, out_b


__all__ = ["softplus_dt_projection_pair", "softplus_dt_projection_reference"]
