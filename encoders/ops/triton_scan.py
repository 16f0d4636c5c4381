"""Fused bidirectional selective scan in Triton: forward and backward (autograd).

One launch computes both directions of OpenGVLab's bidirectional mixer from
inputs in ORIGINAL token order; the backward direction runs from the last
position to the first by index arithmetic (no flipped copies):

    forward : h_t = exp(dt_f[t] A_f) h_{t-1} + dt_f[t] B_f[t] u_f[t],   t = 0 .. L-1
    backward: g_t = exp(dt_b[t] A_b) g_{t+1} + dt_b[t] B_b[t] u_b[t],   t = L-1 .. 0
    y[t] = (C_f[t].h_t + D_f u_f[t] + C_b[t].g_t + D_b u_b[t]) * silu(z[t])

with dt = softplus(delta + delta_bias). This equals
``scan(u_f, ...) + flip(scan(flip(u_b), ...))`` with a shared gate ``z``, which
is what the mixer computes when its backward inputs come from an anti-causal
convolution of the unflipped sequence. With no backward direction it is
mamba-ssm's ``selective_scan_fn``.

Work decomposition. The sequence is cut into chunks of ``block_l`` positions.
A program owns ``block_d`` channels of one clip and walks its chunks in scan
order, carrying the (state, block_d) state in float32. A chunk is a
time-major (block_l, state, block_d) tile: each thread holds whole runs of time
steps in registers, so the associative scan over time is a sequential loop
inside the thread; the state entering the chunk is folded into its first step.
The next chunk's loads are issued before the current chunk's arithmetic.

When batch x channel blocks give too few programs (long clips, small batches),
the chunks are also split into ``splits`` segments run by separate programs,
in three launches: (1) every segment's end state from a zero start and its
summed dt, (2) a short sequential pass over segments that turns those into
each segment's true start state, (3) every segment re-run from its start state,
writing y. That costs a second pass of exponentials and buys ``splits``-fold
parallelism.

Backward. For training the forward keeps the state entering every 16th chunk
(float32, (batch, dim, n_chunks / 16, state) per direction: with 4-step chunks
and 16 states, half the bytes of a bf16 u); the backward first restores every chunk's entering
state from those, one parallel re-scan launch into a buffer that lives only
while this layer's backward runs. It then walks the chunks in
reverse scan order, re-scans each chunk's states from the saved one, and runs
the adjoint recurrence lambda_t = C_t dy_t + exp(dt_{t+1} A) lambda_{t+1}
(mirrored for the backward direction) as a reverse scan. The decay of the NEXT
step comes from a one-position-shifted load of delta (Triton has no register
shift). Long sequences split the same way: the adjoint's inputs need no forward
state, so its segment end states, a carry pass and the segment backward are
again three launches. Gradients of B and C sum over channels: each program
reduces its block and adds it to a float32 buffer atomically.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - CPU-only PyTorch
    triton = None

#: (u, delta, A, B, C, D, delta_bias) of one scan direction.
ScanInputs = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


def triton_available() -> bool:
    return triton is not None


@dataclass(frozen=True)
class TritonScanConfig:
    """Tile sizes and launch shape of the Triton scan.

    - block_d: channels per program.
    - block_l: positions per chunk, a power of two. Shared by forward and
      backward: the backward re-scans from the states the forward saved at
      chunk boundaries.
    - num_warps: warps per program.
    - splits: segments each sequence is cut into. None: 1 when batch x channel
      blocks reach ``min_programs``, else enough for ``split_target`` programs
      (:func:`choose_splits`).
    - max_registers: per-thread register cap given to ptxas (None: its
      choice); it sets how many programs fit on an SM at once.
    - state_checkpoint_chunks: for training, the forward keeps the state
      entering every this many chunks (1: every chunk); the backward restores
      the rest in one parallel re-scan launch, into a buffer that lives only
      while that layer's backward runs.
    - gluon_forward: run the forward with the Gluon kernel
      (:mod:`encoders.ops.gluon_scan`, one thread per channel, measured
      faster) where Gluon is available; its states feed this backward.
    - gluon_backward: run the backward with the Gluon kernel where Gluon is
      available (:mod:`encoders.ops.gluon_backward`, a chunk's positions in
      each thread's registers, measured 1.88-2.24x faster than the Triton
      backward below); from the states either forward saved.
    - backward_*: the same for the Triton backward kernels (without Gluon, or
      with gluon_backward False);
      backward_split_max_registers replaces backward_max_registers when the
      sequence is split (measured: then 16 programs per SM beat 12). The
      backward splits below ``backward_min_programs`` programs, into as many
      segments as fit in ``backward_split_target`` programs (rounded down:
      4224 is two full waves of 16 programs on each of an H100's 132 SMs).

    Defaults come from ``benchmarks/scan_speed.py --sweep`` on an H100
    (docs/benchmarks.md).
    """

    block_d: int = 16
    block_l: int = 4
    num_warps: int = 1
    splits: Optional[int] = None
    min_programs: int = 512
    split_target: int = 2048
    max_registers: Optional[int] = None
    backward_block_d: int = 8
    backward_num_warps: int = 1
    backward_max_registers: Optional[int] = 168
    backward_split_max_registers: Optional[int] = 128
    backward_min_programs: int = 1536
    backward_split_target: int = 4224
    state_checkpoint_chunks: int = 16
    gluon_forward: bool = True
    gluon_backward: bool = True


DEFAULT_CONFIG = TritonScanConfig()


def triton_scan_preferred(batch: int, dim: int, config: TritonScanConfig = DEFAULT_CONFIG,
                          needs_grad: bool = True) -> bool:
    """Whether this project's scan is expected to beat mamba-ssm at this (batch, dim).

    Measured on an H100 (docs/benchmarks.md). With the Gluon kernels (where
    Gluon is available): forward 2.4-4.3x and backward 1.66-2.12x two mamba-ssm
    calls at every VideoMamba-Ti and -S shape measured (8-64 frames, batch
    4-32); whole-encoder inference 2.6-3.3x; training steps 1.08-1.46x at Ti
    (four runs) and 1.28-1.63x at S, with 13 % less peak memory; so always. Without it, the
    Triton kernels win only with enough (batch x channel block) programs: the
    forward from
    ``min_programs``, the backward (1.0x) where it needs no split.
    """
    if config.gluon_forward:
        from .gluon_scan import gluon_available  # imported here: gluon_scan builds on this module

        if gluon_available():
            return True
    if not needs_grad:
        return batch * _cdiv(dim, config.block_d) >= config.min_programs
    return batch * _cdiv(dim, config.backward_block_d) >= config.backward_min_programs


def choose_splits(batch: int, dim: int, length: int, config: TritonScanConfig) -> int:
    """Segments per sequence for programs of ``config.block_d`` channels (:func:`splits_for`)."""
    return splits_for(batch * _cdiv(dim, config.block_d), _cdiv(length, config.block_l), config.splits,
                      config.min_programs, config.split_target)


def splits_for(programs: int, n_chunks: int, splits: Optional[int], min_programs: int, split_target: int,
               round_up: bool = True) -> int:
    """Segments per sequence, given ``programs`` (batch x channel blocks) and
    ``n_chunks`` chunks: ``splits`` if fixed, else 1 when the programs reach
    ``min_programs``, else enough for ``split_target`` programs (``round_up``)
    or as many as fit in it; at most one segment per chunk. Measured
    (docs/benchmarks.md): splitting costs a second pass of exponentials, so it
    pays only when programs are scarce."""
    if splits is not None:
        return max(1, min(splits, n_chunks))
    if programs >= min_programs:
        return 1
    wanted = _cdiv(split_target, programs) if round_up else split_target // programs
    return max(1, min(wanted, n_chunks))


def split_layout(n_chunks: int, splits: int) -> tuple[int, int]:
    """(segments, chunks per segment) for about ``splits`` segments of
    ``n_chunks`` chunks, every segment non-empty."""
    chunks_per_split = _cdiv(n_chunks, max(1, min(splits, n_chunks)))
    return _cdiv(n_chunks, chunks_per_split), chunks_per_split


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


if triton is not None:

    from .triton_softplus import softplus

    LOG2E: tl.constexpr = tl.constexpr(1.4426950408889634)

    @triton.jit
    def _affine_combine(a_left, b_left, a_right, b_right):
        # Composition of x -> a_left*x + b_left followed by x -> a_right*x + b_right.
        return a_left * a_right, b_left * a_right + b_right

    @triton.jit
    def _keep_first(left, right):
        return left

    @triton.jit
    def _keep_last(left, right):
        return right

    @triton.jit
    def _program_tile(dim, n_chunks, chunks_per_group, BLOCK_D: tl.constexpr):
        """What a program of a (batch, channel blocks, groups of chunks) grid
        owns: (clip b as int64, d_offs, d_mask, group, chunk_lo, chunk_hi)."""
        b = tl.program_id(0).to(tl.int64)
        d_offs = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        group = tl.program_id(2)
        chunk_lo = group * chunks_per_group
        return b, d_offs, d_offs < dim, group, chunk_lo, tl.minimum(chunk_lo + chunks_per_group, n_chunks)

    @triton.jit
    def _direction_cols(u_ptr, dt_ptr, B_ptr, C_ptr, b, d_offs, s_ub, s_ud, s_dtb, s_dtd, s_Bb, s_Bn, s_Cb, s_Cn,
                        STATE: tl.constexpr):
        """Clip b's per-channel (u, delta: (1, BLOCK_D)) and per-state (B, C:
        (1, STATE)) pointers of one direction; callers add positions."""
        n_offs = tl.arange(0, STATE)
        return (u_ptr + b * s_ub + d_offs[None, :] * s_ud, dt_ptr + b * s_dtb + d_offs[None, :] * s_dtd,
                B_ptr + b * s_Bb + n_offs[None, :] * s_Bn, C_ptr + b * s_Cb + n_offs[None, :] * s_Cn)

    @triton.jit
    def _direction_params(A_ptr, D_ptr, bias_ptr, d_offs, d_mask, STATE: tl.constexpr):
        """A as (STATE, BLOCK_D), D and delta_bias (BLOCK_D,), all float32."""
        n_offs = tl.arange(0, STATE)
        A = tl.load(A_ptr + d_offs[None, :] * STATE + n_offs[:, None], mask=d_mask[None, :], other=0.0)
        D = tl.load(D_ptr + d_offs, mask=d_mask, other=0.0)
        bias = tl.load(bias_ptr + d_offs, mask=d_mask, other=0.0)
        return A.to(tl.float32), D.to(tl.float32), bias.to(tl.float32)

    @triton.jit
    def _delta_to_dt(delta_raw, bias, mask, SOFTPLUS: tl.constexpr):
        """(dt, delta + bias) of one chunk, (BLOCK_L, BLOCK_D) float32; dt is 0
        at masked positions, so they decay by 1 and take no input."""
        raw = delta_raw.to(tl.float32) + bias[None, :]
        dt = softplus(raw, False) if SOFTPLUS else raw
        return tl.where(mask, dt, 0.0), raw

    @triton.jit
    def _chunk_scan(decay, drive, h, REVERSE: tl.constexpr, BLOCK_L: tl.constexpr):
        """States of one chunk, (BLOCK_L, STATE, BLOCK_D), entering from ``h``
        (STATE, BLOCK_D): ``h`` is folded into the first step in scan order, so
        no running product of decays is needed. Returns (states, leaving state)."""
        l_offs = tl.arange(0, BLOCK_L)
        first = (l_offs == (BLOCK_L - 1 if REVERSE else 0))[:, None, None]
        drive = drive + tl.where(first, decay * h[None, :, :], 0.0)
        _, states = tl.associative_scan((decay, drive), axis=0, combine_fn=_affine_combine, reverse=REVERSE)
        # Masked positions are identities, so the last lane in scan order holds the carry.
        if REVERSE:
            leaving = tl.reduce(states, 0, _keep_first)
        else:
            leaving = tl.reduce(states, 0, _keep_last)
        return states, leaving

    @triton.jit
    def _next_chunk(chunk, chunk_lo, chunk_hi, REVERSE: tl.constexpr):
        """The chunk after ``chunk`` in scan order (``chunk`` itself at the end)."""
        if REVERSE:
            return tl.maximum(chunk - 1, chunk_lo)
        else:
            return tl.minimum(chunk + 1, chunk_hi - 1)

    @triton.jit
    def _forward_loads(u_cols, dt_cols, B_cols, C_cols, z_cols, out_cols, chunk, d_mask, length,
                       WRITE_OUT: tl.constexpr, ACCUMULATE: tl.constexpr, GATE: tl.constexpr, BLOCK_L: tl.constexpr):
        """Raw input tiles of one chunk: u, delta, z, accumulated out (BLOCK_L, BLOCK_D)
        and B, C (BLOCK_L, STATE), as stored. Unused ones are stand-ins (u)."""
        pos = chunk * BLOCK_L + tl.arange(0, BLOCK_L)
        l_mask = pos < length
        mask = l_mask[:, None] & d_mask[None, :]
        u = tl.load(u_cols + pos[:, None], mask=mask, other=0.0)
        delta = tl.load(dt_cols + pos[:, None], mask=mask, other=0.0)
        Bc = tl.load(B_cols + pos[:, None], mask=l_mask[:, None], other=0.0)
        Cc = Bc
        z = u
        acc = u
        if WRITE_OUT:
            Cc = tl.load(C_cols + pos[:, None], mask=l_mask[:, None], other=0.0)
            if GATE:
                z = tl.load(z_cols + pos[:, None], mask=mask, other=0.0)
            if ACCUMULATE:
                acc = tl.load(out_cols + pos[:, None], mask=mask, other=0.0)
        return u, delta, Bc, Cc, z, acc

    @triton.jit
    def _segment_forward(
        u_cols, dt_cols, B_cols, C_cols, z_cols, out_cols, state_cols,
        A, Dskip, bias, h, d_mask, length, chunk_lo, chunk_hi,
        REVERSE: tl.constexpr, WRITE_OUT: tl.constexpr, ACCUMULATE: tl.constexpr, GATE: tl.constexpr,
        SOFTPLUS: tl.constexpr, SAVE_STATES: tl.constexpr, STATE: tl.constexpr, BLOCK_L: tl.constexpr,
        CKPT: tl.constexpr = 1,
    ):
        """Scan chunks [chunk_lo, chunk_hi) in scan order (descending if REVERSE)
        from state ``h`` (STATE, BLOCK_D). Tiles are time-major, (BLOCK_L, STATE,
        BLOCK_D): each thread keeps a chunk's time steps in registers, so the
        scan needs no exchange between threads. ``*_cols`` are per-channel
        (per-state for B, C) pointers; positions are added here. The next
        chunk's loads are issued before this chunk's arithmetic, so their
        latency overlaps it. Returns (final state, sum of dt over the segment)."""
        l_offs = tl.arange(0, BLOCK_L)
        n_offs = tl.arange(0, STATE)
        A2 = A * LOG2E  # exp(x) = exp2(x log2 e)
        dt_sum = tl.sum(tl.zeros_like(h), axis=0)
        chunk = chunk_hi - 1 if REVERSE else chunk_lo
        loads = _forward_loads(u_cols, dt_cols, B_cols, C_cols, z_cols, out_cols, chunk, d_mask, length,
                               WRITE_OUT, ACCUMULATE, GATE, BLOCK_L)
        for _ in range(0, chunk_hi - chunk_lo):
            u_raw, delta_raw, B_raw, C_raw, z_raw, acc_raw = loads
            following = _next_chunk(chunk, chunk_lo, chunk_hi, REVERSE)
            loads = _forward_loads(u_cols, dt_cols, B_cols, C_cols, z_cols, out_cols, following, d_mask, length,
                                   WRITE_OUT, ACCUMULATE, GATE, BLOCK_L)
            pos = chunk * BLOCK_L + l_offs
            mask = (pos < length)[:, None] & d_mask[None, :]
            if SAVE_STATES:
                # For the backward: the state entering the first chunk (in scan
                # order) of every group of CKPT chunks, in slot chunk // CKPT.
                if REVERSE:
                    first = (chunk % CKPT == CKPT - 1) | (chunk == tl.cdiv(length, BLOCK_L) - 1)
                else:
                    first = chunk % CKPT == 0
                tl.store(state_cols + (chunk // CKPT) * STATE + n_offs[:, None], h, mask=d_mask[None, :] & first)
            u = u_raw.to(tl.float32)
            dt, _ = _delta_to_dt(delta_raw, bias, mask, SOFTPLUS)
            decay = tl.exp2(dt[:, None, :] * A2[None, :, :])  # (BLOCK_L, STATE, BLOCK_D)
            drive = (dt * u)[:, None, :] * B_raw.to(tl.float32)[:, :, None]
            states, h = _chunk_scan(decay, drive, h, REVERSE, BLOCK_L)
            dt_sum += tl.sum(dt, axis=0)
            if WRITE_OUT:
                y = tl.sum(states * C_raw.to(tl.float32)[:, :, None], axis=1) + Dskip[None, :] * u
                if ACCUMULATE:
                    y += acc_raw.to(tl.float32)
                if GATE:
                    z = z_raw.to(tl.float32)
                    y = y * z * tl.sigmoid(z)
                out_ptrs = out_cols + pos[:, None]
                tl.store(out_ptrs, y.to(out_ptrs.dtype.element_ty), mask=mask)
            chunk = following
        return h, dt_sum

    @triton.jit
    def _forward_pass(
        u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, seg_ptr, dtsum_ptr, state_cols, z_cols, out_cols,
        zero, seg_offs, rows, b, d_offs, d_mask, split, n_splits, length, chunk_lo, chunk_hi,
        s_ub, s_ud, s_dtb, s_dtd, s_Bb, s_Bn, s_Cb, s_Cn,
        REVERSE: tl.constexpr, END_STATES: tl.constexpr, SPLIT: tl.constexpr, ACCUMULATE: tl.constexpr,
        GATE: tl.constexpr, SOFTPLUS: tl.constexpr, SAVE_STATES: tl.constexpr, CKPT: tl.constexpr,
        STATE: tl.constexpr, BLOCK_L: tl.constexpr,
    ):
        """One direction's part of a segment. END_STATES: its end state from a
        zero start and its summed dt, into ``seg_ptr`` / ``dtsum_ptr``. Else its
        output (accumulated onto the other direction's if ACCUMULATE), from the
        start state the carry kernel left (SPLIT) or zero."""
        A, Dskip, bias = _direction_params(A_ptr, D_ptr, bias_ptr, d_offs, d_mask, STATE)
        u_cols, dt_cols, B_cols, C_cols = _direction_cols(u_ptr, dt_ptr, B_ptr, C_ptr, b, d_offs, s_ub, s_ud, s_dtb,
                                                          s_dtd, s_Bb, s_Bn, s_Cb, s_Cn, STATE)
        if END_STATES:
            # The segment that ends the scan (last in scan order) has no later segment to feed.
            if (split > 0) if REVERSE else (split < n_splits - 1):
                h, dts = _segment_forward(
                    u_cols, dt_cols, B_cols, C_cols, z_cols, out_cols, state_cols,
                    A, Dskip, bias, zero, d_mask, length, chunk_lo, chunk_hi,
                    REVERSE=REVERSE, WRITE_OUT=False, ACCUMULATE=False, GATE=False, SOFTPLUS=SOFTPLUS,
                    SAVE_STATES=False, STATE=STATE, BLOCK_L=BLOCK_L)
                tl.store(seg_ptr + seg_offs, h, mask=d_mask[None, :])
                tl.store(dtsum_ptr + rows * n_splits + split, dts, mask=d_mask)
        else:
            if ACCUMULATE:
                # This program re-reads the other direction's outputs its threads stored.
                tl.debug_barrier()
            h0 = tl.load(seg_ptr + seg_offs, mask=d_mask[None, :], other=0.0) if SPLIT else zero
            _segment_forward(
                u_cols, dt_cols, B_cols, C_cols, z_cols, out_cols, state_cols,
                A, Dskip, bias, h0, d_mask, length, chunk_lo, chunk_hi,
                REVERSE=REVERSE, WRITE_OUT=True, ACCUMULATE=ACCUMULATE, GATE=GATE,
                SOFTPLUS=SOFTPLUS, SAVE_STATES=SAVE_STATES, STATE=STATE, BLOCK_L=BLOCK_L, CKPT=CKPT)

    @triton.jit
    def _scan_fwd_kernel(
        u_f, dt_f, A_f, B_f, C_f, D_f, bias_f,
        u_b, dt_b, A_b, B_b, C_b, D_b, bias_b,
        z_ptr, out_ptr, seg_f, seg_b, dtsum_f, dtsum_b, chunks_f, chunks_b,
        dim, length, n_chunks, chunks_per_split, n_splits, n_slots,
        s_ufb, s_ufd, s_dtfb, s_dtfd, s_Bfb, s_Bfn, s_Cfb, s_Cfn,
        s_ubb, s_ubd, s_dtbb, s_dtbd, s_Bbb, s_Bbn, s_Cbb, s_Cbn,
        s_zb, s_zd,
        END_STATES: tl.constexpr, SPLIT: tl.constexpr, BIDIRECTIONAL: tl.constexpr, HAS_Z: tl.constexpr,
        SOFTPLUS: tl.constexpr, SAVE_STATES: tl.constexpr, CKPT: tl.constexpr,
        STATE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
    ):
        """Grid (batch, channel blocks, segments). END_STATES: write each
        segment's end state from a zero start (launch 1 of 3). Otherwise write
        y, starting each segment from the state the carry kernel left in
        ``seg_*`` (if SPLIT) or from zero."""
        b, d_offs, d_mask, split, chunk_lo, chunk_hi = _program_tile(dim, n_chunks, chunks_per_split, BLOCK_D)
        n_offs = tl.arange(0, STATE)
        rows = b * dim + d_offs  # row of (batch, dim) in out and the state buffers
        seg_offs = (rows[None, :] * n_splits + split) * STATE + n_offs[:, None]  # (STATE, BLOCK_D)
        state_cols = rows[None, :] * n_slots * STATE  # n_slots = ceil(n_chunks / CKPT)
        out_cols = out_ptr + rows[None, :] * length
        z_cols = z_ptr + b * s_zb + d_offs[None, :] * s_zd
        zero = tl.zeros([STATE, BLOCK_D], dtype=tl.float32)

        # Forward direction. Its output is ungated unless it is the only one.
        _forward_pass(
            u_f, dt_f, A_f, B_f, C_f, D_f, bias_f, seg_f, dtsum_f, chunks_f + state_cols, z_cols, out_cols,
            zero, seg_offs, rows, b, d_offs, d_mask, split, n_splits, length, chunk_lo, chunk_hi,
            s_ufb, s_ufd, s_dtfb, s_dtfd, s_Bfb, s_Bfn, s_Cfb, s_Cfn,
            REVERSE=False, END_STATES=END_STATES, SPLIT=SPLIT, ACCUMULATE=False, GATE=HAS_Z and not BIDIRECTIONAL,
            SOFTPLUS=SOFTPLUS, SAVE_STATES=SAVE_STATES, CKPT=CKPT, STATE=STATE, BLOCK_L=BLOCK_L)
        if BIDIRECTIONAL:
            _forward_pass(
                u_b, dt_b, A_b, B_b, C_b, D_b, bias_b, seg_b, dtsum_b, chunks_b + state_cols, z_cols, out_cols,
                zero, seg_offs, rows, b, d_offs, d_mask, split, n_splits, length, chunk_lo, chunk_hi,
                s_ubb, s_ubd, s_dtbb, s_dtbd, s_Bbb, s_Bbn, s_Cbb, s_Cbn,
                REVERSE=True, END_STATES=END_STATES, SPLIT=SPLIT, ACCUMULATE=True, GATE=HAS_Z,
                SOFTPLUS=SOFTPLUS, SAVE_STATES=SAVE_STATES, CKPT=CKPT, STATE=STATE, BLOCK_L=BLOCK_L)

    @triton.jit
    def _restore_states_kernel(
        u_f, dt_f, A_f, B_f, C_f, D_f, bias_f,
        u_b, dt_b, A_b, B_b, C_b, D_b, bias_b,
        ckpt_f, ckpt_b, chunks_f, chunks_b,
        dim, length, n_chunks, n_slots,
        s_ufb, s_ufd, s_dtfb, s_dtfd, s_Bfb, s_Bfn, s_Cfb, s_Cfn,
        s_ubb, s_ubd, s_dtbb, s_dtbd, s_Bbb, s_Bbn, s_Cbb, s_Cbn,
        BIDIRECTIONAL: tl.constexpr, SOFTPLUS: tl.constexpr, CKPT: tl.constexpr,
        STATE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
    ):
        """Grid (batch, channel blocks, groups of CKPT chunks): the state entering
        every chunk (``chunks_*``, (batch, dim, n_chunks, state)) re-scanned from
        the one the forward kept per group (``ckpt_*``, (batch, dim, n_slots,
        state)); groups are independent, so this runs fully parallel."""
        b, d_offs, d_mask, group, chunk_lo, chunk_hi = _program_tile(dim, n_chunks, CKPT, BLOCK_D)
        n_offs = tl.arange(0, STATE)
        rows = b * dim + d_offs
        ckpt_offs = (rows[None, :] * n_slots + group) * STATE + n_offs[:, None]
        state_cols = rows[None, :] * n_chunks * STATE
        A, Dskip, bias = _direction_params(A_f, D_f, bias_f, d_offs, d_mask, STATE)
        u_cols, dt_cols, B_cols, C_cols = _direction_cols(u_f, dt_f, B_f, C_f, b, d_offs, s_ufb, s_ufd, s_dtfb, s_dtfd, s_Bfb, s_Bfn, s_Cfb, s_Cfn, STATE)
        _segment_forward(
            u_cols, dt_cols, B_cols, C_cols, u_f, u_f, chunks_f + state_cols, A, Dskip, bias,
            tl.load(ckpt_f + ckpt_offs, mask=d_mask[None, :], other=0.0), d_mask, length, chunk_lo, chunk_hi,
            REVERSE=False, WRITE_OUT=False, ACCUMULATE=False, GATE=False, SOFTPLUS=SOFTPLUS,
            SAVE_STATES=True, STATE=STATE, BLOCK_L=BLOCK_L)
        if BIDIRECTIONAL:
            A, Dskip, bias = _direction_params(A_b, D_b, bias_b, d_offs, d_mask, STATE)
            u_cols, dt_cols, B_cols, C_cols = _direction_cols(u_b, dt_b, B_b, C_b, b, d_offs, s_ubb, s_ubd, s_dtbb, s_dtbd, s_Bbb, s_Bbn, s_Cbb, s_Cbn, STATE)
            _segment_forward(
                u_cols, dt_cols, B_cols, C_cols, u_b, u_b, chunks_b + state_cols, A, Dskip, bias,
                tl.load(ckpt_b + ckpt_offs, mask=d_mask[None, :], other=0.0), d_mask, length, chunk_lo, chunk_hi,
                REVERSE=True, WRITE_OUT=False, ACCUMULATE=False, GATE=False, SOFTPLUS=SOFTPLUS,
                SAVE_STATES=True, STATE=STATE, BLOCK_L=BLOCK_L)

    @triton.jit
    def _carry_direction(seg_ptr, dtsum_ptr, A_ptr, rows, d_offs, d_mask, n_splits,
                         REVERSE: tl.constexpr, STATE: tl.constexpr, SPLITS: tl.constexpr):
        """Replace every segment's local end state (from a zero start) with its
        true start state: h_i = decay_i * h_(i-1) + end_i over segments in scan
        order, decay_i = exp(A * its summed dt). All segments are loaded at
        once and combined by an associative scan; element i holds segment
        i - 1's pair, so the inclusive scan at i is segment i's start (a loop
        over segments waited on one dependent load after another: 85 us a
        launch at VideoMamba-Ti, 64 frames, batch 4)."""
        n_offs = tl.arange(0, STATE)[None, :, None]
        order = tl.arange(0, SPLITS)[:, None, None]  # scan order
        seg = n_splits - 1 - order if REVERSE else order
        prev = seg + 1 if REVERSE else seg - 1  # the segment before, in scan order
        has_prev = (order >= 1) & (order < n_splits)
        cols = d_offs[None, None, :]
        col_mask = d_mask[None, None, :]
        A2 = tl.load(A_ptr + cols * STATE + n_offs, mask=col_mask, other=0.0).to(tl.float32) * LOG2E
        row_offs = rows[None, None, :] * n_splits
        prev_end = tl.load(seg_ptr + (row_offs + prev) * STATE + n_offs, mask=has_prev & col_mask, other=0.0)
        prev_dt = tl.load(dtsum_ptr + row_offs + prev, mask=has_prev & col_mask, other=0.0)
        _, start = tl.associative_scan((tl.exp2(A2 * prev_dt), prev_end), axis=0, combine_fn=_affine_combine)
        tl.store(seg_ptr + (row_offs + seg) * STATE + n_offs, start, mask=(order < n_splits) & col_mask)

    @triton.jit
    def _scan_carry_kernel(seg_f, dtsum_f, A_f, seg_b, dtsum_b, A_b, dim, n_splits,
                           BIDIRECTIONAL: tl.constexpr, ADJOINT: tl.constexpr, STATE: tl.constexpr,
                           BLOCK_D: tl.constexpr, SPLITS: tl.constexpr):
        """Grid (batch, channel blocks): launch 2 of 3 of a split forward, or of
        a split backward (ADJOINT: segments walked against scan order).
        SPLITS: n_splits rounded up to a power of two."""
        b = tl.program_id(0).to(tl.int64)
        d_offs = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        d_mask = d_offs < dim
        rows = b * dim + d_offs
        _carry_direction(seg_f, dtsum_f, A_f, rows, d_offs, d_mask, n_splits, REVERSE=ADJOINT, STATE=STATE,
                         SPLITS=SPLITS)
        if BIDIRECTIONAL:
            _carry_direction(seg_b, dtsum_b, A_b, rows, d_offs, d_mask, n_splits, REVERSE=not ADJOINT, STATE=STATE,
                             SPLITS=SPLITS)

    @triton.jit
    def _backward_loads(u_cols, dt_cols, B_cols, C_cols, z_cols, g_cols, ybuf_cols, state_cols,
                        chunk, d_mask, length, REVERSE: tl.constexpr, Z_MODE: tl.constexpr,
                        STATE: tl.constexpr, BLOCK_L: tl.constexpr):
        """Everything the backward reads for one chunk, as stored: the entering
        state, u, delta, delta one step later in scan order, B, C, the output
        gradient, z and the other direction's stashed y (stand-ins when unused)."""
        pos = chunk * BLOCK_L + tl.arange(0, BLOCK_L)
        l_mask = pos < length
        mask = l_mask[:, None] & d_mask[None, :]
        h0 = tl.load(state_cols + chunk * STATE + tl.arange(0, STATE)[:, None], mask=d_mask[None, :], other=0.0)
        u = tl.load(u_cols + pos[:, None], mask=mask, other=0.0)
        delta = tl.load(dt_cols + pos[:, None], mask=mask, other=0.0)
        pos_next = pos - 1 if REVERSE else pos + 1
        next_mask = mask & ((pos_next >= 0) & (pos_next < length))[:, None]
        delta_next = tl.load(dt_cols + pos_next[:, None], mask=next_mask, other=0.0)
        Bc = tl.load(B_cols + pos[:, None], mask=l_mask[:, None], other=0.0)
        Cc = tl.load(C_cols + pos[:, None], mask=l_mask[:, None], other=0.0)
        g = tl.load(g_cols + pos[:, None], mask=mask, other=0.0)
        z = g
        y_other = tl.zeros_like(g.to(tl.float32))
        if Z_MODE != 0:
            z = tl.load(z_cols + pos[:, None], mask=mask, other=0.0)
        if Z_MODE == 2:
            y_other = tl.load(ybuf_cols + pos[:, None], mask=mask, other=0.0)
        return h0, u, delta, delta_next, Bc, Cc, g, z, y_other

    @triton.jit
    def _direction_backward(
        u_cols, dt_cols, B_cols, C_cols, z_cols, g_cols, ybuf_cols, state_cols,
        du_cols, ddt_cols, dB_cols, dC_cols, dA_ptr, dD_ptr, dbias_ptr,
        A, Dskip, bias, lam_carry, d_offs, d_mask, length, chunk_lo, chunk_hi,
        REVERSE: tl.constexpr, Z_MODE: tl.constexpr, SOFTPLUS: tl.constexpr,
        STATE: tl.constexpr, BLOCK_L: tl.constexpr,
    ):
        """Gradients of one direction over chunks [chunk_lo, chunk_hi), walked in
        reverse scan order, time-major tiles as in _segment_forward. ``lam_carry``
        (STATE, BLOCK_D) is the adjoint state entering the segment.

        Z_MODE: 0 no gate; 1 gate, stash this direction's y (float32) in ybuf
        for the other direction; 2 gate, add the stashed y and write dz to ybuf;
        3 gate of a single direction: write dz to ybuf.
        """
        l_offs = tl.arange(0, BLOCK_L)
        n_offs = tl.arange(0, STATE)
        A2 = A * LOG2E
        dA_acc = tl.zeros_like(A)
        dD_acc = tl.sum(tl.zeros_like(A), axis=0)
        dbias_acc = tl.sum(tl.zeros_like(A), axis=0)
        chunk = chunk_lo if REVERSE else chunk_hi - 1
        loads = _backward_loads(u_cols, dt_cols, B_cols, C_cols, z_cols, g_cols, ybuf_cols, state_cols,
                                chunk, d_mask, length, REVERSE, Z_MODE, STATE, BLOCK_L)
        for _ in range(0, chunk_hi - chunk_lo):
            h0, u_raw, delta_raw, next_raw, B_raw, C_raw, g_raw, z_raw, y_other = loads
            following = _next_chunk(chunk, chunk_lo, chunk_hi, not REVERSE)
            loads = _backward_loads(u_cols, dt_cols, B_cols, C_cols, z_cols, g_cols, ybuf_cols, state_cols,
                                    following, d_mask, length, REVERSE, Z_MODE, STATE, BLOCK_L)
            pos = chunk * BLOCK_L + l_offs
            l_mask = pos < length
            mask = l_mask[:, None] & d_mask[None, :]
            # Re-scan this chunk's states from the saved entering state.
            u = u_raw.to(tl.float32)
            dt, raw = _delta_to_dt(delta_raw, bias, mask, SOFTPLUS)
            Bc = B_raw.to(tl.float32)
            Cc = C_raw.to(tl.float32)
            decay = tl.exp2(dt[:, None, :] * A2[None, :, :])
            drive = (dt * u)[:, None, :] * Bc[:, :, None]
            states, _ = _chunk_scan(decay, drive, h0, REVERSE, BLOCK_L)

            g = g_raw.to(tl.float32)
            if Z_MODE == 0:
                dy = g
            else:
                z = z_raw.to(tl.float32)
                sig = tl.sigmoid(z)
                dy = g * z * sig
                y = tl.sum(states * Cc[:, :, None], axis=1) + Dskip[None, :] * u
                if Z_MODE == 1:
                    tl.store(ybuf_cols + pos[:, None], y, mask=mask)
                else:
                    if Z_MODE == 2:
                        y += y_other
                    tl.store(ybuf_cols + pos[:, None], g * y * sig * (1.0 + z * (1.0 - sig)), mask=mask)

            # Adjoint: lambda_t = C_t dy_t + decay_{next} lambda_{next}, run against
            # scan order; the next step's decay comes from a shifted load (0 beyond
            # the ends: decay 1), so no values move between registers.
            pos_next = pos - 1 if REVERSE else pos + 1
            next_mask = mask & ((pos_next >= 0) & (pos_next < length))[:, None]
            dt_next, _ = _delta_to_dt(next_raw, bias, next_mask, SOFTPLUS)
            decay_next = tl.exp2(dt_next[:, None, :] * A2[None, :, :])
            lam, lam_carry = _chunk_scan(decay_next, Cc[:, :, None] * dy[:, None, :], lam_carry,
                                         not REVERSE, BLOCK_L)

            # decay_t * h_{t-1} = h_t - drive_t: no division by a decay that may underflow.
            lam_prev = lam * (states - drive)
            dA_acc += tl.sum(lam_prev * dt[:, None, :], axis=0)
            lam_B = tl.sum(lam * Bc[:, :, None], axis=1)  # (BLOCK_L, BLOCK_D)
            ddt = lam_B * u + tl.sum(lam_prev * A[None, :, :], axis=1)
            du = dy * Dskip[None, :] + dt * lam_B
            ddelta = ddt * tl.sigmoid(raw) if SOFTPLUS else ddt
            ddelta = tl.where(mask, ddelta, 0.0)
            dD_acc += tl.sum(dy * u, axis=0)
            dbias_acc += tl.sum(ddelta, axis=0)
            tl.store(du_cols + pos[:, None], du.to(du_cols.dtype.element_ty), mask=mask)
            tl.store(ddt_cols + pos[:, None], ddelta.to(ddt_cols.dtype.element_ty), mask=mask)
            # B and C are shared by all channels: reduce this block, add atomically.
            tl.atomic_add(dB_cols + pos[:, None], tl.sum(lam * (dt * u)[:, None, :], axis=2),
                          mask=l_mask[:, None])
            tl.atomic_add(dC_cols + pos[:, None], tl.sum(states * dy[:, None, :], axis=2),
                          mask=l_mask[:, None])
            chunk = following
        tl.atomic_add(dA_ptr + d_offs[None, :] * STATE + n_offs[:, None], dA_acc, mask=d_mask[None, :])
        tl.atomic_add(dD_ptr + d_offs, dD_acc, mask=d_mask)
        tl.atomic_add(dbias_ptr + d_offs, dbias_acc, mask=d_mask)

    @triton.jit
    def _segment_adjoint_end(dt_cols, C_cols, z_cols, g_cols, A, bias, d_mask, length, chunk_lo, chunk_hi,
                             REVERSE: tl.constexpr, HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr,
                             BLOCK_L: tl.constexpr):
        """Adjoint state leaving a segment (walked against scan order) from a
        zero start, and the sum of the dt whose decays it crossed: launch 1 of 3
        of a split backward. Needs no forward state: the adjoint's inputs are
        C_t dy_t and its decays exp(dt_next A)."""
        l_offs = tl.arange(0, BLOCK_L)
        A2 = A * LOG2E
        lam = tl.zeros_like(A)
        dt_sum = tl.sum(tl.zeros_like(A), axis=0)
        for i in range(0, chunk_hi - chunk_lo):
            chunk = chunk_lo + i if REVERSE else chunk_hi - 1 - i
            pos = chunk * BLOCK_L + l_offs
            l_mask = pos < length
            mask = l_mask[:, None] & d_mask[None, :]
            pos_next = pos - 1 if REVERSE else pos + 1
            next_mask = mask & ((pos_next >= 0) & (pos_next < length))[:, None]
            next_raw = tl.load(dt_cols + pos_next[:, None], mask=next_mask, other=0.0)
            dt_next, _ = _delta_to_dt(next_raw, bias, next_mask, SOFTPLUS)
            Cc = tl.load(C_cols + pos[:, None], mask=l_mask[:, None], other=0.0).to(tl.float32)
            dy = tl.load(g_cols + pos[:, None], mask=mask, other=0.0).to(tl.float32)
            if HAS_Z:
                z = tl.load(z_cols + pos[:, None], mask=mask, other=0.0).to(tl.float32)
                dy = dy * z * tl.sigmoid(z)
            decay_next = tl.exp2(dt_next[:, None, :] * A2[None, :, :])
            _, lam = _chunk_scan(decay_next, Cc[:, :, None] * dy[:, None, :], lam, not REVERSE, BLOCK_L)
            dt_sum += tl.sum(dt_next, axis=0)
        return lam, dt_sum

    @triton.jit
    def _adjoint_end_kernel(
        dt_f, A_f, C_f, D_f, bias_f, dt_b, A_b, C_b, D_b, bias_b, z_ptr, g_ptr,
        seg_f, seg_b, dtsum_f, dtsum_b,
        dim, length, n_chunks, chunks_per_split, n_splits,
        s_dtfb, s_dtfd, s_Cfb, s_Cfn, s_dtbb, s_dtbd, s_Cbb, s_Cbn, s_zb, s_zd, s_gb, s_gd,
        BIDIRECTIONAL: tl.constexpr, HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr,
        STATE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
    ):
        """Grid (batch, channel blocks, segments): every segment's local adjoint end state."""
        b, d_offs, d_mask, split, chunk_lo, chunk_hi = _program_tile(dim, n_chunks, chunks_per_split, BLOCK_D)
        n_offs = tl.arange(0, STATE)
        rows = b * dim + d_offs
        seg_offs = (rows[None, :] * n_splits + split) * STATE + n_offs[:, None]
        z_cols = z_ptr + b * s_zb + d_offs[None, :] * s_zd
        g_cols = g_ptr + b * s_gb + d_offs[None, :] * s_gd
        if split > 0:  # the forward direction's adjoint ends in segment 0
            A, _, bias = _direction_params(A_f, D_f, bias_f, d_offs, d_mask, STATE)
            lam, dts = _segment_adjoint_end(
                dt_f + b * s_dtfb + d_offs[None, :] * s_dtfd, C_f + b * s_Cfb + n_offs[None, :] * s_Cfn,
                z_cols, g_cols, A, bias, d_mask, length, chunk_lo, chunk_hi,
                REVERSE=False, HAS_Z=HAS_Z, SOFTPLUS=SOFTPLUS, BLOCK_L=BLOCK_L)
            tl.store(seg_f + seg_offs, lam, mask=d_mask[None, :])
            tl.store(dtsum_f + rows * n_splits + split, dts, mask=d_mask)
        if BIDIRECTIONAL:
            if split < n_splits - 1:  # the backward direction's adjoint ends in the last segment
                A, _, bias = _direction_params(A_b, D_b, bias_b, d_offs, d_mask, STATE)
                lam, dts = _segment_adjoint_end(
                    dt_b + b * s_dtbb + d_offs[None, :] * s_dtbd, C_b + b * s_Cbb + n_offs[None, :] * s_Cbn,
                    z_cols, g_cols, A, bias, d_mask, length, chunk_lo, chunk_hi,
                    REVERSE=True, HAS_Z=HAS_Z, SOFTPLUS=SOFTPLUS, BLOCK_L=BLOCK_L)
                tl.store(seg_b + seg_offs, lam, mask=d_mask[None, :])
                tl.store(dtsum_b + rows * n_splits + split, dts, mask=d_mask)

    @triton.jit
    def _backward_pass(
        u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, chunks_ptr, seg_ptr,
        du_ptr, ddt_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr, state_cols, grad_cols, bc_grad_cols,
        z_cols, g_cols, ybuf_cols, zero, seg_offs, b, d_offs, d_mask, length, chunk_lo, chunk_hi,
        s_ub, s_ud, s_dtb, s_dtd, s_Bb, s_Bn, s_Cb, s_Cn,
        REVERSE: tl.constexpr, Z_MODE: tl.constexpr, SPLIT: tl.constexpr, SOFTPLUS: tl.constexpr,
        STATE: tl.constexpr, BLOCK_L: tl.constexpr,
    ):
        """One direction's gradients over a segment, from the adjoint state the
        carry kernel left in ``seg_ptr`` (SPLIT) or zero."""
        A, Dskip, bias = _direction_params(A_ptr, D_ptr, bias_ptr, d_offs, d_mask, STATE)
        lam0 = tl.load(seg_ptr + seg_offs, mask=d_mask[None, :], other=0.0) if SPLIT else zero
        u_cols, dt_cols, B_cols, C_cols = _direction_cols(u_ptr, dt_ptr, B_ptr, C_ptr, b, d_offs, s_ub, s_ud, s_dtb,
                                                          s_dtd, s_Bb, s_Bn, s_Cb, s_Cn, STATE)
        _direction_backward(
            u_cols, dt_cols, B_cols, C_cols, z_cols, g_cols, ybuf_cols, chunks_ptr + state_cols,
            du_ptr + grad_cols, ddt_ptr + grad_cols, dB_ptr + bc_grad_cols, dC_ptr + bc_grad_cols, dA_ptr, dD_ptr,
            dbias_ptr, A, Dskip, bias, lam0, d_offs, d_mask, length, chunk_lo, chunk_hi,
            REVERSE=REVERSE, Z_MODE=Z_MODE, SOFTPLUS=SOFTPLUS, STATE=STATE, BLOCK_L=BLOCK_L)

    @triton.jit
    def _scan_bwd_kernel(
        u_f, dt_f, A_f, B_f, C_f, D_f, bias_f, chunks_f,
        du_f, ddt_f, dB_f, dC_f, dA_f, dD_f, dbias_f,
        u_b, dt_b, A_b, B_b, C_b, D_b, bias_b, chunks_b,
        du_b, ddt_b, dB_b, dC_b, dA_b, dD_b, dbias_b,
        z_ptr, g_ptr, ybuf_ptr, seg_f, seg_b,
        dim, length, n_chunks, chunks_per_split, n_splits,
        s_ufb, s_ufd, s_dtfb, s_dtfd, s_Bfb, s_Bfn, s_Cfb, s_Cfn,
        s_ubb, s_ubd, s_dtbb, s_dtbd, s_Bbb, s_Bbn, s_Cbb, s_Cbn,
        s_zb, s_zd, s_gb, s_gd,
        BIDIRECTIONAL: tl.constexpr, HAS_Z: tl.constexpr, Z_FIRST: tl.constexpr, SOFTPLUS: tl.constexpr,
        SPLIT: tl.constexpr, STATE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
    ):
        """Grid (batch, channel blocks, segments); with SPLIT each segment starts
        from the adjoint state the carry kernel left in ``seg_*``. Z_FIRST: the forward direction's Z_MODE
        (see _direction_backward). Gradient outputs du, ddelta are
        contiguous (batch, dim, length); dB, dC float32 (batch, state, length);
        dA (dim, state), dD, dbias (dim,) float32, all zero-initialised where
        atomically accumulated."""
        b, d_offs, d_mask, split, chunk_lo, chunk_hi = _program_tile(dim, n_chunks, chunks_per_split, BLOCK_D)
        n_offs = tl.arange(0, STATE)
        rows = b * dim + d_offs
        state_cols = rows[None, :] * n_chunks * STATE
        grad_cols = rows[None, :] * length
        bc_grad_cols = (b * STATE + n_offs[None, :]) * length
        z_cols = z_ptr + b * s_zb + d_offs[None, :] * s_zd
        g_cols = g_ptr + b * s_gb + d_offs[None, :] * s_gd
        ybuf_cols = ybuf_ptr + grad_cols
        seg_offs = (rows[None, :] * n_splits + split) * STATE + n_offs[:, None]
        zero = tl.zeros([STATE, BLOCK_D], dtype=tl.float32)

        _backward_pass(
            u_f, dt_f, A_f, B_f, C_f, D_f, bias_f, chunks_f, seg_f,
            du_f, ddt_f, dB_f, dC_f, dA_f, dD_f, dbias_f, state_cols, grad_cols, bc_grad_cols,
            z_cols, g_cols, ybuf_cols, zero, seg_offs, b, d_offs, d_mask, length, chunk_lo, chunk_hi,
            s_ufb, s_ufd, s_dtfb, s_dtfd, s_Bfb, s_Bfn, s_Cfb, s_Cfn,
            REVERSE=False, Z_MODE=Z_FIRST, SPLIT=SPLIT, SOFTPLUS=SOFTPLUS, STATE=STATE, BLOCK_L=BLOCK_L)
        if BIDIRECTIONAL:
            tl.debug_barrier()  # the stashed forward-direction y is read by other threads
            _backward_pass(
                u_b, dt_b, A_b, B_b, C_b, D_b, bias_b, chunks_b, seg_b,
                du_b, ddt_b, dB_b, dC_b, dA_b, dD_b, dbias_b, state_cols, grad_cols, bc_grad_cols,
                z_cols, g_cols, ybuf_cols, zero, seg_offs, b, d_offs, d_mask, length, chunk_lo, chunk_hi,
                s_ubb, s_ubd, s_dtbb, s_dtbd, s_Bbb, s_Bbn, s_Cbb, s_Cbn,
                REVERSE=True, Z_MODE=2 if HAS_Z else 0, SPLIT=SPLIT, SOFTPLUS=SOFTPLUS, STATE=STATE, BLOCK_L=BLOCK_L)


def _launch_options(num_warps: int, max_registers: Optional[int]) -> dict:
    options = {"num_warps": num_warps}
    if max_registers is not None:
        options["maxnreg"] = max_registers
    return options


def _check_unit_stride(name: str, t: Tensor) -> None:
    if t.stride(-1) != 1 and t.shape[-1] != 1:
        raise ValueError(f"triton scan: {name} needs unit stride along length, got strides {t.stride()}")


def _prepare(direction: ScanInputs) -> ScanInputs:
    """Check strides; parameters (A, D, delta_bias) as contiguous float32."""
    u, delta, A, B, C, D, bias = direction
    for name, t in (("u", u), ("delta", delta), ("B", B), ("C", C)):
        _check_unit_stride(name, t)
    return u, delta, A.float().contiguous(), B, C, D.float().contiguous(), bias.float().contiguous()


def _row_strides(direction: ScanInputs) -> list[int]:
    u, delta, _, B, C, _, _ = direction
    return [u.stride(0), u.stride(1), delta.stride(0), delta.stride(1),
            B.stride(0), B.stride(1), C.stride(0), C.stride(1)]


def _segments(batch: int, dim: int, length: int, block_d: int, config: TritonScanConfig) -> tuple[int, int]:
    """(segments, chunks per segment) for programs of ``block_d`` channels; every segment non-empty."""
    return split_layout(_cdiv(length, config.block_l),
                        choose_splits(batch, dim, length, dataclasses.replace(config, block_d=block_d)))


def _backward_segments(batch: int, dim: int, length: int, config: TritonScanConfig) -> tuple[int, int]:
    """(segments, chunks per segment) of the backward: ``config.splits`` if
    fixed, else 1 from ``backward_min_programs`` programs up, else as many as
    fit in ``backward_split_target`` programs. Measured (docs/benchmarks.md):
    rounding up past a full wave, or not splitting at 768 programs, cost up to
    1.4x."""
    n_chunks = _cdiv(length, config.block_l)
    splits = splits_for(batch * _cdiv(dim, config.backward_block_d), n_chunks, config.splits,
                        config.backward_min_programs, config.backward_split_target, round_up=False)
    return split_layout(n_chunks, splits)


#: Channels per program of the segment-carry launch (its tile is splits x state x these).
_CARRY_BLOCK_D = 4


def carry_segments(seg_f: Tensor, dtsum_f: Tensor, A_f: Tensor, seg_b: Tensor, dtsum_b: Tensor, A_b: Tensor,
                   batch: int, dim: int, splits: int, state: int, bidirectional: bool, adjoint: bool) -> None:
    """Launch 2 of 3 of a split scan: every segment's local end state in
    ``seg_*`` (batch, dim, splits, state) becomes its start state, in place;
    ``adjoint`` walks segments against scan order (the split backward)."""
    _scan_carry_kernel[(batch, _cdiv(dim, _CARRY_BLOCK_D))](
        seg_f, dtsum_f, A_f, seg_b, dtsum_b, A_b, dim, splits,
        BIDIRECTIONAL=bidirectional, ADJOINT=adjoint, STATE=state, BLOCK_D=_CARRY_BLOCK_D,
        SPLITS=triton.next_power_of_2(splits))


def _segment_buffers(batch: int, dim: int, splits: int, state: int, bidirectional: bool,
                     unused: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(seg_f, seg_b, dtsum_f, dtsum_b) of a scan split into ``splits``
    segments: float32 segment states (batch, dim, splits, state) and summed dt
    (batch, dim, splits) per direction. Without a split, ``unused`` stands in
    for all four (never read)."""
    if splits == 1:
        return unused, unused, unused, unused
    seg_f = torch.empty(batch, dim, splits, state, device=unused.device, dtype=torch.float32)
    dtsum_f = torch.empty(batch, dim, splits, device=unused.device, dtype=torch.float32)
    if not bidirectional:
        return seg_f, seg_f, dtsum_f, dtsum_f
    return seg_f, torch.empty_like(seg_f), dtsum_f, torch.empty_like(dtsum_f)


def _adjoint_segment_starts(f: ScanInputs, b: ScanInputs, zt: Tensor, grad_out: Tensor, bidirectional: bool,
                            has_z: bool, delta_softplus: bool, n_chunks: int, chunks_per_split: int, splits: int,
                            block_l: int, block_d: int, options: dict, unused: Tensor) -> tuple[Tensor, Tensor]:
    """Launches 1 and 2 of a backward split into ``splits`` segments (of
    ``chunks_per_split`` chunks of ``block_l``): every segment's local adjoint
    end state, then the carry pass. Returns (seg_f, seg_b), the adjoint state
    entering each segment per direction (``unused`` without a split)."""
    batch, dim, length = f[0].shape
    state = f[2].shape[1]
    seg_f, seg_b, dtsum_f, dtsum_b = _segment_buffers(batch, dim, splits, state, bidirectional, unused)
    if splits > 1:
        _adjoint_end_kernel[(batch, _cdiv(dim, block_d), splits)](
            f[1], f[2], f[4], f[5], f[6], b[1], b[2], b[4], b[5], b[6], zt, grad_out, seg_f, seg_b, dtsum_f, dtsum_b,
            dim, length, n_chunks, chunks_per_split, splits,
            f[1].stride(0), f[1].stride(1), f[4].stride(0), f[4].stride(1),
            b[1].stride(0), b[1].stride(1), b[4].stride(0), b[4].stride(1),
            zt.stride(0), zt.stride(1), grad_out.stride(0), grad_out.stride(1),
            BIDIRECTIONAL=bidirectional, HAS_Z=has_z, SOFTPLUS=delta_softplus,
            STATE=state, BLOCK_D=block_d, BLOCK_L=block_l, **options)
        carry_segments(seg_f, dtsum_f, f[2], seg_b, dtsum_b, b[2], batch, dim, splits, state, bidirectional,
                       adjoint=True)
    return seg_f, seg_b


def scan_forward(
    forward: ScanInputs,
    backward: Optional[ScanInputs],
    z: Optional[Tensor],
    delta_softplus: bool = True,
    config: TritonScanConfig = DEFAULT_CONFIG,
    save_states: bool = False,
) -> tuple[Tensor, Optional[tuple[Tensor, Optional[Tensor]]]]:
    """Launch the forward kernels (no autograd): returns (y, saved states or None).

    Saved states are float32 (batch, dim, n_slots, state) per direction, n_slots
    = ceil(n_chunks / config.state_checkpoint_chunks): the state entering the
    first chunk (in that direction's scan order) of every group of chunks.
    """
    if config.gluon_forward and forward[0].is_cuda:
        # Imported here: gluon_scan builds on this module's contract.
        from .gluon_scan import gluon_available, gluon_scan_forward

        if gluon_available():
            return gluon_scan_forward(
                forward, backward, z, delta_softplus,
                checkpoint_positions=config.block_l * config.state_checkpoint_chunks if save_states else None)
    f = _prepare(forward)
    b = _prepare(backward) if backward is not None else f
    u = f[0]
    batch, dim, length = u.shape
    state = f[2].shape[1]
    if state & (state - 1):
        raise ValueError(f"triton scan: state size must be a power of two, got {state}")
    if z is not None:
        _check_unit_stride("z", z)
    zt = z if z is not None else u
    n_chunks = _cdiv(length, config.block_l)
    splits, chunks_per_split = _segments(batch, dim, length, config.block_d, config)
    out = torch.empty(batch, dim, length, device=u.device, dtype=u.dtype)
    f32 = dict(device=u.device, dtype=torch.float32)
    bidirectional = backward is not None
    n_slots = _cdiv(n_chunks, config.state_checkpoint_chunks)
    if save_states:
        chunks_f = torch.empty(batch, dim, n_slots, state, **f32)
        chunks_b = torch.empty(batch, dim, n_slots, state, **f32) if bidirectional else chunks_f
    else:
        chunks_f = chunks_b = out  # never written
    seg_f, seg_b, dtsum_f, dtsum_b = _segment_buffers(batch, dim, splits, state, bidirectional, out)
    grid = (batch, _cdiv(dim, config.block_d), splits)
    args = [*f, *b, zt, out, seg_f, seg_b, dtsum_f, dtsum_b, chunks_f, chunks_b,
            dim, length, n_chunks, chunks_per_split, splits, n_slots,
            *_row_strides(f), *_row_strides(b), zt.stride(0), zt.stride(1)]
    flags = dict(SPLIT=splits > 1, BIDIRECTIONAL=bidirectional, HAS_Z=z is not None, SOFTPLUS=delta_softplus,
                 SAVE_STATES=save_states, CKPT=config.state_checkpoint_chunks, STATE=state,
                 BLOCK_D=config.block_d, BLOCK_L=config.block_l,
                 **_launch_options(config.num_warps, config.max_registers))
    if splits > 1:
        _scan_fwd_kernel[grid](*args, END_STATES=True, **flags)
        carry_segments(seg_f, dtsum_f, f[2], seg_b, dtsum_b, b[2], batch, dim, splits, state, bidirectional,
                       adjoint=False)
    _scan_fwd_kernel[grid](*args, END_STATES=False, **flags)
    saved = (chunks_f, chunks_b if bidirectional else None) if save_states else None
    return out, saved


def _restore_chunk_states(f: ScanInputs, b: Optional[ScanInputs], saved: tuple[Tensor, Optional[Tensor]],
                          delta_softplus: bool, config: TritonScanConfig) -> tuple[Tensor, Optional[Tensor]]:
    """The state entering every chunk, from the forward's per-group checkpoints."""
    if config.state_checkpoint_chunks == 1:
        return saved
    batch, dim, length = f[0].shape
    state = f[2].shape[1]
    n_chunks = _cdiv(length, config.block_l)
    n_slots = saved[0].shape[2]
    chunks_f = torch.empty(batch, dim, n_chunks, state, device=f[0].device, dtype=torch.float32)
    chunks_b = torch.empty_like(chunks_f) if b is not None else chunks_f
    other = b if b is not None else f
    _restore_states_kernel[(batch, _cdiv(dim, config.block_d), n_slots)](
        *f, *other, saved[0], saved[1] if b is not None else saved[0], chunks_f, chunks_b,
        dim, length, n_chunks, n_slots, *_row_strides(f), *_row_strides(other),
        BIDIRECTIONAL=b is not None, SOFTPLUS=delta_softplus, CKPT=config.state_checkpoint_chunks,
        STATE=state, BLOCK_D=config.block_d, BLOCK_L=config.block_l,
        **_launch_options(config.num_warps, config.max_registers))
    return chunks_f, (chunks_b if b is not None else None)


def _gradients_in_input_order(
    forward: ScanInputs, backward: Optional[ScanInputs], grads_f: list[Tensor], grads_b: Optional[list[Tensor]],
    z: Optional[Tensor], dz: Tensor,
) -> tuple[list[Tensor], Optional[list[Tensor]], Optional[Tensor]]:
    """A backward's result: each direction's [du, ddelta, dA, dB, dC, dD,
    ddelta_bias] (given in that order) in its input's dtype, then dz (float32
    ``dz`` cast to z's dtype) or None."""

    def cast(original: ScanInputs, grads: list[Tensor]) -> list[Tensor]:
        du, ddelta, dA, dB, dC, dD, dbias = grads
        _, _, A, B, C, D, bias = original
        return [du, ddelta, dA.to(A.dtype), dB.to(B.dtype), dC.to(C.dtype), dD.to(D.dtype), dbias.to(bias.dtype)]

    return (cast(forward, grads_f), cast(backward, grads_b) if backward is not None else None,
            dz.to(z.dtype) if z is not None else None)


def scan_backward(
    forward: ScanInputs,
    backward: Optional[ScanInputs],
    z: Optional[Tensor],
    saved: tuple[Tensor, Optional[Tensor]],
    grad_out: Tensor,
    delta_softplus: bool = True,
    config: TritonScanConfig = DEFAULT_CONFIG,
) -> tuple[list[Tensor], Optional[list[Tensor]], Optional[Tensor]]:
    """Gradients of :func:`scan_forward`'s output; ``config.block_l`` must be the
    forward's (it defines the saved chunk states). Returns
    ([du, ddelta, dA, dB, dC, dD, ddelta_bias] forward, the same backward or None, dz or None),
    each in its input's dtype."""
    if config.gluon_backward and forward[0].is_cuda:
        from .gluon_backward import gluon_scan_backward  # imported here: it builds on this module
        from .gluon_scan import gluon_available

        if gluon_available():
            return gluon_scan_backward(forward, backward, z, saved, grad_out, delta_softplus,
                                       checkpoint_positions=config.block_l * config.state_checkpoint_chunks)
    f = _prepare(forward)
    b = _prepare(backward) if backward is not None else f
    u = f[0]
    batch, dim, length = u.shape
    state = f[2].shape[1]
    n_chunks = _cdiv(length, config.block_l)
    n_slots = _cdiv(n_chunks, config.state_checkpoint_chunks)
    if saved[0].shape != (batch, dim, n_slots, state):
        raise ValueError(f"triton scan backward: saved states {tuple(saved[0].shape)} do not match "
                         f"block_l={config.block_l}, state_checkpoint_chunks={config.state_checkpoint_chunks} "
                         f"(expected {(batch, dim, n_slots, state)})")
    bidirectional = backward is not None
    saved = _restore_chunk_states(f, b if bidirectional else None, saved, delta_softplus, config)
    if grad_out.stride(-1) != 1:
        grad_out = grad_out.contiguous()
    zt = z if z is not None else u
    f32 = dict(device=u.device, dtype=torch.float32)

    def grad_buffers(direction: ScanInputs) -> list[Tensor]:
        du = torch.empty(batch, dim, length, device=u.device, dtype=direction[0].dtype)
        ddelta = torch.empty(batch, dim, length, device=u.device, dtype=direction[1].dtype)
        return [du, ddelta, torch.zeros(batch, state, length, **f32), torch.zeros(batch, state, length, **f32),
                torch.zeros(dim, state, **f32), torch.zeros(dim, **f32), torch.zeros(dim, **f32)]

    grads_f = grad_buffers(f)
    grads_b = grad_buffers(b) if bidirectional else grads_f
    ybuf = torch.empty(batch, dim, length, **f32) if z is not None else grads_f[0]
    chunks_b = saved[1] if bidirectional else saved[0]
    block_d = config.backward_block_d
    splits, chunks_per_split = _backward_segments(batch, dim, length, config)
    grid = (batch, _cdiv(dim, block_d), splits)
    options = _launch_options(config.backward_num_warps,
                              config.backward_max_registers if splits == 1 else config.backward_split_max_registers)
    strides = [*_row_strides(f), *_row_strides(b), zt.stride(0), zt.stride(1), grad_out.stride(0), grad_out.stride(1)]
    seg_f, seg_b = _adjoint_segment_starts(f, b, zt, grad_out, bidirectional, z is not None, delta_softplus,
                                           n_chunks, chunks_per_split, splits, config.block_l, block_d, options, ybuf)
    _scan_bwd_kernel[grid](
        *f, saved[0], *grads_f, *b, chunks_b, *grads_b, zt, grad_out, ybuf, seg_f, seg_b,
        dim, length, n_chunks, chunks_per_split, splits, *strides,
        BIDIRECTIONAL=bidirectional, HAS_Z=z is not None, Z_FIRST=(1 if bidirectional else 3) if z is not None else 0,
        SOFTPLUS=delta_softplus, SPLIT=splits > 1, STATE=state, BLOCK_D=block_d, BLOCK_L=config.block_l,
        **options)

    def input_order(grads: list[Tensor]) -> list[Tensor]:  # the kernel's buffers are du, ddelta, dB, dC, dA, ...
        du, ddelta, dB, dC, dA, dD, dbias = grads
        return [du, ddelta, dA, dB, dC, dD, dbias]

    return _gradients_in_input_order(forward, backward, input_order(grads_f),
                                     input_order(grads_b) if bidirectional else None, z, ybuf)


class _BidirectionalScanFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, delta_softplus: bool, config: TritonScanConfig, z: Optional[Tensor],
                *tensors: Optional[Tensor]) -> Tensor:
        forward = tuple(tensors[:7])
        backward = tuple(tensors[7:]) if tensors[7] is not None else None
        training = any(ctx.needs_input_grad)
        y, saved = scan_forward(forward, backward, z, delta_softplus, config, save_states=training)
        if training:
            ctx.save_for_backward(z, saved[0], saved[1], *tensors)
        ctx.delta_softplus = delta_softplus
        ctx.config = config
        return y

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        z, chunks_f, chunks_b, *tensors = ctx.saved_tensors
        forward = tuple(tensors[:7])
        backward = tuple(tensors[7:]) if tensors[7] is not None else None
        grads_f, grads_b, dz = scan_backward(forward, backward, z, (chunks_f, chunks_b), grad_out,
                                             ctx.delta_softplus, ctx.config)
        return (None, None, dz, *grads_f, *(grads_b if grads_b is not None else [None] * 7))


def bidirectional_selective_scan_triton(
    forward: ScanInputs,
    backward: Optional[ScanInputs],
    z: Optional[Tensor],
    delta_softplus: bool = True,
    config: TritonScanConfig = DEFAULT_CONFIG,
) -> Tensor:
    """Fused forward (+ reverse-order backward) selective scan, differentiable.

    ``forward`` and ``backward`` are ``(u, delta, A, B, C, D, delta_bias)`` with
    u, delta: (batch, dim, length); A: (dim, state), state a power of two;
    B, C: (batch, state, length); D, delta_bias: (dim,); softplus is applied to
    delta + delta_bias if ``delta_softplus``. ``backward`` inputs are in
    ORIGINAL order; that direction runs from the last position to the first.
    ``z``: (batch, dim, length) gate shared by both directions, or None.
    Returns (batch, dim, length) in u's dtype. Tensors need unit stride along
    length (channel slices of a bigger tensor are fine). Gradients flow to
    every input; the backward launch uses ``config.block_l`` chunks (it re-scans
    from the states the forward saved at those chunk boundaries).
    """
    if triton is None:
        raise RuntimeError("the Triton scan needs Triton (a CUDA build of PyTorch)")
    tensors = list(forward) + (list(backward) if backward is not None else [None] * 7)
    return _BidirectionalScanFunction.apply(delta_softplus, config, z, *tensors)
