"""Bidirectional selective scan in Gluon: one thread per channel.

Same contract as :func:`encoders.ops.triton_scan.scan_forward` and
:func:`~encoders.ops.triton_scan.scan_backward` (inputs in ORIGINAL order, the
backward direction read by index arithmetic, y = (forward + backward) *
silu(z)), with a work decomposition whose layouts Triton's compiler would not
choose by itself, so they are written out in Gluon (Triton's explicit-layout
dialect, compiled at run time like Triton, no CUDA build):

- A thread owns one channel's states; ``STATE // states_per_thread`` lanes
  share a channel. So the state recurrence and most of the sum over states stay
  in registers. Per element of (position, state, channel) the forward then does
  the minimum: one exp2 (the decay), a multiply for its argument, a multiply
  for the drive, the recurrence FMA and the read-out FMA.
- Per chunk of ``block_l`` positions, u / delta / z are loaded coalesced (lanes
  along positions). Softplus and dt*u are computed once per (position,
  channel) on the special-function unit and staged in shared memory with B and
  C (float32), stored as loaded into padded rows; each step reads one row (a
  broadcast for B and C). The chunk's outputs go back through shared memory
  and leave coalesced, gated (side by side, they stay in registers through the
  steps and are stored once per chunk).
- The next chunk's global loads are issued before this chunk's arithmetic.
- Both directions run in one program, side by side on two warps (turn k
  scans the forward direction's chunk k and the backward direction's chunk
  n-1-k), or one after the other in the same threads (``parallel_directions``
  False, and the one-direction scan). A chunk's first direction stores its
  ungated part of y; the second adds its own and gates.
  Long sequences at small batch are split into segments (three launches).

The forward is what ``bidirectional_selective_scan_triton`` runs by default
(measured 2.4-4.3x two mamba-ssm calls, docs/benchmarks.md). The restore
launch here (states entering every chunk, re-scanned from the forward's
checkpoints) serves the Gluon backward (:mod:`encoders.ops.gluon_backward`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

try:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
except ImportError:  # pragma: no cover - CPU-only PyTorch or an older Triton
    gluon = None

from . import triton_scan
from .triton_scan import ScanInputs, _cdiv


def gluon_available() -> bool:
    return gluon is not None


@dataclass(frozen=True)
class GluonScanConfig:
    """Tiles and launch shape of the Gluon forward (and of the restore launch
    the Gluon backward runs; the backward's own tile is
    :class:`encoders.ops.gluon_backward.GluonBackwardConfig`).

    - block_l: positions per chunk (staged in shared memory).
    - states_per_thread: STATE / this many lanes share a channel.
    - num_warps: warps per program; a program owns
      32 * num_warps * states_per_thread / STATE channels.
    - splits / min_programs / split_target: as in
      :class:`encoders.ops.triton_scan.TritonScanConfig`: with fewer than
      ``min_programs`` (batch x channel-block) programs, the sequence is cut
      into segments for about ``split_target`` programs (three launches).
    - parallel_directions: a bidirectional forward runs its two directions
      side by side on two warps of each program (``num_warps`` each) instead
      of one after the other: twice the warps in flight, each with half the
      work. Such programs split only below ``parallel_min_programs``.

    Defaults are the forward's best from ``benchmarks/scan_speed.py
    --gluon-sweep`` on an H100 (docs/benchmarks.md).
    """

    block_l: int = 8
    states_per_thread: int = 8
    num_warps: int = 1
    splits: Optional[int] = None
    min_programs: int = 512
    split_target: int = 2048
    parallel_directions: bool = True
    parallel_min_programs: int = 256

    def block_d(self, state: int) -> int:
        return 32 // (state // self.states_per_thread) * self.num_warps

    def choose_splits(self, batch: int, dim: int, length: int, state: int, parallel: bool = False) -> int:
        """Segments per sequence; ``parallel``: for the directions-side-by-side forward."""
        min_programs = self.parallel_min_programs if parallel else self.min_programs
        return triton_scan.splits_for(batch * _cdiv(dim, self.block_d(state)), _cdiv(length, self.block_l),
                                      self.splits, min_programs, self.split_target)


DEFAULT_GLUON_CONFIG = GluonScanConfig()


if gluon is not None:

    LOG2E: gl.constexpr = gl.constexpr(1.4426950408889634)
    # A barrier over the program's threads (also orders their global memory):
    # ``barrier`` in newer Gluon, ``thread_barrier`` in Triton 3.5-3.6. Without
    # either, the directions run one after the other (no cross-warp exchange).
    _program_barrier = getattr(gl, "barrier", None) or getattr(gl, "thread_barrier", None)

    LN2: gl.constexpr = gl.constexpr(0.6931471805599453)

    # exp2, log2 and 1/x on the special-function unit, flushing denormals. The
    # plain ``gl.exp`` / ``gl.log`` / division add range fix-ups (and ``log`` a
    # 12-FMA polynomial) around every call: in the forward's chunk loop they
    # were about a tenth of all instructions (ptxas SASS).
    @gluon.jit
    def _special_function(x, INSTRUCTION: gl.constexpr):
        """One float32 PTX instruction ``INSTRUCTION`` ("op $0, $1;") per element."""
        return gl.inline_asm_elementwise(INSTRUCTION, "=f,f", [x], dtype=gl.float32, is_pure=True, pack=1)

    @gluon.jit
    def _exp2_approx(x):
        """2**x within 2 ulp; results below 2**-126 are 0."""
        return _special_function(x, "ex2.approx.ftz.f32 $0, $1;")

    @gluon.jit
    def _log2_approx(x):
        """log2(x), absolute error about 2**-22 (so use it away from x = 1)."""
        return _special_function(x, "lg2.approx.ftz.f32 $0, $1;")

    @gluon.jit
    def _reciprocal_approx(x):
        """1 / x within 1 ulp (1 / inf = 0)."""
        return _special_function(x, "rcp.approx.ftz.f32 $0, $1;")

    @gluon.jit
    def _sigmoid(x):
        return _reciprocal_approx(1.0 + _exp2_approx(x * -LOG2E))

    @gluon.jit
    def _softplus(x):
        """PyTorch's softplus, log(1 + e^x), linear above 20. Where e^x < 1/32,
        four terms of log1p's series (relative error below 2e-7 there) stand in
        for log2(1 + e^x), whose absolute error would be large next to the result."""
        e = _exp2_approx(x * LOG2E)
        small = e * (1.0 - e * (0.5 - e * (0.3333333333 - e * 0.25)))
        return gl.where(x > 20.0, x, gl.where(e < 0.03125, small, LN2 * _log2_approx(1.0 + e)))

    @gluon.jit
    def _chunk_loads(u_base, dt_base, B_base, C_base, rows_c, rows_b, pos_c, pos_b, d_mask_c, length):
        """Raw tiles of one chunk as stored: u, delta (BLOCK_L, BLOCK_D) and B,
        C (BLOCK_L, STATE). ``rows_*`` are row offsets (channel or state x length)."""
        mask = (pos_c < length)[:, None] & d_mask_c[None, :]
        offs = rows_c[None, :] + pos_c[:, None]
        u = gl.load(u_base + offs, mask=mask, other=0.0)
        delta = gl.load(dt_base + offs, mask=mask, other=0.0)
        b_mask = (pos_b < length)[:, None]
        offs_b = rows_b[None, :] + pos_b[:, None]
        Bc = gl.load(B_base + offs_b, mask=b_mask, other=0.0)
        Cc = gl.load(C_base + offs_b, mask=b_mask, other=0.0)
        return u, delta, Bc, Cc

    @gluon.jit
    def _direction_inputs(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, b, d0, dim, length,
                          s_ub, s_dtb, s_Bb, s_Cb, STATE: gl.constexpr, BLOCK_D: gl.constexpr,
                          LS: gl.constexpr, LC: gl.constexpr):
        """One direction's parameters for channels [d0, d0 + BLOCK_D) of batch
        b: A * log2(e) (STATE, BLOCK_D) in LS, delta bias and D (BLOCK_D,) in
        LC's channel slice, and the base pointers of u, delta (at channel d0),
        B and C. Every (batch, row, length) tensor here has rows of stride
        ``length`` (the wrapper makes it so), so one row offset serves them all."""
        n_s = gl.arange(0, STATE, layout=gl.SliceLayout(1, LS))
        d_s = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, LS))
        A2 = gl.load(A_ptr + d_s[None, :] * STATE + n_s[:, None], mask=(d_s < dim)[None, :], other=0.0) * LOG2E
        d_c = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, LC))
        d_mask_c = d_c < dim
        bias = gl.load(bias_ptr + d_c, mask=d_mask_c, other=0.0)
        Dskip = gl.load(D_ptr + d_c, mask=d_mask_c, other=0.0)
        return (A2, bias, Dskip, u_ptr + b * s_ub + d0 * length, dt_ptr + b * s_dtb + d0 * length,
                B_ptr + b * s_Bb, C_ptr + b * s_Cb)

    @gluon.jit
    def _program_tile(z_ptr, out_ptr, b, d0, dim, length, s_zb, s_zd, n_slots, STATE: gl.constexpr,
                      BLOCK_L: gl.constexpr, BLOCK_D: gl.constexpr, LS: gl.constexpr, LC: gl.constexpr):
        """Offsets of a program's channels [d0, d0 + BLOCK_D) of batch b (the
        same for either direction): channels in LS (d_s), state checkpoint offsets
        (STATE, BLOCK_D), chunk positions and the channel mask in LC, row
        offsets of (batch, dim, length) and (batch, STATE, length) tiles, and
        the base pointers of z and out, and z's row offsets (its channel
        stride is ``s_zd``: z may be a view into the in_proj output)."""
        n_s = gl.arange(0, STATE, layout=gl.SliceLayout(1, LS))
        d_s = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, LS))
        ckpt_offs = (b * dim + d_s[None, :]) * (n_slots * STATE) + n_s[:, None]
        l_c = gl.arange(0, BLOCK_L, layout=gl.SliceLayout(1, LC))
        d_c = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, LC))
        rows_c = (d_c - d0) * length
        rows_b = gl.arange(0, STATE, layout=gl.SliceLayout(0, LC)) * length
        return (d_s, ckpt_offs, l_c, d_c < dim, rows_c, rows_b, z_ptr + b * s_zb + d0 * s_zd,
                out_ptr + (b * dim + d0) * length, (d_c - d0) * s_zd)

    @gluon.jit
    def _stage_chunk(loads, bias, mask, smem_dt, smem_dtu, smem_B, smem_C, SOFTPLUS: gl.constexpr,
                     WITH_C: gl.constexpr):
        """Put a chunk's loaded tiles where its steps read them: dt =
        softplus(delta + bias) (0 at masked positions: decay 1, no input), dt*u,
        B and (WITH_C) C, float32, in shared memory. Returns u as float32 (for
        the D skip) and the chunk's sum of dt per channel."""
        u_raw, delta_raw, B_raw, C_raw = loads
        u = u_raw.to(gl.float32)
        raw = delta_raw.to(gl.float32) + bias[None, :]
        if SOFTPLUS:
            raw = _softplus(raw)
        dt = gl.where(mask, raw, 0.0)
        dt_sum = gl.sum(dt, axis=0)
        smem_dt.store(dt)
        smem_dtu.store(dt * u)
        smem_B.store(B_raw.to(gl.float32))
        if WITH_C:
            smem_C.store(C_raw.to(gl.float32))
        return u, dt_sum

    @gluon.jit
    def _step(h, A2, smem_dt, smem_dtu, B_cols, C_cols, smem_y, t: gl.constexpr, WRITE_OUT: gl.constexpr,
              LS: gl.constexpr):
        """Position t of the staged chunk: the state update and one row of y."""
        dt_t = smem_dt.slice(t, 1, dim=0).load(LS)  # (1, BLOCK_D)
        dtu_t = smem_dtu.slice(t, 1, dim=0).load(LS)
        B_t = B_cols.slice(t, 1, dim=1).load(LS)  # (STATE, 1), the same in every lane
        h = gl.exp2(dt_t * A2) * h + dtu_t * B_t
        if WRITE_OUT:
            C_t = C_cols.slice(t, 1, dim=1).load(LS)
            smem_y.slice(t, 1, dim=0).store(gl.sum(h * C_t, axis=0)[None, :])
        return h

    @gluon.jit
    def _save_state(ckpt_ptr, ckpt_offs, h, chunk, n_chunks, d_mask_s, REVERSE: gl.constexpr,
                    CKPT_CHUNKS: gl.constexpr, STATE: gl.constexpr):
        """The state entering ``chunk``, if that chunk starts a group of
        CKPT_CHUNKS in scan order, at its group's slot of ``ckpt_ptr``."""
        if REVERSE:
            first = ((chunk + 1) % CKPT_CHUNKS == 0) | (chunk == n_chunks - 1)
        else:
            first = chunk % CKPT_CHUNKS == 0
        if first:
            gl.store(ckpt_ptr + ckpt_offs + (chunk // CKPT_CHUNKS) * STATE, h, mask=d_mask_s[None, :])

    @gluon.jit
    def _gated(y, z_raw):
        zf = z_raw.to(gl.float32)
        return y * zf * _sigmoid(zf)

    @gluon.jit
    def _direction(
        u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, z_ptr, out_ptr, ckpt_ptr,
        b, d0, dim, length, s_ub, s_dtb, s_Bb, s_Cb, s_zb, s_zd, n_slots, h, chunk_lo, chunk_hi,
        smem_dt, smem_dtu, smem_B, smem_C, smem_y,
        REVERSE: gl.constexpr, WRITE_OUT: gl.constexpr, ACCUMULATE: gl.constexpr, GATE: gl.constexpr,
        SOFTPLUS: gl.constexpr, SAVE_STATES: gl.constexpr, CKPT_CHUNKS: gl.constexpr,
        STATE: gl.constexpr, BLOCK_L: gl.constexpr, BLOCK_D: gl.constexpr,
        LS: gl.constexpr, LC: gl.constexpr,
    ):
        """One direction over chunks [chunk_lo, chunk_hi) in scan order from
        state ``h`` (STATE, BLOCK_D); writes ``out`` if WRITE_OUT (added onto
        what ``out`` holds if ACCUMULATE, gated if GATE). Returns (final state,
        sum of dt per channel).

        Layouts: LS (STATE, BLOCK_D) the state; LC (BLOCK_L, BLOCK_D) and
        (BLOCK_L, STATE) coalesced global tiles (lanes along positions), also
        stored as they are into the padded shared rows (:func:`_padded_rows`).
        SAVE_STATES: the state entering every
        CKPT_CHUNKS-th chunk's group (in scan order) goes to ``ckpt_ptr``,
        (batch, dim, n_slots, STATE) float32, as the Triton backward reads it."""
        A2, bias, Dskip, u_base, dt_base, B_base, C_base = _direction_inputs(
            u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, b, d0, dim, length, s_ub, s_dtb, s_Bb, s_Cb,
            STATE, BLOCK_D, LS, LC)
        d_s, ckpt_offs, l_c, d_mask_c, rows_c, rows_b, z_base, out_base, rows_z = _program_tile(
            z_ptr, out_ptr, b, d0, dim, length, s_zb, s_zd, n_slots, STATE, BLOCK_L, BLOCK_D, LS, LC)
        B_cols = smem_B.permute([1, 0])  # (STATE, BLOCK_L) views: a step reads one column
        C_cols = smem_C.permute([1, 0])
        dt_sum = gl.zeros([BLOCK_D], gl.float32, gl.SliceLayout(0, LC))
        n_chunks = gl.cdiv(length, BLOCK_L)

        chunk = chunk_hi - 1 if REVERSE else chunk_lo
        loads = _chunk_loads(u_base, dt_base, B_base, C_base, rows_c, rows_b, chunk * BLOCK_L + l_c,
                             chunk * BLOCK_L + l_c, d_mask_c, length)
        for _ in range(0, chunk_hi - chunk_lo):
            current = loads
            following = gl.maximum(chunk - 1, chunk_lo) if REVERSE else gl.minimum(chunk + 1, chunk_hi - 1)
            # What the steps need is loaded a chunk ahead; z and the other
            # direction's output only at the end of this chunk, so their loads
            # are issued now and wait through its steps.
            loads = _chunk_loads(u_base, dt_base, B_base, C_base, rows_c, rows_b, following * BLOCK_L + l_c,
                                 following * BLOCK_L + l_c, d_mask_c, length)
            pos_c = chunk * BLOCK_L + l_c
            mask = (pos_c < length)[:, None] & d_mask_c[None, :]
            offs = rows_c[None, :] + pos_c[:, None]
            if WRITE_OUT:
                if GATE:
                    z_raw = gl.load(z_base + rows_z[None, :] + pos_c[:, None], mask=mask, other=0.0)
                if ACCUMULATE:
                    acc_raw = gl.load(out_base + offs, mask=mask, other=0.0)
            if SAVE_STATES:
                _save_state(ckpt_ptr, ckpt_offs, h, chunk, n_chunks, d_s < dim, REVERSE, CKPT_CHUNKS, STATE)
            u, chunk_dt_sum = _stage_chunk(current, bias, mask, smem_dt, smem_dtu, smem_B, smem_C, SOFTPLUS,
                                           WRITE_OUT)
            dt_sum += chunk_dt_sum
            for i in gl.static_range(BLOCK_L):
                if REVERSE:
                    h = _step(h, A2, smem_dt, smem_dtu, B_cols, C_cols, smem_y, BLOCK_L - 1 - i, WRITE_OUT, LS)
                else:
                    h = _step(h, A2, smem_dt, smem_dtu, B_cols, C_cols, smem_y, i, WRITE_OUT, LS)
            if WRITE_OUT:
                y = smem_y.load(LC) + Dskip[None, :] * u
                if ACCUMULATE:
                    y += acc_raw.to(gl.float32)
                if GATE:
                    y = _gated(y, z_raw)
                gl.store(out_base + offs, y.to(out_ptr.dtype.element_ty), mask=mask)
            chunk = following
        return h, dt_sum

    @gluon.jit
    def _chunk_pair_loads(u_base, dt_base, B_base, C_base, rows_c, rows_n, pos, d_mask_c, length):
        """:func:`_chunk_loads` with a leading direction axis: raw u, delta
        (2, BLOCK_L, BLOCK_D) and B, C (2, BLOCK_L, STATE) at positions ``pos``
        (2, BLOCK_L, 1); ``rows_*`` are row offsets (channel or state x length)."""
        in_range = pos < length
        return (gl.load(u_base + rows_c + pos, mask=in_range & d_mask_c, other=0.0),
                gl.load(dt_base + rows_c + pos, mask=in_range & d_mask_c, other=0.0),
                gl.load(B_base + rows_n + pos, mask=in_range, other=0.0),
                gl.load(C_base + rows_n + pos, mask=in_range, other=0.0))

    @gluon.jit
    def _step_pair(h, A2, smem_dt, smem_dtu, B_cols, t: gl.constexpr, LS: gl.constexpr):
        """The state update of :func:`_step` with a leading direction axis: row
        t of both directions' staged chunks (the backward direction's rows are
        staged in reverse, so its scan order is row order too)."""
        dt_t = smem_dt.slice(t, 1, dim=1).load(LS)  # (2, 1, BLOCK_D)
        dtu_t = smem_dtu.slice(t, 1, dim=1).load(LS)
        B_t = B_cols.slice(t, 1, dim=2).load(LS)  # (2, STATE, 1)
        return gl.exp2(dt_t * A2) * h + dtu_t * B_t

    @gluon.jit
    def _read_out_pair(h, C_cols, y_rows, l_y, t: gl.constexpr, LS: gl.constexpr, LY: gl.constexpr):
        """``y_rows`` (2, BLOCK_L, BLOCK_D) in LY with row t set to C_t . h.
        The rows stay in registers (LY keeps positions in registers, so the
        select folds away) until the chunk's last step: storing each row to
        shared memory as it came made older Triton (3.6) put a barrier
        between every two steps."""
        C_t = C_cols.slice(t, 1, dim=2).load(LS)
        y_t = gl.convert_layout(gl.sum(h * C_t, axis=1), gl.SliceLayout(1, LY), assert_trivial=True)
        return gl.where(l_y == t, y_t[:, None, :], y_rows)

    @gluon.jit
    def _gluon_scan_fwd_parallel_kernel(
        u_f, dt_f, A_f, B_f, C_f, D_f, bias_f,
        u_b, dt_b, A_b, B_b, C_b, D_b, bias_b,
        z_ptr, out_ptr, ckpt_f, ckpt_b, seg_f, seg_b, dtsum_f, dtsum_b,
        dim, length, chunks_per_split, n_splits, n_slots,
        s_ufb, s_dtfb, s_Bfb, s_Cfb, s_ubb, s_dtbb, s_Bbb, s_Cbb, s_zb, s_zd,
        END_STATES: gl.constexpr, SPLIT: gl.constexpr, HAS_Z: gl.constexpr,
        SOFTPLUS: gl.constexpr, SAVE_STATES: gl.constexpr, CKPT_CHUNKS: gl.constexpr,
        STATE: gl.constexpr, BLOCK_L: gl.constexpr, BLOCK_D: gl.constexpr, LS: gl.constexpr, LC: gl.constexpr,
        ROWS: gl.constexpr, ROWS_N: gl.constexpr, LY: gl.constexpr,
    ):
        """:func:`_gluon_scan_fwd_kernel` (bidirectional) with the two
        directions on different warps of one program, in parallel: every
        tensor has a leading direction axis (0 forward, 1 backward) laid
        across warps. Turn k scans the forward direction's chunk
        chunk_lo + k and the backward direction's chunk chunk_hi - 1 - k; the
        backward direction's rows are staged in reverse, so both step through
        rows in the same order. A chunk's first visitor stores its ungated
        part of y in ``out``, the second adds its own and gates. The two
        visitors are different warps, so a barrier starts every turn (and
        splits the turn where they meet, on the middle chunk)."""
        b = gl.program_id(0).to(gl.int64)
        d0 = gl.program_id(1) * BLOCK_D
        split = gl.program_id(2)
        n_chunks = gl.cdiv(length, BLOCK_L)
        chunk_lo = split * chunks_per_split
        chunk_hi = gl.minimum(chunk_lo + chunks_per_split, n_chunks)
        WRITE_OUT: gl.constexpr = not END_STATES

        # Index tensors, (direction, ., .), in the state layout LS ...
        dir_s = gl.arange(0, 2, layout=gl.SliceLayout(1, gl.SliceLayout(2, LS)))[:, None, None]
        n_s = gl.arange(0, STATE, layout=gl.SliceLayout(0, gl.SliceLayout(2, LS)))[None, :, None]
        d_s = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, gl.SliceLayout(1, LS)))[None, None, :]
        forward_s = dir_s == 0
        d_mask_s = d_s < dim
        # ... and in the coalesced tile layout LC.
        dir_c = gl.arange(0, 2, layout=gl.SliceLayout(1, gl.SliceLayout(2, LC)))[:, None, None]
        l_c = gl.arange(0, BLOCK_L, layout=gl.SliceLayout(0, gl.SliceLayout(2, LC)))[None, :, None]
        d_c = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, gl.SliceLayout(1, LC)))[None, None, :]
        n_c = gl.arange(0, STATE, layout=gl.SliceLayout(0, gl.SliceLayout(1, LC)))[None, None, :]
        forward_c = dir_c == 0
        d_mask_c = d_c < dim
        # ... and a chunk's rows of y, positions in registers, in LY.
        l_y = gl.arange(0, BLOCK_L, layout=gl.SliceLayout(0, gl.SliceLayout(2, LY)))[None, :, None]

        A2 = gl.load(gl.where(forward_s, A_f, A_b) + d_s * STATE + n_s, mask=d_mask_s, other=0.0) * LOG2E
        bias = gl.load(gl.where(forward_c, bias_f, bias_b) + d_c, mask=d_mask_c, other=0.0)
        Dskip = gl.load(gl.where(forward_c, D_f, D_b) + d_c, mask=d_mask_c, other=0.0)
        rows_c = (d_c - d0) * length
        u_base = gl.where(forward_c, u_f + b * s_ufb, u_b + b * s_ubb) + d0 * length
        dt_base = gl.where(forward_c, dt_f + b * s_dtfb, dt_b + b * s_dtbb) + d0 * length
        B_base = gl.where(forward_c, B_f + b * s_Bfb, B_b + b * s_Bbb)
        C_base = gl.where(forward_c, C_f + b * s_Cfb, C_b + b * s_Cbb)
        z_base = z_ptr + b * s_zb + d0 * s_zd
        out_base = out_ptr + (b * dim + d0) * length
        ckpt_base = gl.where(forward_s, ckpt_f, ckpt_b) + (b * dim + d_s) * (n_slots * STATE) + n_s
        seg_offs = ((b * dim + d_s) * n_splits + split) * STATE + n_s

        h = gl.zeros([2, STATE, BLOCK_D], gl.float32, LS)
        if SPLIT and not END_STATES:
            h = gl.load(gl.where(forward_s, seg_f, seg_b) + seg_offs, mask=d_mask_s, other=0.0)

        smem_dt = gl.allocate_shared_memory(gl.float32, [2, BLOCK_L, BLOCK_D], ROWS)
        smem_dtu = gl.allocate_shared_memory(gl.float32, [2, BLOCK_L, BLOCK_D], ROWS)
        smem_y = gl.allocate_shared_memory(gl.float32, [2, BLOCK_L, BLOCK_D], ROWS)
        smem_B = gl.allocate_shared_memory(gl.float32, [2, BLOCK_L, STATE], ROWS_N)
        smem_C = gl.allocate_shared_memory(gl.float32, [2, BLOCK_L, STATE], ROWS_N)
        B_cols = smem_B.permute([0, 2, 1])  # (2, STATE, BLOCK_L): a step reads one column
        C_cols = smem_C.permute([0, 2, 1])
        dt_sum = gl.zeros([2, BLOCK_D], gl.float32, gl.SliceLayout(1, LC))

        chunk_f = chunk_lo
        chunk_b = chunk_hi - 1
        # Row l of a chunk: position l forward, BLOCK_L - 1 - l backward.
        row_pos = gl.where(forward_c, l_c, BLOCK_L - 1 - l_c)
        pos = gl.where(forward_c, chunk_f, chunk_b) * BLOCK_L + row_pos
        rows_n = n_c * length
        loads = _chunk_pair_loads(u_base, dt_base, B_base, C_base, rows_c, rows_n, pos, d_mask_c, length)
        for _ in range(0, chunk_hi - chunk_lo):
            u_raw, delta_raw, B_raw, C_raw = loads
            following_f = gl.minimum(chunk_f + 1, chunk_hi - 1)
            following_b = gl.maximum(chunk_b - 1, chunk_lo)
            following = gl.where(forward_c, following_f, following_b) * BLOCK_L + row_pos
            loads = _chunk_pair_loads(u_base, dt_base, B_base, C_base, rows_c, rows_n, following, d_mask_c, length)
            mask = (pos < length) & d_mask_c
            offs = rows_c + pos
            second_visit = chunk_f > chunk_b
            completes = chunk_f >= chunk_b
            if SAVE_STATES:
                first_f = chunk_f % CKPT_CHUNKS == 0
                first_b = ((chunk_b + 1) % CKPT_CHUNKS == 0) | (chunk_b == n_chunks - 1)
                slot = gl.where(forward_s, chunk_f // CKPT_CHUNKS, chunk_b // CKPT_CHUNKS)
                gl.store(ckpt_base + slot * STATE, h, mask=d_mask_s & gl.where(forward_s, first_f, first_b))
            u = u_raw.to(gl.float32)
            raw = delta_raw.to(gl.float32) + bias
            if SOFTPLUS:
                raw = _softplus(raw)
            dt = gl.where(mask, raw, 0.0)  # masked positions: decay 1, no input
            dt_sum += gl.sum(dt, axis=1)
            smem_dt.store(dt)
            smem_dtu.store(dt * u)
            smem_B.store(B_raw.to(gl.float32))
            if WRITE_OUT:
                smem_C.store(C_raw.to(gl.float32))
                # One barrier for two needs: the staged tiles are visible to
                # the steps, and so are the other warp's parts of y that it
                # stored in earlier turns (their loads wait through the steps).
                _program_barrier()
                part = gl.load(out_base + offs, mask=mask & second_visit, other=0.0)
                if HAS_Z:
                    z_raw = gl.load(z_base + (d_c - d0) * s_zd + pos, mask=mask & completes, other=0.0)
            y_rows = gl.zeros([2, BLOCK_L, BLOCK_D], gl.float32, LY)
            for i in gl.static_range(BLOCK_L):
                h = _step_pair(h, A2, smem_dt, smem_dtu, B_cols, i, LS)
                if WRITE_OUT:
                    y_rows = _read_out_pair(h, C_cols, y_rows, l_y, i, LS, LY)
            if WRITE_OUT:
                smem_y.store(y_rows)
                y = smem_y.load(LC) + Dskip * u + part.to(gl.float32)
                keep = mask
                if chunk_f == chunk_b:
                    # Both directions on one chunk: the backward warp's part
                    # goes through ``out`` to the forward warp, which completes it.
                    gl.store(out_base + offs, y.to(out_ptr.dtype.element_ty), mask=mask & (dir_c == 1))
                    _program_barrier()
                    y += gl.load(out_base + offs, mask=mask & forward_c, other=0.0).to(gl.float32)
                    keep = mask & forward_c
                if HAS_Z:
                    if completes:
                        y = _gated(y, z_raw)
                gl.store(out_base + offs, y.to(out_ptr.dtype.element_ty), mask=keep)
            chunk_f = following_f
            chunk_b = following_b
            pos = following
        if END_STATES:
            # The segment that ends a direction's scan feeds no later one.
            feeds = gl.where(forward_s, split < n_splits - 1, split > 0)
            gl.store(gl.where(forward_s, seg_f, seg_b) + seg_offs, h, mask=d_mask_s & feeds)
            dir_t = gl.arange(0, 2, layout=gl.SliceLayout(1, gl.SliceLayout(1, LC)))[:, None]
            d_t = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, gl.SliceLayout(1, LC)))[None, :]
            feeds_t = gl.where(dir_t == 0, split < n_splits - 1, split > 0)
            gl.store(gl.where(dir_t == 0, dtsum_f, dtsum_b) + (b * dim + d_t) * n_splits + split, dt_sum,
                     mask=(d_t < dim) & feeds_t)

    @gluon.jit
    def _chunk_tiles(STATE: gl.constexpr, BLOCK_L: gl.constexpr, BLOCK_D: gl.constexpr, ROWS: gl.constexpr,
                     ROWS_N: gl.constexpr):
        """One direction's shared tiles of a chunk: (dt, dt*u, B, C, y), float32."""
        return (gl.allocate_shared_memory(gl.float32, [BLOCK_L, BLOCK_D], ROWS),
                gl.allocate_shared_memory(gl.float32, [BLOCK_L, BLOCK_D], ROWS),
                gl.allocate_shared_memory(gl.float32, [BLOCK_L, STATE], ROWS_N),
                gl.allocate_shared_memory(gl.float32, [BLOCK_L, STATE], ROWS_N),
                gl.allocate_shared_memory(gl.float32, [BLOCK_L, BLOCK_D], ROWS))

    @gluon.jit
    def _direction_segment(
        u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, z_ptr, out_ptr, ckpt_ptr, seg_ptr, dtsum_ptr,
        b, d0, split, dim, length, n_splits, n_slots, s_ub, s_dtb, s_Bb, s_Cb, s_zb, s_zd, h0, chunk_lo, chunk_hi,
        seg_offs, dtsum_offs, tiles,
        REVERSE: gl.constexpr, END_STATES: gl.constexpr, ACCUMULATE: gl.constexpr, GATE: gl.constexpr,
        SOFTPLUS: gl.constexpr, SAVE_STATES: gl.constexpr, CKPT_CHUNKS: gl.constexpr,
        STATE: gl.constexpr, BLOCK_L: gl.constexpr, BLOCK_D: gl.constexpr,
        LS: gl.constexpr, LC: gl.constexpr,
    ):
        """One direction's part of a segment. END_STATES: its end state from a
        zero start and its summed dt, into ``seg_ptr`` / ``dtsum_ptr``, unless
        the segment ends the direction's scan (no later segment to feed). Else
        its output from ``h0``."""
        dt_smem, dtu_smem, B_smem, C_smem, y_smem = tiles
        if END_STATES:
            if (split > 0) if REVERSE else (split < n_splits - 1):
                h, dts = _direction(
                    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, z_ptr, out_ptr, ckpt_ptr,
                    b, d0, dim, length, s_ub, s_dtb, s_Bb, s_Cb, s_zb, s_zd, n_slots, h0, chunk_lo, chunk_hi,
                    dt_smem, dtu_smem, B_smem, C_smem, y_smem,
                    REVERSE, False, False, False, SOFTPLUS, False, CKPT_CHUNKS, STATE, BLOCK_L, BLOCK_D,
                    LS, LC)
                d_s = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, LS))
                gl.store(seg_ptr + seg_offs, h, mask=(d_s < dim)[None, :])
                d_c = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, LC))
                gl.store(dtsum_ptr + dtsum_offs, dts, mask=d_c < dim)
        else:
            _direction(
                u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, z_ptr, out_ptr, ckpt_ptr,
                b, d0, dim, length, s_ub, s_dtb, s_Bb, s_Cb, s_zb, s_zd, n_slots, h0, chunk_lo, chunk_hi,
                dt_smem, dtu_smem, B_smem, C_smem, y_smem,
                REVERSE, True, ACCUMULATE, GATE, SOFTPLUS, SAVE_STATES, CKPT_CHUNKS, STATE, BLOCK_L, BLOCK_D,
                LS, LC)

    @gluon.jit
    def _gluon_scan_fwd_kernel(
        u_f, dt_f, A_f, B_f, C_f, D_f, bias_f,
        u_b, dt_b, A_b, B_b, C_b, D_b, bias_b,
        z_ptr, out_ptr, ckpt_f, ckpt_b, seg_f, seg_b, dtsum_f, dtsum_b,
        dim, length, chunks_per_split, n_splits, n_slots,
        s_ufb, s_dtfb, s_Bfb, s_Cfb, s_ubb, s_dtbb, s_Bbb, s_Cbb, s_zb, s_zd,
        END_STATES: gl.constexpr, SPLIT: gl.constexpr, BIDIRECTIONAL: gl.constexpr, HAS_Z: gl.constexpr,
        SOFTPLUS: gl.constexpr, SAVE_STATES: gl.constexpr, CKPT_CHUNKS: gl.constexpr,
        STATE: gl.constexpr, BLOCK_L: gl.constexpr, BLOCK_D: gl.constexpr, LS: gl.constexpr, LC: gl.constexpr,
        ROWS: gl.constexpr, ROWS_N: gl.constexpr,
    ):
        """Grid (batch, channel blocks, segments). END_STATES: each segment's
        end state from a zero start and its summed dt, into ``seg_*`` /
        ``dtsum_*`` (launch 1 of 3 of a split scan). Otherwise write y, each
        segment starting from the state the carry kernel left in ``seg_*`` (if
        SPLIT) or from zero. The two directions run one after the other
        (:func:`_gluon_scan_fwd_parallel_kernel` runs them side by side)."""
        b = gl.program_id(0).to(gl.int64)
        d0 = gl.program_id(1) * BLOCK_D
        split = gl.program_id(2)
        chunk_lo = split * chunks_per_split
        chunk_hi = gl.minimum(chunk_lo + chunks_per_split, gl.cdiv(length, BLOCK_L))
        n_s = gl.arange(0, STATE, layout=gl.SliceLayout(1, LS))
        d_s = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, LS))
        seg_offs = ((b * dim + d_s[None, :]) * n_splits + split) * STATE + n_s[:, None]
        seg_mask = (d_s < dim)[None, :]
        d_c = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, LC))
        dtsum_offs = (b * dim + d_c) * n_splits + split
        zero = gl.zeros([STATE, BLOCK_D], gl.float32, LS)
        h_f = zero
        h_b = zero
        if SPLIT and not END_STATES:
            h_f = gl.load(seg_f + seg_offs, mask=seg_mask, other=0.0)
            if BIDIRECTIONAL:
                h_b = gl.load(seg_b + seg_offs, mask=seg_mask, other=0.0)
        tiles_f = _chunk_tiles(STATE, BLOCK_L, BLOCK_D, ROWS, ROWS_N)
        # The forward direction's output is ungated unless it is the only one.
        _direction_segment(
            u_f, dt_f, A_f, B_f, C_f, D_f, bias_f, z_ptr, out_ptr, ckpt_f, seg_f, dtsum_f,
            b, d0, split, dim, length, n_splits, n_slots, s_ufb, s_dtfb, s_Bfb, s_Cfb, s_zb, s_zd, h_f,
            chunk_lo, chunk_hi, seg_offs, dtsum_offs, tiles_f,
            False, END_STATES, False, HAS_Z and not BIDIRECTIONAL, SOFTPLUS, SAVE_STATES, CKPT_CHUNKS,
            STATE, BLOCK_L, BLOCK_D, LS, LC)
        if BIDIRECTIONAL:
            # Accumulates onto the forward direction's output, element by
            # element in the thread that wrote it (both use the layout LC).
            _direction_segment(
                u_b, dt_b, A_b, B_b, C_b, D_b, bias_b, z_ptr, out_ptr, ckpt_b, seg_b, dtsum_b,
                b, d0, split, dim, length, n_splits, n_slots, s_ubb, s_dtbb, s_Bbb, s_Cbb, s_zb, s_zd, h_b,
                chunk_lo, chunk_hi, seg_offs, dtsum_offs, tiles_f,
                True, END_STATES, True, HAS_Z, SOFTPLUS, SAVE_STATES, CKPT_CHUNKS,
                STATE, BLOCK_L, BLOCK_D, LS, LC)

    @gluon.jit
    def _gluon_restore_kernel(
        u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, ckpt_ptr, chunks_ptr,
        dim, length, n_slots, n_chunks, s_ub, s_dtb, s_Bb, s_Cb,
        REVERSE: gl.constexpr, SOFTPLUS: gl.constexpr, GROUP_CHUNKS: gl.constexpr,
        STATE: gl.constexpr, BLOCK_L: gl.constexpr, BLOCK_D: gl.constexpr, LS: gl.constexpr, LC: gl.constexpr,
        ROWS: gl.constexpr, ROWS_N: gl.constexpr,
    ):
        """Grid (batch, channel blocks, checkpoint groups), one direction: the
        state entering every chunk (``chunks_ptr``, (batch, dim, n_chunks,
        STATE)) re-scanned from the one the forward kept per group of
        GROUP_CHUNKS chunks (``ckpt_ptr``); groups are independent."""
        smem_dt = gl.allocate_shared_memory(gl.float32, [BLOCK_L, BLOCK_D], ROWS)
        smem_dtu = gl.allocate_shared_memory(gl.float32, [BLOCK_L, BLOCK_D], ROWS)
        smem_B = gl.allocate_shared_memory(gl.float32, [BLOCK_L, STATE], ROWS_N)
        b = gl.program_id(0).to(gl.int64)
        d0 = gl.program_id(1) * BLOCK_D
        group = gl.program_id(2)
        n_s = gl.arange(0, STATE, layout=gl.SliceLayout(1, LS))
        d_s = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, LS))
        h0 = gl.load(ckpt_ptr + ((b * dim + d_s[None, :]) * n_slots + group) * STATE + n_s[:, None],
                     mask=(d_s < dim)[None, :], other=0.0)
        chunk_lo = group * GROUP_CHUNKS
        # No output: z, out, C and y are never touched (stand-ins below).
        _direction(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, u_ptr, u_ptr, chunks_ptr,
                   b, d0, dim, length, s_ub, s_dtb, s_Bb, s_Cb, 0, 0, n_chunks, h0,
                   chunk_lo, gl.minimum(chunk_lo + GROUP_CHUNKS, n_chunks),
                   smem_dt, smem_dtu, smem_B, smem_B, smem_dt,
                   REVERSE, False, False, False, SOFTPLUS, True, 1, STATE, BLOCK_L, BLOCK_D, LS, LC)


def _rows_of_length(t: Tensor) -> Tensor:
    """``t`` (batch, rows, length) with row stride == length and unit stride
    along length (a copy only when it is not already so)."""
    if t.stride(-1) == 1 and t.stride(-2) == t.shape[-1]:
        return t
    return t.contiguous()


#: Words of padding after each shared row (keeps rows 16-byte aligned for vector reads).
_ROW_PADDING = 4


def _padded_rows(shape: list[int]) -> "gl.PaddedSharedLayout":
    """Row-major shared tiles of ``shape`` (rows along the second-last axis),
    each row followed by :data:`_ROW_PADDING` words. A coalesced tile (lanes
    along positions) is stored straight into them: 8 lanes write 8 rows of
    one column, and unpadded 16-word rows would put every other row in the
    same banks (a 4-way conflict). Storing through a lanes-along-rows layout
    instead cost a layout conversion, itself a shared-memory round trip with
    a barrier, per tile and chunk."""
    order = list(range(len(shape) - 1, -1, -1))
    return gl.PaddedSharedLayout.with_identity_for([[shape[-1], _ROW_PADDING]], shape, order)


@functools.lru_cache(maxsize=None)  # built once per tile, not on every launch
def _kernel_layouts(config: GluonScanConfig, state: int) -> dict:
    """The layouts every kernel here is written against, as constexpr launch
    arguments (one place decides them):

    - LS (STATE, BLOCK_D): the state; a thread holds ``states_per_thread``
      states of one channel, ``state // states_per_thread`` lanes share it.
    - LC (BLOCK_L, BLOCK_D) and (BLOCK_L, STATE): global tiles, coalesced
      (lanes along positions), stored as they are into shared rows.
    - ROWS (BLOCK_L, BLOCK_D), ROWS_N (BLOCK_L, STATE): padded row-major
      shared tiles, one row per position (:func:`_padded_rows`): a step
      reads one row (dt, dt*u: lanes along channels; B, C: every lane the
      same states, a broadcast).
    """
    warps = config.num_warps
    lanes_n = state // config.states_per_thread
    lanes_d = 32 // lanes_n
    lanes_l = min(32, config.block_l)
    block_d = config.block_d(state)
    return dict(
        BLOCK_D=block_d,
        LS=gl.BlockedLayout([config.states_per_thread, 1], [lanes_n, lanes_d], [1, warps], [0, 1]),
        LC=gl.BlockedLayout([1, 1], [lanes_l, 32 // lanes_l], [1, warps], [0, 1]),
        ROWS=_padded_rows([config.block_l, block_d]),
        ROWS_N=_padded_rows([config.block_l, state]),
    )


@functools.lru_cache(maxsize=None)
def _parallel_layouts(config: GluonScanConfig, state: int) -> dict:
    """:func:`_kernel_layouts` with a leading direction axis across two
    warp groups, for :func:`_gluon_scan_fwd_parallel_kernel`."""
    warps = config.num_warps
    lanes_n = state // config.states_per_thread
    lanes_d = 32 // lanes_n
    lanes_l = min(32, config.block_l)
    block_d = config.block_d(state)
    return dict(
        BLOCK_D=block_d,
        LS=gl.BlockedLayout([1, config.states_per_thread, 1], [1, lanes_n, lanes_d], [2, 1, warps], [1, 2, 0]),
        LC=gl.BlockedLayout([1, 1, 1], [1, lanes_l, 32 // lanes_l], [2, 1, warps], [1, 2, 0]),
        ROWS=_padded_rows([2, config.block_l, block_d]),
        ROWS_N=_padded_rows([2, config.block_l, state]),
        LY=gl.BlockedLayout([1, config.block_l, 1], [1, lanes_n, lanes_d], [2, 1, warps], [1, 2, 0]),
    )


def _prepare(direction: ScanInputs) -> ScanInputs:
    """Rows of stride length for u, delta, B, C; parameters (A, D, delta_bias) contiguous float32."""
    u, delta, A, B, C, D, bias = direction
    return (_rows_of_length(u), _rows_of_length(delta), A.float().contiguous(), _rows_of_length(B),
            _rows_of_length(C), D.float().contiguous(), bias.float().contiguous())


def _prepare_directions(forward: ScanInputs, backward: Optional[ScanInputs], states_per_thread: int,
                        kernel: str) -> tuple[ScanInputs, ScanInputs, tuple[int, int, int, int]]:
    """Both directions as the Gluon kernels read them (:func:`_prepare`; the
    forward's stand in for a missing backward) and (batch, dim, length, state),
    checked against what the kernels support (``kernel`` names them in errors)."""
    f = _prepare(forward)
    b = _prepare(backward) if backward is not None else f
    batch, dim, length = f[0].shape
    state = f[2].shape[1]
    if state & (state - 1) or state % states_per_thread or not 2 <= state <= 32:
        raise ValueError(f"{kernel}: state size {state} must be a power of two in [2, 32] divisible by "
                         f"states_per_thread={states_per_thread}")
    if batch * max(dim, state) * length >= 2**31:
        raise ValueError(f"{kernel}: batch x dim x length must stay below 2**31 (int32 offsets)")
    return f, b, (batch, dim, length, state)


def _batch_strides(direction: ScanInputs) -> list[int]:
    """Batch strides of u, delta, B, C (their row strides are the length)."""
    u, delta, _, B, C, _, _ = direction
    return [u.stride(0), delta.stride(0), B.stride(0), C.stride(0)]


def gluon_scan_forward(
    forward: ScanInputs,
    backward: Optional[ScanInputs],
    z: Optional[Tensor],
    delta_softplus: bool = True,
    config: GluonScanConfig = DEFAULT_GLUON_CONFIG,
    checkpoint_positions: Optional[int] = None,
) -> tuple[Tensor, Optional[tuple[Tensor, Optional[Tensor]]]]:
    """Forward of the fused bidirectional scan (no autograd); arguments as
    :func:`encoders.ops.triton_scan.bidirectional_selective_scan_triton`.

    Returns (y, saved): with ``checkpoint_positions`` (a multiple of
    ``config.block_l``), saved is the float32 state entering every group of
    that many positions, (batch, dim, n_slots, state) per direction, in the
    layout :func:`encoders.ops.triton_scan.scan_backward` reads; else None.
    """
    if gluon is None:
        raise RuntimeError("the Gluon scan needs Triton with Gluon (3.5 or later)")

    f, b, (batch, dim, length, state) = _prepare_directions(forward, backward, config.states_per_thread, "gluon scan")
    bidirectional = backward is not None
    u = f[0]
    if checkpoint_positions is not None and checkpoint_positions % config.block_l:
        raise ValueError(f"gluon scan: checkpoint_positions={checkpoint_positions} is not a multiple of "
                         f"block_l={config.block_l}")
    # z is read in place with any channel and batch strides (it is usually a
    # view into the in_proj output); unit stride along length is all it needs.
    zt = (z if z.stride(-1) == 1 and z.stride(1) * dim < 2**31 else z.contiguous()) if z is not None else u
    out = torch.empty(batch, dim, length, device=u.device, dtype=u.dtype)
    f32 = dict(device=u.device, dtype=torch.float32)
    n_chunks = _cdiv(length, config.block_l)
    parallel = bidirectional and config.parallel_directions and _program_barrier is not None
    splits, chunks_per_split = triton_scan.split_layout(n_chunks, config.choose_splits(batch, dim, length, state,
                                                                                        parallel))
    save_states = checkpoint_positions is not None
    ckpt_chunks = checkpoint_positions // config.block_l if save_states else 1
    n_slots = _cdiv(n_chunks, ckpt_chunks)
    if save_states:
        ckpt_f = torch.empty(batch, dim, n_slots, state, **f32)
        ckpt_b = torch.empty_like(ckpt_f) if bidirectional else ckpt_f
    else:
        ckpt_f = ckpt_b = out  # never written
    seg_f, seg_b, dtsum_f, dtsum_b = triton_scan._segment_buffers(batch, dim, splits, state, bidirectional, out)
    grid = (batch, _cdiv(dim, config.block_d(state)), splits)
    args = [*f, *b, zt, out, ckpt_f, ckpt_b, seg_f, seg_b, dtsum_f, dtsum_b,
            dim, length, chunks_per_split, splits, n_slots, *_batch_strides(f), *_batch_strides(b), zt.stride(0),
            zt.stride(1)]
    flags = dict(SPLIT=splits > 1, HAS_Z=z is not None, SOFTPLUS=delta_softplus,
                 SAVE_STATES=save_states, CKPT_CHUNKS=ckpt_chunks, STATE=state, BLOCK_L=config.block_l)
    if parallel:
        kernel = _gluon_scan_fwd_parallel_kernel
        flags.update(num_warps=2 * config.num_warps, **_parallel_layouts(config, state))
    else:
        kernel = _gluon_scan_fwd_kernel
        flags.update(BIDIRECTIONAL=bidirectional, num_warps=config.num_warps, **_kernel_layouts(config, state))
    if splits > 1:
        kernel[grid](*args, END_STATES=True, **flags)
        triton_scan.carry_segments(seg_f, dtsum_f, f[2], seg_b, dtsum_b, b[2], batch, dim, splits, state,
                                   bidirectional, adjoint=False)
    kernel[grid](*args, END_STATES=False, **flags)
    saved = (ckpt_f, ckpt_b if bidirectional else None) if save_states else None
    return out, saved
