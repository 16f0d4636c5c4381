"""A linear layer from channel-major activations to token-major output: the mixer's out_proj.

``channel_major_linear(y, weight, bias)`` takes y (batch, in_features, length),
as the scan leaves it, and returns (batch, length, out_features) =
y^T @ weight^T + bias, as the residual stream holds it, with no transposed copy
of y. The mixer used to run it as ``torch.bmm`` of the transposed view with a
broadcast weight; cuBLAS ran that at 13-21 % of its memory-traffic floor on an
H100 (93-111 us a layer at VideoMamba-Ti; docs/benchmarks.md). On CUDA without
autograd a Triton kernel does it; elsewhere the bmm runs, with the same result
up to the order of the float32 accumulation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .autograd import needs_autograd

try:  # Triton ships with CUDA builds of PyTorch; CPU-only installs lack it.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None


@dataclass(frozen=True)
class ChannelMajorLinearConfig:
    """Tile of the kernel: ``block_t`` tokens and ``block_n`` output features a
    program, ``block_k`` input features per step; warps and pipeline stages."""

    block_t: int = 128
    block_n: int = 64
    block_k: int = 64
    num_warps: int = 4
    num_stages: int = 3

    @staticmethod
    def for_problem(row_stride: int, out_features: int) -> "ChannelMajorLinearConfig":
        """The best tile of ``benchmarks/mixer_ops_speed.py --tiles`` on an H100
        for y rows of this stride and this many output features: Triton
        vectorises loads of rows that start at multiples of 16 elements, and
        compiles another pipeline for them; there, up to 256 features (Ti's
        192) are best done by one program, which reads its tile of y once
        (1.1-1.25x the 128 x 128 tile), and more (S's 384) by 128 at a time."""
        if row_stride % 16:
            return ChannelMajorLinearConfig()
        if out_features <= 256:
            return ChannelMajorLinearConfig(block_t=64, block_n=256, block_k=64, num_warps=8)
        return ChannelMajorLinearConfig(block_t=128, block_n=128, block_k=64, num_warps=8)


if triton is not None:

    @triton.jit
    def _channel_major_linear_kernel(
        y_ptr, w_ptr, bias_ptr, out_ptr, in_features, out_features, length, s_yb, s_yk,
        HAS_BIAS: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
        IEEE_DOT: tl.constexpr,
    ):
        """Grid (output-feature blocks, token blocks, batch): the feature block
        varies fastest, so the programs that read one tile of y run together
        and it comes from L2 after the first. y: (batch, in, length) with unit
        stride along length; w (out, in) contiguous; out (batch, length, out)
        contiguous."""
        n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
        b = tl.program_id(2).to(tl.int64)
        precision: tl.constexpr = "ieee" if IEEE_DOT else "tf32"
        acc = tl.zeros([BLOCK_T, BLOCK_N], tl.float32)
        for k0 in range(0, in_features, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            y = tl.load(y_ptr + b * s_yb + k[:, None] * s_yk + t[None, :],
                        mask=(k < in_features)[:, None] & (t < length)[None, :], other=0.0)  # (K, T)
            w = tl.load(w_ptr + n[None, :] * in_features + k[:, None],
                        mask=(k < in_features)[:, None] & (n < out_features)[None, :], other=0.0)  # (K, N)
            acc = tl.dot(tl.trans(y), w.to(y.dtype), acc, input_precision=precision)
        if HAS_BIAS:
            acc += tl.load(bias_ptr + n, mask=n < out_features, other=0.0).to(tl.float32)[None, :]
        tl.store(out_ptr + (b * length + t[:, None]) * out_features + n[None, :], acc.to(out_ptr.dtype.element_ty),
                 mask=(t < length)[:, None] & (n < out_features)[None, :])


def channel_major_linear_reference(y: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """:func:`channel_major_linear` as one batched GEMM reading y^T in place (autograd, any device)."""
    out = torch.bmm(y.transpose(1, 2), weight.t().expand(y.shape[0], -1, -1))
    return out if bias is None else out + bias


def _launch(y: Tensor, weight: Tensor, bias: Optional[Tensor],
            config: Optional[ChannelMajorLinearConfig] = None) -> Tensor:
    """The Triton kernel on y's device (CUDA, or the CPU under TRITON_INTERPRET=1)."""
    batch, in_features, length = y.shape
    config = config or ChannelMajorLinearConfig.for_problem(y.stride(1), weight.shape[0])
    out_features = weight.shape[0]
    out = torch.empty(batch, length, out_features, device=y.device, dtype=y.dtype)
    weight = weight.contiguous()
    grid = (triton.cdiv(out_features, config.block_n), triton.cdiv(length, config.block_t), batch)
    _channel_major_linear_kernel[grid](
        y, weight, bias if bias is not None else weight, out, in_features, out_features, length,
        y.stride(0), y.stride(1), HAS_BIAS=bias is not None, BLOCK_T=config.block_t, BLOCK_N=config.block_n,
        BLOCK_K=config.block_k, IEEE_DOT=y.dtype == torch.float32, num_warps=config.num_warps,
        num_stages=config.num_stages)
    return out


def channel_major_linear(y: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                         config: Optional[ChannelMajorLinearConfig] = None) -> Tensor:
    """y (batch, in_features, length), weight (out_features, in_features), bias
    (out_features,) or None -> (batch, length, out_features) in y's dtype.
    ``config``: the kernel's tile (default :meth:`ChannelMajorLinearConfig.for_problem`)."""
    if y.dim() != 3 or weight.dim() != 2 or weight.shape[1] != y.shape[1]:
        raise ValueError(f"channel_major_linear: y {tuple(y.shape)} does not fit weight {tuple(weight.shape)}")
    if triton is None or not y.is_cuda or needs_autograd(y, weight, bias) or y.stride(-1) != 1:
        return channel_major_linear_reference(y, weight, bias)
    return _launch(y, weight, bias, config)
