"""Depthwise causal 1-D convolution (+ SiLU), the short convolution in front of every scan.

Paths, fastest first:
  * the optional `causal-conv1d` package's CUDA kernel (forward and backward);
  * a Triton kernel for inference on CUDA (no autograd): reads any strided
    input in place, fuses bias and SiLU, writes a contiguous output;
  * ``F.conv1d`` on a padded input (CPU, training without causal-conv1d).

The bidirectional mixer runs both directions' convs (width 4) in one Triton
pass over x: :func:`causal_conv1d_pair_triton` in inference, and
:func:`causal_conv1d_pair`, with a Triton backward, in training on CUDA.

``reverse=True`` gives the anti-causal twin (the causal conv of the reversed
sequence, put back in order) without flipping anything. ``valid_length`` (the
Triton path) treats the input as ending there and writes zeros after it: the
mixer pads sequences to an aligned length (see
:class:`encoders.modules.bimamba.BiMambaMixer`) and needs the padding inert.
"""

from __future__ import annotations

import functools
import logging
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .autograd import needs_autograd

logger = logging.getLogger(__name__)

try:  # Triton ships with CUDA builds of PyTorch; CPU-only installs lack it.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None


@functools.lru_cache(maxsize=1)
def _causal_conv1d_package() -> Optional[Callable]:
    """The optional `causal-conv1d` package's fused kernel, or None."""
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception as err:
        logger.debug("causal-conv1d unavailable: %s", err)
        return None
    return causal_conv1d_fn


if triton is not None:

    @triton.jit
    def _program_row(x_ptr, dim, stride_xb, stride_xd, BLOCK_L: tl.constexpr):
        """Grid (batch * dim, position blocks): the program's row (batch * dim +
        channel), its channel, its positions and the start of its row of x."""
        row = tl.program_id(0)
        d = row % dim
        offs = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
        x_row = x_ptr + (row // dim).to(tl.int64) * stride_xb + d.to(tl.int64) * stride_xd
        return row, d, offs, x_row

    @triton.jit
    def _causal_conv1d_fwd_kernel(
        x_ptr, w_ptr, bias_ptr, out_ptr,
        dim, length, valid_length, stride_xb, stride_xd, stride_xl,
        HAS_BIAS: tl.constexpr, SILU: tl.constexpr, REVERSE: tl.constexpr, WIDTH: tl.constexpr,
        BLOCK_L: tl.constexpr,
    ):
        row, d, offs, x_row = _program_row(x_ptr, dim, stride_xb, stride_xd, BLOCK_L)
        acc = tl.zeros([BLOCK_L], dtype=tl.float32)
        for k in tl.static_range(WIDTH):
            if REVERSE:  # anti-causal: the causal conv of the reversed sequence, read in place
                pos = offs + (WIDTH - 1) - k
            else:
                pos = offs - (WIDTH - 1) + k
            w = tl.load(w_ptr + d * WIDTH + k).to(tl.float32)
            xv = tl.load(x_row + pos * stride_xl, mask=(pos >= 0) & (pos < valid_length), other=0.0)
            acc += w * xv.to(tl.float32)
        if HAS_BIAS:
            acc += tl.load(bias_ptr + d).to(tl.float32)
        if SILU:
            acc = acc * tl.sigmoid(acc)
        acc = tl.where(offs < valid_length, acc, 0.0)
        tl.store(out_ptr + row.to(tl.int64) * length + offs, acc.to(out_ptr.dtype.element_ty), mask=offs < length)

    @triton.jit
    def _quarters(x):
        """The four columns of x (N, 4), each (N,): in-register selects when a
        thread holds whole rows."""
        even, odd = tl.split(tl.reshape(x, [x.shape[0], 2, 2]))
        c0, c2 = tl.split(even)
        c1, c3 = tl.split(odd)
        return c0, c1, c2, c3

    @triton.jit
    def _from_quarters(c0, c1, c2, c3):
        """Inverse of :func:`_quarters`: (N,) x 4 -> (N, 4)."""
        return tl.reshape(tl.join(tl.join(c0, c2), tl.join(c1, c3)), [c0.shape[0], 4])

    @triton.jit
    def _group_tile(x_ptr, dim, stride_xb, stride_xd, BLOCK_L: tl.constexpr):
        """Grid (batch * dim, position blocks) of the pair kernels: the
        program's row (batch * dim + channel), its channel, the start of its
        row of x and its groups' first positions (BLOCK_L / 4,)."""
        row = tl.program_id(0)
        d = row % dim
        x_row = x_ptr + (row // dim).to(tl.int64) * stride_xb + d.to(tl.int64) * stride_xd
        return row, d, x_row, tl.program_id(1) * BLOCK_L + 4 * tl.arange(0, BLOCK_L // 4)

    @triton.jit
    def _taps(w_ptr, d):
        """Channel d's four taps of a (dim, 4) weight, float32."""
        return (tl.load(w_ptr + d * 4).to(tl.float32), tl.load(w_ptr + d * 4 + 1).to(tl.float32),
                tl.load(w_ptr + d * 4 + 2).to(tl.float32), tl.load(w_ptr + d * 4 + 3).to(tl.float32))

    @triton.jit
    def _group_load(x_row, start, length, valid_length):
        """x at positions start[:, None] + [0, 4), (N, 4) float32, 0 outside
        [0, valid_length). The mask is whole groups of four wherever ``length``
        is a multiple of 4, so the load stays one vector load a group; the
        valid length is applied after it."""
        pos = start[:, None] + tl.arange(0, 4)[None, :]
        xv = tl.load(x_row + pos, mask=(pos >= 0) & (pos < length), other=0.0).to(tl.float32)
        return tl.where(pos < valid_length, xv, 0.0)

    @triton.jit
    def _conv1d_pair_kernel(
        x_ptr, wf_ptr, bf_ptr, wb_ptr, bb_ptr, outf_ptr, outb_ptr,
        dim, length, valid_length, stride_xb, stride_xd,
        HAS_BIAS: tl.constexpr, SILU: tl.constexpr, BLOCK_L: tl.constexpr,
    ):
        """The causal conv (outf) and the anti-causal one (outb) of one x, width
        4, rows of unit stride. A thread owns groups of 4 positions and loads
        its group and the groups before and after it (three vector loads, the
        neighbours mostly from L1); the seven inputs each output needs are then
        register picks: window w[0..11] = x[start - 4 .. start + 8), and
        output i (0-3) is sum_k wf[k] w[1 + i + k] causal, sum_k wb[k] w[7 + i - k]
        anti-causal. (One 2-byte load per tap and element, as a plain
        shifted load compiles to on misaligned offsets, left the kernel at
        about half its memory floor.)"""
        row, d, x_row, start = _group_tile(x_ptr, dim, stride_xb, stride_xd, BLOCK_L)
        p0, p1, p2, p3 = _quarters(_group_load(x_row, start - 4, length, valid_length))
        c0, c1, c2, c3 = _quarters(_group_load(x_row, start, length, valid_length))
        n0, n1, n2, n3 = _quarters(_group_load(x_row, start + 4, length, valid_length))
        wf0, wf1, wf2, wf3 = _taps(wf_ptr, d)
        wb0, wb1, wb2, wb3 = _taps(wb_ptr, d)
        # causal: output i reads x[i - 3 .. i]; anti-causal: x[i + 3 .. i], taps reversed.
        f0 = wf0 * p1 + wf1 * p2 + wf2 * p3 + wf3 * c0
        f1 = wf0 * p2 + wf1 * p3 + wf2 * c0 + wf3 * c1
        f2 = wf0 * p3 + wf1 * c0 + wf2 * c1 + wf3 * c2
        f3 = wf0 * c0 + wf1 * c1 + wf2 * c2 + wf3 * c3
        b0 = wb0 * c3 + wb1 * c2 + wb2 * c1 + wb3 * c0
        b1 = wb0 * n0 + wb1 * c3 + wb2 * c2 + wb3 * c1
        b2 = wb0 * n1 + wb1 * n0 + wb2 * c3 + wb3 * c2
        b3 = wb0 * n2 + wb1 * n1 + wb2 * n0 + wb3 * c3
        acc_f = _from_quarters(f0, f1, f2, f3)
        acc_b = _from_quarters(b0, b1, b2, b3)
        if HAS_BIAS:
            acc_f += tl.load(bf_ptr + d).to(tl.float32)
            acc_b += tl.load(bb_ptr + d).to(tl.float32)
        if SILU:
            acc_f = acc_f * tl.sigmoid(acc_f)
            acc_b = acc_b * tl.sigmoid(acc_b)
        pos = start[:, None] + tl.arange(0, 4)[None, :]
        valid = pos < valid_length
        out = row.to(tl.int64) * length + pos
        tl.store(outf_ptr + out, tl.where(valid, acc_f, 0.0).to(outf_ptr.dtype.element_ty), mask=pos < length)
        tl.store(outb_ptr + out, tl.where(valid, acc_b, 0.0).to(outb_ptr.dtype.element_ty), mask=pos < length)

    @triton.jit
    def _silu_grad(grad_out, pre, SILU: tl.constexpr):
        """Gradient at the conv's output before SiLU: grad_out * silu'(pre)."""
        if SILU:
            sig = tl.sigmoid(pre)
            return grad_out * sig * (1.0 + pre * (1.0 - sig))
        return grad_out

    @triton.jit
    def _conv1d_pair_bwd_kernel(
        x_ptr, gf_ptr, gb_ptr, wf_ptr, bf_ptr, wb_ptr, bb_ptr, gx_ptr, part_ptr,
        dim, length, valid_length, stride_xb, stride_xd, n_blocks,
        HAS_BIAS: tl.constexpr, SILU: tl.constexpr, BLOCK_L: tl.constexpr,
    ):
        """Backward of :func:`_conv1d_pair_kernel` (width 4). x and the output
        gradients are read as 0 from ``valid_length`` on (the forward wrote
        zeros there), and the input gradient is 0 there.
        gf / gb: the output gradients, (batch, dim, length) contiguous; gx the
        input gradient, the same; part: per program, the sums over its
        positions of the weight and bias gradients, (batch * dim, n_blocks, 10)
        float32: forward taps 0-3, backward taps 0-3, forward bias, backward bias.

        A thread owns groups of 4 positions [s, s + 4), as in the forward, and
        reads the window x[s - 4, s + 8) (three vector loads). Its input
        gradient needs the causal conv's pre-activation gradient at [s, s + 7)
        and the anti-causal one's at [s - 3, s + 4): both recomputed from the
        window (so each is computed by two threads; no exchange between them).
        Window index j is position s - 4 + j."""
        row, d, x_row, start = _group_tile(x_ptr, dim, stride_xb, stride_xd, BLOCK_L)
        g_row = row.to(tl.int64) * length
        w0, w1, w2, w3 = _quarters(_group_load(x_row, start - 4, length, valid_length))
        w4, w5, w6, w7 = _quarters(_group_load(x_row, start, length, valid_length))
        w8, w9, w10, w11 = _quarters(_group_load(x_row, start + 4, length, valid_length))
        uf0, uf1, uf2, uf3 = _quarters(_group_load(gf_ptr + g_row, start, length, valid_length))
        uf4, uf5, uf6, _ = _quarters(_group_load(gf_ptr + g_row, start + 4, length, valid_length))
        _, ub1, ub2, ub3 = _quarters(_group_load(gb_ptr + g_row, start - 4, length, valid_length))
        ub4, ub5, ub6, ub7 = _quarters(_group_load(gb_ptr + g_row, start, length, valid_length))
        wf0, wf1, wf2, wf3 = _taps(wf_ptr, d)
        wb0, wb1, wb2, wb3 = _taps(wb_ptr, d)
        bias_f = 0.0
        bias_b = 0.0
        if HAS_BIAS:
            bias_f = tl.load(bf_ptr + d).to(tl.float32)
            bias_b = tl.load(bb_ptr + d).to(tl.float32)
        # Causal, at position s + i: sum_k wf[k] x[s + i - 3 + k] = window 1 + i + k.
        gf0 = _silu_grad(uf0, bias_f + wf0 * w1 + wf1 * w2 + wf2 * w3 + wf3 * w4, SILU)
        gf1 = _silu_grad(uf1, bias_f + wf0 * w2 + wf1 * w3 + wf2 * w4 + wf3 * w5, SILU)
        gf2 = _silu_grad(uf2, bias_f + wf0 * w3 + wf1 * w4 + wf2 * w5 + wf3 * w6, SILU)
        gf3 = _silu_grad(uf3, bias_f + wf0 * w4 + wf1 * w5 + wf2 * w6 + wf3 * w7, SILU)
        gf4 = _silu_grad(uf4, bias_f + wf0 * w5 + wf1 * w6 + wf2 * w7 + wf3 * w8, SILU)
        gf5 = _silu_grad(uf5, bias_f + wf0 * w6 + wf1 * w7 + wf2 * w8 + wf3 * w9, SILU)
        gf6 = _silu_grad(uf6, bias_f + wf0 * w7 + wf1 * w8 + wf2 * w9 + wf3 * w10, SILU)
        # Anti-causal, at position s - 4 + i: sum_k wb[k] x[s - 4 + i + 3 - k] = window i + 3 - k.
        gb1 = _silu_grad(ub1, bias_b + wb0 * w4 + wb1 * w3 + wb2 * w2 + wb3 * w1, SILU)
        gb2 = _silu_grad(ub2, bias_b + wb0 * w5 + wb1 * w4 + wb2 * w3 + wb3 * w2, SILU)
        gb3 = _silu_grad(ub3, bias_b + wb0 * w6 + wb1 * w5 + wb2 * w4 + wb3 * w3, SILU)
        gb4 = _silu_grad(ub4, bias_b + wb0 * w7 + wb1 * w6 + wb2 * w5 + wb3 * w4, SILU)
        gb5 = _silu_grad(ub5, bias_b + wb0 * w8 + wb1 * w7 + wb2 * w6 + wb3 * w5, SILU)
        gb6 = _silu_grad(ub6, bias_b + wb0 * w9 + wb1 * w8 + wb2 * w7 + wb3 * w6, SILU)
        gb7 = _silu_grad(ub7, bias_b + wb0 * w10 + wb1 * w9 + wb2 * w8 + wb3 * w7, SILU)
        # x[s + i] feeds causal outputs s + i .. s + i + 3 (tap 3 .. 0) and
        # anti-causal outputs s + i - 3 .. s + i (tap 0 .. 3).
        gx0 = wf3 * gf0 + wf2 * gf1 + wf1 * gf2 + wf0 * gf3 + wb0 * gb1 + wb1 * gb2 + wb2 * gb3 + wb3 * gb4
        gx1 = wf3 * gf1 + wf2 * gf2 + wf1 * gf3 + wf0 * gf4 + wb0 * gb2 + wb1 * gb3 + wb2 * gb4 + wb3 * gb5
        gx2 = wf3 * gf2 + wf2 * gf3 + wf1 * gf4 + wf0 * gf5 + wb0 * gb3 + wb1 * gb4 + wb2 * gb5 + wb3 * gb6
        gx3 = wf3 * gf3 + wf2 * gf4 + wf1 * gf5 + wf0 * gf6 + wb0 * gb4 + wb1 * gb5 + wb2 * gb6 + wb3 * gb7
        pos = start[:, None] + tl.arange(0, 4)[None, :]
        grad_x = tl.where(pos < valid_length, _from_quarters(gx0, gx1, gx2, gx3), 0.0)
        tl.store(gx_ptr + g_row + pos, grad_x.to(gx_ptr.dtype.element_ty), mask=pos < length)
        # Weight and bias gradients of this program's own positions s + i (i < 4):
        # causal tap k pairs output s + i with window 1 + i + k, anti-causal
        # tap k output s + i (gb4 + i) with window 7 + i - k.
        part = part_ptr + (row.to(tl.int64) * n_blocks + tl.program_id(1)) * 10
        tl.store(part + 0, tl.sum(gf0 * w1 + gf1 * w2 + gf2 * w3 + gf3 * w4, axis=0))
        tl.store(part + 1, tl.sum(gf0 * w2 + gf1 * w3 + gf2 * w4 + gf3 * w5, axis=0))
        tl.store(part + 2, tl.sum(gf0 * w3 + gf1 * w4 + gf2 * w5 + gf3 * w6, axis=0))
        tl.store(part + 3, tl.sum(gf0 * w4 + gf1 * w5 + gf2 * w6 + gf3 * w7, axis=0))
        tl.store(part + 4, tl.sum(gb4 * w7 + gb5 * w8 + gb6 * w9 + gb7 * w10, axis=0))
        tl.store(part + 5, tl.sum(gb4 * w6 + gb5 * w7 + gb6 * w8 + gb7 * w9, axis=0))
        tl.store(part + 6, tl.sum(gb4 * w5 + gb5 * w6 + gb6 * w7 + gb7 * w8, axis=0))
        tl.store(part + 7, tl.sum(gb4 * w4 + gb5 * w5 + gb6 * w6 + gb7 * w7, axis=0))
        tl.store(part + 8, tl.sum(gf0 + gf1 + gf2 + gf3, axis=0))
        tl.store(part + 9, tl.sum(gb4 + gb5 + gb6 + gb7, axis=0))


def _valid_length(length: int, valid_length: Optional[int]) -> int:
    valid_length = length if valid_length is None else valid_length
    if not 0 <= valid_length <= length:
        raise ValueError(f"causal_conv1d: valid_length {valid_length} outside [0, {length}]")
    return valid_length


def _conv_block(length: int) -> int:
    """Positions a program covers: at most 512 (1.04-1.21x faster than 1024
    for the single-direction kernel on an H100, the best of nine tiles; and
    with two warps, the pair kernel's best of five, docs/benchmarks.md)."""
    return min(512, triton.next_power_of_2(max(length, 16)))


#: Warps of a pair-kernel program: two groups of four positions a thread at 512 positions.
_PAIR_WARPS = 2


def causal_conv1d_pair_triton(x: Tensor, forward: tuple[Tensor, Optional[Tensor]],
                              backward: tuple[Tensor, Optional[Tensor]], silu: bool = True,
                              valid_length: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """Both directions' convs of the bidirectional mixer in one pass over x
    (Triton, no autograd, CUDA): ``causal_conv1d_triton(x, *forward, silu)``
    and ``causal_conv1d_triton(x, *backward, silu, reverse=True)``, with
    ``valid_length`` as there. ``forward`` / ``backward``: (weight, bias or
    None) of each direction; both have a bias or neither."""
    if triton is None:
        raise RuntimeError("causal_conv1d_pair_triton needs Triton (a CUDA build of PyTorch)")
    (w_f, b_f), (w_b, b_b) = forward, backward
    if (b_f is None) != (b_b is None):
        raise ValueError("causal_conv1d_pair_triton: both directions need a bias, or neither")
    batch, dim, length = x.shape
    valid_length = _valid_length(length, valid_length)
    w_f, w_b = w_f.reshape(dim, -1).contiguous(), w_b.reshape(dim, -1).contiguous()
    if w_f.shape != w_b.shape:
        raise ValueError(f"causal_conv1d_pair_triton: kernels {tuple(w_f.shape)} and {tuple(w_b.shape)} differ")
    if w_f.shape[1] != 4:
        raise ValueError(f"causal_conv1d_pair_triton: kernel width {w_f.shape[1]}, only 4 (VideoMamba's) is built")
    if x.stride(2) != 1:
        x = x.contiguous()
    out_f = torch.empty(batch, dim, length, device=x.device, dtype=x.dtype)
    out_b = torch.empty_like(out_f)
    block = _conv_block(length)
    _conv1d_pair_kernel[(batch * dim, triton.cdiv(length, block))](
        x, w_f, w_f if b_f is None else b_f, w_b, w_b if b_b is None else b_b, out_f, out_b,
        dim, length, valid_length, x.stride(0), x.stride(1),
        HAS_BIAS=b_f is not None, SILU=silu, BLOCK_L=block, num_warps=_PAIR_WARPS,
    )
    return out_f, out_b


class _ConvPairFunction(torch.autograd.Function):
    """Both directions' convs (width 4) with autograd, forward and backward in
    Triton, each one pass over x; what the bidirectional mixer trains with on
    CUDA. (PyTorch's depthwise conv kernels and the padding copies in front of
    them were 17 % of a VideoMamba-Ti training step's GPU time.)"""

    @staticmethod
    def forward(ctx, x: Tensor, w_f: Tensor, b_f: Optional[Tensor], w_b: Tensor, b_b: Optional[Tensor],
                silu: bool, valid_length: Optional[int]) -> tuple[Tensor, Tensor]:
        if x.stride(2) != 1:
            x = x.contiguous()
        ctx.save_for_backward(x, w_f, b_f, w_b, b_b)
        ctx.silu = silu
        ctx.valid_length = _valid_length(x.shape[-1], valid_length)
        return causal_conv1d_pair_triton(x, (w_f, b_f), (w_b, b_b), silu, ctx.valid_length)

    @staticmethod
    def backward(ctx, grad_f: Tensor, grad_b: Tensor):
        x, w_f, b_f, w_b, b_b = ctx.saved_tensors
        batch, dim, length = x.shape
        block = _conv_block(length)
        n_blocks = triton.cdiv(length, block)
        grad_x = torch.empty(batch, dim, length, device=x.device, dtype=x.dtype)
        parts = torch.empty(batch * dim, n_blocks, 10, device=x.device, dtype=torch.float32)
        w_f2, w_b2 = w_f.reshape(dim, 4).contiguous(), w_b.reshape(dim, 4).contiguous()
        _conv1d_pair_bwd_kernel[(batch * dim, n_blocks)](
            x, grad_f.contiguous(), grad_b.contiguous(), w_f2, w_f2 if b_f is None else b_f, w_b2,
            w_b2 if b_b is None else b_b, grad_x, parts, dim, length, ctx.valid_length, x.stride(0), x.stride(1),
            n_blocks,
            HAS_BIAS=b_f is not None, SILU=ctx.silu, BLOCK_L=block, num_warps=_PAIR_WARPS,
        )
        sums = parts.view(batch, dim, n_blocks, 10).sum(dim=(0, 2))  # (dim, 10), float32
        grad_w_f = sums[:, 0:4].reshape(w_f.shape).to(w_f.dtype)
        grad_w_b = sums[:, 4:8].reshape(w_b.shape).to(w_b.dtype)
        grad_b_f = None if b_f is None else sums[:, 8].to(b_f.dtype)
        grad_b_b = None if b_b is None else sums[:, 9].to(b_b.dtype)
        return grad_x, grad_w_f, grad_b_f, grad_w_b, grad_b_b, None, None


def causal_conv1d_pair(x: Tensor, forward: tuple[Tensor, Optional[Tensor]],
                       backward: tuple[Tensor, Optional[Tensor]], silu: bool = True,
                       valid_length: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """``causal_conv1d(x, *forward, silu)`` and ``causal_conv1d(x, *backward,
    silu, reverse=True)``, differentiable; ``valid_length`` as in
    :func:`causal_conv1d_pair_triton` (x read as ending there, zeros written
    after it, and no gradient there). On CUDA with Triton and width-4 kernels
    (VideoMamba's) both run in one Triton pass over x, forward and backward
    (without autograd, :func:`causal_conv1d_pair_triton` alone); elsewhere as
    two ``F.conv1d`` calls."""
    (w_f, b_f), (w_b, b_b) = forward, backward
    width = w_f.shape[-1]
    if x.is_cuda and triton is not None and width == 4 and w_b.shape[-1] == 4 and (b_f is None) == (b_b is None):
        if not needs_autograd(x, w_f, b_f, w_b, b_b):
            return causal_conv1d_pair_triton(x, forward, backward, silu, valid_length)
        return _ConvPairFunction.apply(x, w_f, b_f, w_b, b_b, silu, valid_length)
    valid = _valid_length(x.shape[-1], valid_length)
    pad = (0, x.shape[-1] - valid)
    return (F.pad(causal_conv1d_reference(x[..., :valid], w_f, b_f, silu), pad),
            F.pad(causal_conv1d_reference(x[..., :valid], w_b, b_b, silu, reverse=True), pad))


def causal_conv1d_triton(x: Tensor, weight: Tensor, bias: Optional[Tensor], silu: bool = True,
                         reverse: bool = False, valid_length: Optional[int] = None) -> Tensor:
    """Triton forward (no autograd). x: (batch, channels, length), any strides, CUDA.

    ``reverse=True`` computes the anti-causal conv
    y[:, c, t] = act(bias[c] + sum_k weight[c, k] * x[:, c, t + (K-1) - k]),
    which equals ``flip(causal_conv(flip(x)))`` without making either flip.
    ``valid_length``: x is read as if it ended there (zeros after) and the
    output is 0 from there on; the output keeps x's length."""
    if triton is None:
        raise RuntimeError("causal_conv1d_triton needs Triton (a CUDA build of PyTorch)")
    batch, dim, length = x.shape
    valid_length = _valid_length(length, valid_length)
    w = weight.reshape(dim, -1).contiguous()
    out = torch.empty(batch, dim, length, device=x.device, dtype=x.dtype)
    block = _conv_block(length)
    grid = (batch * dim, triton.cdiv(length, block))
    _causal_conv1d_fwd_kernel[grid](
        x, w, bias if bias is not None else w, out,
        dim, length, valid_length, x.stride(0), x.stride(1), x.stride(2),
        HAS_BIAS=bias is not None, SILU=silu, REVERSE=reverse, WIDTH=w.shape[1], BLOCK_L=block,
    )
    return out


def causal_conv1d_reference(x: Tensor, weight: Tensor, bias: Optional[Tensor], silu: bool = True,
                            reverse: bool = False) -> Tensor:
    """``F.conv1d`` on a left-padded input (right-padded, taps reversed, if
    ``reverse``); differentiable, any device."""
    w = weight.reshape(weight.shape[0], -1)
    taps = w.shape[1]
    padded = F.pad(x, (0, taps - 1) if reverse else (taps - 1, 0))
    kernel = (w.flip(-1) if reverse else w).unsqueeze(1).to(x.dtype)
    y = F.conv1d(padded, kernel, None if bias is None else bias.to(x.dtype), groups=x.shape[1])
    return F.silu(y) if silu else y


def causal_conv1d(x: Tensor, weight: Tensor, bias: Optional[Tensor], silu: bool = True,
                  reverse: bool = False) -> Tensor:
    """y[:, c, t] = act(bias[c] + sum_k weight[c, k] * x[:, c, t - (K-1) + k]), zeros before t=0;
    with ``reverse`` the anti-causal twin y[:, c, t] = act(bias[c] + sum_k weight[c, k] * x[:, c, t + (K-1) - k]),
    i.e. ``flip(causal_conv1d(flip(x)))``.

    x: (batch, channels, length); weight: (channels, K) or (channels, 1, K);
    returns a contiguous (batch, channels, length) tensor in x's dtype.
    """
    w = weight.reshape(weight.shape[0], -1)
    if x.is_cuda:
        fused = _causal_conv1d_package()
        if fused is not None and not reverse and 2 <= w.shape[1] <= 4:
            return fused(x, w.to(x.dtype), None if bias is None else bias.to(x.dtype), "silu" if silu else None)
        if triton is not None and not needs_autograd(x, w, bias):
            return causal_conv1d_triton(x, w, bias, silu, reverse=reverse)
    return causal_conv1d_reference(x, w, bias, silu, reverse=reverse)
