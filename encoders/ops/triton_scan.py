"""Fused bidirectional selective scan in Triton (forward / inference).

One launch computes both directions of OpenGVLab's bidirectional mixer from
inputs in ORIGINAL token order, the backward direction by index arithmetic
(no flipped copies):

    forward : h_t = exp(dt_f[t] A_f) h_{t-1} + dt_f[t] B_f[t] u_f[t],   t = 0 .. L-1
    backward: g_t = exp(dt_b[t] A_b) g_{t+1} + dt_b[t] B_b[t] u_b[t],   t = L-1 .. 0
    y[t] = (C_f[t].h_t + D_f u_f[t] + C_b[t].g_t + D_b u_b[t]) * silu(z[t])

with dt = softplus(delta + delta_bias). This equals
``scan(u_f, ...) + flip(scan(flip(u_b), ...))`` with a shared gate ``z``, which
is what the mixer computes when its backward inputs are produced by an
anti-causal convolution on the unflipped sequence.

Each program owns ``BLOCK_D`` channels of one sequence and walks the whole
sequence, the state in registers (float32 throughout). Two variants: the
default "sequential" one takes one time step per iteration; the "chunked" one
takes ``BLOCK_L`` steps per iteration as a parallel associative scan over
(BLOCK_D, state, BLOCK_L). Both were timed by ``benchmarks/scan_speed.py --sweep``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - CPU-only PyTorch
    triton = None


def triton_available() -> bool:
    return triton is not None


#: The Triton kernel walks the whole sequence inside one program per 4 channels of
#: one clip, so it needs many programs to hide latency. Measured on an H100
#: (docs/benchmarks.md): with >= 3072 programs (VideoMamba-Ti, batch 32; -S, batch
#: 16) it beats mamba-ssm by 1.1-1.2x; with 1536 it is 1.5x slower, with 384 5x.
MIN_PROGRAMS_TO_BEAT_MAMBA_SSM = 3072
CHANNELS_PER_PROGRAM = 4


def triton_scan_preferred(batch: int, dim: int) -> bool:
    """Whether the Triton scan is expected to beat mamba-ssm at this (batch, dim)."""
    return batch * -(-dim // CHANNELS_PER_PROGRAM) >= MIN_PROGRAMS_TO_BEAT_MAMBA_SSM


if triton is not None:

    @triton.jit
    def _first_order_combine(a_left, b_left, a_right, b_right):
        # Composition of h -> a_left*h + b_left followed by h -> a_right*h + b_right.
        return a_left * a_right, b_left * a_right + b_right

    @triton.jit
    def _scan_direction(
        u_ptr, dt_ptr, B_ptr, C_ptr, A_ptr, D_ptr, bias_ptr, z_ptr, out_ptr,
        batch_idx, d_offs, d_mask, length, dim,
        stride_ub, stride_ud, stride_dtb, stride_dtd, stride_Bb, stride_Bn, stride_Cb, stride_Cn,
        stride_zb, stride_zd,
        REVERSE: tl.constexpr, ACCUMULATE: tl.constexpr, HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr,
        STATE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
    ):
        n_offs = tl.arange(0, STATE)
        l_offs = tl.arange(0, BLOCK_L)
        A = tl.load(A_ptr + d_offs[:, None] * STATE + n_offs[None, :], mask=d_mask[:, None], other=0.0)
        A = A.to(tl.float32) * 1.4426950408889634  # exp(x) = exp2(x * log2 e)
        Dskip = tl.load(D_ptr + d_offs, mask=d_mask, other=0.0).to(tl.float32)
        bias = tl.load(bias_ptr + d_offs, mask=d_mask, other=0.0).to(tl.float32)
        h = tl.zeros([BLOCK_D, STATE], dtype=tl.float32)
        u_base = u_ptr + batch_idx * stride_ub + d_offs[:, None] * stride_ud
        dt_base = dt_ptr + batch_idx * stride_dtb + d_offs[:, None] * stride_dtd
        z_base = z_ptr + batch_idx * stride_zb + d_offs[:, None] * stride_zd
        out_base = out_ptr + batch_idx * dim * length + d_offs[:, None] * length
        B_base = B_ptr + batch_idx * stride_Bb + n_offs[:, None] * stride_Bn
        C_base = C_ptr + batch_idx * stride_Cb + n_offs[:, None] * stride_Cn
        for start in range(0, length, BLOCK_L):
            steps = start + l_offs
            if REVERSE:
                pos = length - 1 - steps
            else:
                pos = steps
            l_mask = steps < length
            mask = d_mask[:, None] & l_mask[None, :]
            u = tl.load(u_base + pos[None, :], mask=mask, other=0.0).to(tl.float32)
            dt = tl.load(dt_base + pos[None, :], mask=mask, other=0.0).to(tl.float32) + bias[:, None]
            if SOFTPLUS:  # linear above 20, as PyTorch's softplus
                dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
            dt = tl.where(mask, dt, 0.0)  # padded steps: decay 1, input 0
            Bc = tl.load(B_base + pos[None, :], mask=l_mask[None, :], other=0.0).to(tl.float32)  # (N, L)
            Cc = tl.load(C_base + pos[None, :], mask=l_mask[None, :], other=0.0).to(tl.float32)
            decay = tl.exp2(dt[:, None, :] * A[:, :, None])  # (D, N, L)
            drive = (dt * u)[:, None, :] * Bc[None, :, :]
            decay_acc, states = tl.associative_scan((decay, drive), axis=2, combine_fn=_first_order_combine)
            states = states + decay_acc * h[:, :, None]
            y = tl.sum(states * Cc[None, :, :], axis=1) + Dskip[:, None] * u  # (D, L)
            last = l_offs == tl.minimum(length - start, BLOCK_L) - 1
            h = tl.sum(tl.where(last[None, None, :], states, 0.0), axis=2)
            out_ptrs = out_base + pos[None, :]
            if ACCUMULATE:
                y += tl.load(out_ptrs, mask=mask, other=0.0).to(tl.float32)
            if HAS_Z:
                z = tl.load(z_base + pos[None, :], mask=mask, other=0.0).to(tl.float32)
                y = y * (z / (1.0 + tl.exp(-z)))
            tl.store(out_ptrs, y.to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _scan_direction_sequential(
        u_ptr, dt_ptr, B_ptr, C_ptr, A_ptr, D_ptr, bias_ptr, z_ptr, out_ptr,
        batch_idx, d_offs, d_mask, length, dim,
        stride_ub, stride_ud, stride_dtb, stride_dtd, stride_Bb, stride_Bn, stride_Cb, stride_Cn,
        stride_zb, stride_zd,
        REVERSE: tl.constexpr, ACCUMULATE: tl.constexpr, HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr,
        STATE: tl.constexpr, BLOCK_D: tl.constexpr,
    ):
        # One time step per iteration, every thread owning whole channels with
        # their STATE values in registers (mamba-ssm's layout). Each channel's
        # row is read front to back (or back to front), so its cache lines are
        # reused across consecutive steps.
        n_offs = tl.arange(0, STATE)
        A = tl.load(A_ptr + d_offs[:, None] * STATE + n_offs[None, :], mask=d_mask[:, None], other=0.0)
        A = A.to(tl.float32) * 1.4426950408889634
        Dskip = tl.load(D_ptr + d_offs, mask=d_mask, other=0.0).to(tl.float32)
        bias = tl.load(bias_ptr + d_offs, mask=d_mask, other=0.0).to(tl.float32)
        h = tl.zeros([BLOCK_D, STATE], dtype=tl.float32)
        u_base = u_ptr + batch_idx * stride_ub + d_offs * stride_ud
        dt_base = dt_ptr + batch_idx * stride_dtb + d_offs * stride_dtd
        z_base = z_ptr + batch_idx * stride_zb + d_offs * stride_zd
        out_base = out_ptr + batch_idx * dim * length + d_offs * length
        B_base = B_ptr + batch_idx * stride_Bb + n_offs * stride_Bn
        C_base = C_ptr + batch_idx * stride_Cb + n_offs * stride_Cn
        for step in range(0, length):
            if REVERSE:
                pos = length - 1 - step
            else:
                pos = step
            u = tl.load(u_base + pos, mask=d_mask, other=0.0).to(tl.float32)
            dt = tl.load(dt_base + pos, mask=d_mask, other=0.0).to(tl.float32) + bias
            if SOFTPLUS:
                dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
            Bt = tl.load(B_base + pos).to(tl.float32)
            Ct = tl.load(C_base + pos).to(tl.float32)
            h = tl.exp2(dt[:, None] * A) * h + (dt * u)[:, None] * Bt[None, :]
            y = tl.sum(h * Ct[None, :], axis=1) + Dskip * u
            if ACCUMULATE:
                y += tl.load(out_base + pos, mask=d_mask, other=0.0).to(tl.float32)
            if HAS_Z:
                z = tl.load(z_base + pos, mask=d_mask, other=0.0).to(tl.float32)
                y = y * (z / (1.0 + tl.exp(-z)))
            tl.store(out_base + pos, y.to(out_ptr.dtype.element_ty), mask=d_mask)

    @triton.jit
    def _bidirectional_scan_fwd_kernel(
        u_f, dt_f, B_f, C_f, A_f, D_f, bias_f,
        u_b, dt_b, B_b, C_b, A_b, D_b, bias_b,
        z_ptr, out_ptr, dim, length,
        s_ufb, s_ufd, s_dtfb, s_dtfd, s_Bfb, s_Bfn, s_Cfb, s_Cfn,
        s_ubb, s_ubd, s_dtbb, s_dtbd, s_Bbb, s_Bbn, s_Cbb, s_Cbn,
        s_zb, s_zd,
        BIDIRECTIONAL: tl.constexpr, HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr, SEQUENTIAL: tl.constexpr,
        STATE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
    ):
        batch_idx = tl.program_id(0).to(tl.int64)
        d_offs = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        d_mask = d_offs < dim
        # Forward direction writes C.h + D u (ungated unless it is the only one).
        if SEQUENTIAL:
            _scan_direction_sequential(
                u_f, dt_f, B_f, C_f, A_f, D_f, bias_f, z_ptr, out_ptr, batch_idx, d_offs, d_mask, length, dim,
                s_ufb, s_ufd, s_dtfb, s_dtfd, s_Bfb, s_Bfn, s_Cfb, s_Cfn, s_zb, s_zd,
                REVERSE=False, ACCUMULATE=False, HAS_Z=HAS_Z and not BIDIRECTIONAL, SOFTPLUS=SOFTPLUS,
                STATE=STATE, BLOCK_D=BLOCK_D)
        else:
            _scan_direction(
                u_f, dt_f, B_f, C_f, A_f, D_f, bias_f, z_ptr, out_ptr, batch_idx, d_offs, d_mask, length, dim,
                s_ufb, s_ufd, s_dtfb, s_dtfd, s_Bfb, s_Bfn, s_Cfb, s_Cfn, s_zb, s_zd,
                REVERSE=False, ACCUMULATE=False, HAS_Z=HAS_Z and not BIDIRECTIONAL, SOFTPLUS=SOFTPLUS,
                STATE=STATE, BLOCK_D=BLOCK_D, BLOCK_L=BLOCK_L)
        if BIDIRECTIONAL:
            # The backward pass re-reads what this program's threads stored.
            tl.debug_barrier()
            if SEQUENTIAL:
                _scan_direction_sequential(
                    u_b, dt_b, B_b, C_b, A_b, D_b, bias_b, z_ptr, out_ptr, batch_idx, d_offs, d_mask, length, dim,
                    s_ubb, s_ubd, s_dtbb, s_dtbd, s_Bbb, s_Bbn, s_Cbb, s_Cbn, s_zb, s_zd,
                    REVERSE=True, ACCUMULATE=True, HAS_Z=HAS_Z, SOFTPLUS=SOFTPLUS,
                    STATE=STATE, BLOCK_D=BLOCK_D)
            else:
                _scan_direction(
                    u_b, dt_b, B_b, C_b, A_b, D_b, bias_b, z_ptr, out_ptr, batch_idx, d_offs, d_mask, length, dim,
                    s_ubb, s_ubd, s_dtbb, s_dtbd, s_Bbb, s_Bbn, s_Cbb, s_Cbn, s_zb, s_zd,
                    REVERSE=True, ACCUMULATE=True, HAS_Z=HAS_Z, SOFTPLUS=SOFTPLUS,
                    STATE=STATE, BLOCK_D=BLOCK_D, BLOCK_L=BLOCK_L)


def _check_unit_stride(name: str, t: Tensor) -> None:
    if t.stride(-1) != 1 and t.shape[-1] != 1:
        raise ValueError(f"triton scan: {name} needs unit stride along length, got strides {t.stride()}")


def bidirectional_selective_scan_triton(
    forward: tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor],
    backward: Optional[tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]],
    z: Optional[Tensor],
    delta_softplus: bool = True,
    block_d: int = CHANNELS_PER_PROGRAM,
    block_l: int = 16,
    num_warps: int = 1,
    sequential: bool = True,
) -> Tensor:
    """Fused forward (+ reverse-order backward) selective scan, no autograd.

    ``forward`` and ``backward`` are ``(u, delta, A, B, C, D, delta_bias)`` with
    u, delta: (batch, dim, length); A: (dim, state); B, C: (batch, state, length);
    D, delta_bias: (dim,); softplus is applied to delta + delta_bias if
    ``delta_softplus``.
    ``backward`` inputs are in ORIGINAL order; that direction runs from the
    last position to the first. ``z``: (batch, dim, length) gate shared by both.
    Returns (batch, dim, length) in u's dtype. Tensors need unit stride along
    length (channel slices of a bigger tensor are fine).

    Defaults come from ``benchmarks/scan_speed.py --sweep`` on an H100 (Ti,
    8 frames, batch 32): one warp per 4 channels stepping through time
    ("sequential") took 1459 us; the chunked associative scan at best 1529 us;
    mamba-ssm's two calls plus flips 1693 us.
    """
    if triton is None:
        raise RuntimeError("the Triton scan needs Triton (a CUDA build of PyTorch)")
    u = forward[0]
    batch, dim, length = u.shape
    state = forward[2].shape[1]
    if state & (state - 1):
        raise ValueError(f"triton scan: state size must be a power of two, got {state}")
    directions = [forward] + ([backward] if backward is not None else [])
    prepared = []
    for direction in directions:
        du, ddt, dA, dB, dC, dD, dbias = direction
        for name, t in (("u", du), ("delta", ddt), ("B", dB), ("C", dC)):
            _check_unit_stride(name, t)
        prepared.append((du, ddt, dB, dC, dA.float().contiguous(), dD.float().contiguous(),
                         dbias.float().contiguous()))
    if z is not None:
        _check_unit_stride("z", z)
    out = torch.empty(batch, dim, length, device=u.device, dtype=u.dtype)
    f = prepared[0]
    b = prepared[1] if backward is not None else prepared[0]
    zt = z if z is not None else u
    grid = (batch, triton.cdiv(dim, block_d))
    _bidirectional_scan_fwd_kernel[grid](
        f[0], f[1], f[2], f[3], f[4], f[5], f[6],
        b[0], b[1], b[2], b[3], b[4], b[5], b[6],
        zt, out, dim, length,
        f[0].stride(0), f[0].stride(1), f[1].stride(0), f[1].stride(1),
        f[2].stride(0), f[2].stride(1), f[3].stride(0), f[3].stride(1),
        b[0].stride(0), b[0].stride(1), b[1].stride(0), b[1].stride(1),
        b[2].stride(0), b[2].stride(1), b[3].stride(0), b[3].stride(1),
        zt.stride(0), zt.stride(1),
        BIDIRECTIONAL=backward is not None, HAS_Z=z is not None, SOFTPLUS=delta_softplus, SEQUENTIAL=sequential,
        STATE=state, BLOCK_D=block_d, BLOCK_L=block_l,
        num_warps=num_warps,
    )
    return out
