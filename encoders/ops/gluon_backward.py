"""Backward of the bidirectional selective scan in Gluon: each chunk in registers.

Contract of :func:`encoders.ops.triton_scan.scan_backward` (gradients of the
fused scan's output from the states the forward saved every
``checkpoint_positions`` positions).

Work decomposition (written out in Gluon, Triton's explicit-layout dialect,
because Triton's own layout choice spreads a chunk's positions over lanes):

- A program is one direction of ``BLOCK_D`` channels of one batch row (the two
  directions are separate programs, so there are twice as many warps in
  flight). A thread owns ``states_per_thread`` states of one channel and
  *every position of the chunk*: the (positions, states, channels) tile's
  position axis lies in registers. So the chunk's state re-scan and its adjoint
  scan are sequential chains inside a thread (no shuffles, no shared memory),
  and so are the sums over positions (dA) and most of the sums over states
  (du, ddelta).
- The sums over channels that B and C are shared by (dB, dC) go through one
  layout conversion per chunk (channels into registers) and are added
  atomically, one value per (position, state) and program.
- The decay one step later in scan order (the adjoint's) is a second exp2 of a
  shifted delta load, so no value moves between registers.
- With a gate, each direction writes its own share of dz; the wrapper adds the
  two.

Per chunk the entering state comes from a restore launch
(:func:`encoders.ops.gluon_scan._gluon_restore_kernel`) that re-scans, in
parallel over checkpoint groups, from the forward's checkpoints. Long clips at
small batch (below 512 programs) split the sequence into segments whose
entering adjoint states come from the Triton carry launches, as in the Triton
backward.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from . import triton_scan
from .gluon_scan import (GluonScanConfig, _batch_strides, _kernel_layouts, _prepare_directions, _rows_of_length, gluon,
                         gluon_available)
from .triton_scan import ScanInputs, _cdiv

if gluon is not None:
    from triton.experimental.gluon import language as gl

    from .gluon_scan import _sigmoid, _softplus
    from .triton_scan import _affine_combine, _keep_first


@dataclass(frozen=True)
class GluonBackwardConfig:
    """Tile and launch shape of the Gluon backward.

    - block_l: positions per chunk (held in each thread's registers; a
      divisor of the forward's checkpoint spacing).
    - states_per_thread: states of one channel a thread owns;
      ``STATE // states_per_thread`` lanes share a channel. None: decided
      per problem (:meth:`for_problem`): 4, or 2 (more lanes per channel,
      twice the programs) where 4 would either need a split or leave a
      second wave of programs mostly empty.
    - resident_programs: one-warp programs of the 4-state tile resident at
      once (8 per SM at its 252 registers, on an H100's 132 SMs), the wave
      size :meth:`for_problem` counts in.
    - num_warps: warps per program; a program owns
      ``32 * num_warps * states_per_thread / STATE`` channels of one direction.
    - max_registers: per-thread register cap given to ptxas (None: its choice).
    - splits / min_programs / split_target: below ``min_programs`` programs
      (batch x channel blocks x directions) the sequence is cut into as many
      segments as fit in ``split_target`` programs; ``splits`` fixes the
      count. A split costs a Triton pass over the sequence for the segments'
      adjoint states (about 0.8 ms at Ti 32-64 frames): measured, it pays at
      384 programs (1.09x) and loses at 768 (1.30-1.33x slower).

    Defaults: the fastest tile and split threshold of
    ``benchmarks/scan_speed.py --gluon-backward-sweep`` on an H100
    (docs/benchmarks.md).
    """

    block_l: int = 8
    states_per_thread: Optional[int] = None
    num_warps: int = 1
    max_registers: Optional[int] = None
    splits: Optional[int] = None
    min_programs: int = 512
    split_target: int = 4224
    resident_programs: int = 1056

    def block_d(self, state: int) -> int:
        if self.states_per_thread is None:
            raise ValueError("GluonBackwardConfig.block_d needs states_per_thread; resolve it with for_problem")
        return 32 // (state // self.states_per_thread) * self.num_warps

    def for_problem(self, batch: int, dim: int, state: int, directions: int) -> GluonBackwardConfig:
        """This config with ``states_per_thread`` decided for the problem (a
        fixed one is kept). Measured on an H100 (docs/benchmarks.md): 2 states
        a thread where 4 would split the sequence (384 programs: 1.15x) or run
        a second, mostly empty wave (1536 programs: 1.09-1.13x); else 4 (768
        programs, one wave: 1.38x; 3072 and more: 1.07-1.10x)."""
        if self.states_per_thread is not None:
            return self
        four = dataclasses.replace(self, states_per_thread=min(4, state))
        programs = batch * _cdiv(dim, four.block_d(state)) * directions
        would_split = programs < self.min_programs
        partial_second_wave = self.resident_programs < programs <= 2 * self.resident_programs
        if would_split or partial_second_wave:
            return dataclasses.replace(self, states_per_thread=min(2, state))
        return four

    def choose_splits(self, batch: int, dim: int, length: int, state: int, directions: int) -> int:
        programs = batch * _cdiv(dim, self.block_d(state)) * directions
        return triton_scan.splits_for(programs, _cdiv(length, self.block_l), self.splits, self.min_programs,
                                      self.split_target, round_up=False)


DEFAULT_BACKWARD_CONFIG = GluonBackwardConfig()


if gluon is not None:

    LOG2E: gl.constexpr = gl.constexpr(1.4426950408889634)

    @gluon.jit
    def _at_position(l3, index: gl.constexpr, value, elsewhere):
        """``value`` at chunk position ``index``, ``elsewhere`` at the others.
        Positions lie in registers, so the select folds away at compile time."""
        return gl.where(l3 == index, value, elsewhere)

    @gluon.jit
    def _reverse_positions(x, L3: gl.constexpr):
        """``x`` (BLOCK_L, STATE, BLOCK_D) in L3 reversed along its position
        axis, BLOCK_L a power of two up to 16. The axis lies in registers, so
        this only renames registers: one bit of the position index is flipped
        at a time by swapping the halves of a split. (A reverse
        ``associative_scan`` would instead be lowered with lane shuffles.)"""
        BLOCK_L: gl.constexpr = x.shape[0]
        S: gl.constexpr = x.shape[1]
        D: gl.constexpr = x.shape[2]
        y = gl.permute(x, [1, 2, 0])  # (S, D, BLOCK_L)
        for i in gl.static_range(4):
            if (2 << i) <= BLOCK_L:
                y = gl.reshape(y, [S, D, BLOCK_L // (2 << i), 2, 1 << i])
                low, high = gl.split(gl.permute(y, [0, 1, 2, 4, 3]))
                y = gl.permute(gl.join(high, low), [0, 1, 2, 4, 3])
                y = gl.reshape(y, [S, D, BLOCK_L])
        return gl.convert_layout(gl.permute(y, [2, 0, 1]), L3, assert_trivial=True)

    @gluon.jit
    def _positions(chunk, l, REVERSE: gl.constexpr, BLOCK_L: gl.constexpr):
        """Sequence positions of a chunk's rows, in scan order."""
        if REVERSE:
            return chunk * BLOCK_L + (BLOCK_L - 1 - l)
        return chunk * BLOCK_L + l

    @gluon.jit
    def _chunk_masks(chunk, l, d_mask, length, REVERSE: gl.constexpr, BLOCK_L: gl.constexpr):
        """A chunk's positions in scan order, and the masks of its (BLOCK_L,
        BLOCK_D) tiles at those positions and one step later in scan order.
        Recomputed where needed: cheaper than keeping them in registers."""
        pos = _positions(chunk, l, REVERSE, BLOCK_L)
        mask = (pos < length)[:, None] & d_mask[None, :]
        pos_next = pos + (-1 if REVERSE else 1)
        return pos, mask, mask & ((pos_next >= 0) & (pos_next < length))[:, None]

    @gluon.jit
    def _chunk_loads(u_base, dt_base, g_base, z_base, B_base, C_base, chunks_base, rows_c, rows_b, ckpt_offs,
                     chunk, l_c, d_mask_c, d_mask_s, length, HAS_Z: gl.constexpr, REVERSE: gl.constexpr,
                     STATE: gl.constexpr, BLOCK_L: gl.constexpr):
        """One chunk's raw tiles as stored, in the compact layouts (each value
        loaded once per warp): u, delta, delta one step later in scan order,
        output gradient, z (BLOCK_L, BLOCK_D), B, C (BLOCK_L, STATE), and the
        state entering the chunk (STATE, BLOCK_D, float32). Row l is the
        chunk's l-th position in scan order."""
        pos, mask, next_mask = _chunk_masks(chunk, l_c, d_mask_c, length, REVERSE, BLOCK_L)
        offs = rows_c[None, :] + pos[:, None]
        u = gl.load(u_base + offs, mask=mask, other=0.0)
        delta = gl.load(dt_base + offs, mask=mask, other=0.0)
        delta_next = gl.load(dt_base + offs + (-1 if REVERSE else 1), mask=next_mask, other=0.0)
        g = gl.load(g_base + offs, mask=mask, other=0.0)
        z = g
        if HAS_Z:
            z = gl.load(z_base + offs, mask=mask, other=0.0)
        offs_b = rows_b[None, :] + pos[:, None]
        b_mask = (pos < length)[:, None]
        Bc = gl.load(B_base + offs_b, mask=b_mask, other=0.0)
        Cc = gl.load(C_base + offs_b, mask=b_mask, other=0.0)
        h0 = gl.load(chunks_base + ckpt_offs + chunk * STATE, mask=d_mask_s[None, :], other=0.0)
        return u, delta, delta_next, g, z, Bc, Cc, h0

    @gluon.jit
    def _dt(delta_raw, bias, mask, SOFTPLUS: gl.constexpr):
        """dt = softplus(delta + bias) (or delta + bias), 0 where masked: masked
        positions decay by 1 and take no input. Also returns delta + bias."""
        raw = delta_raw.to(gl.float32) + bias[None, :]
        dt = _softplus(raw) if SOFTPLUS else raw
        return gl.where(mask, dt, 0.0), raw

    @gluon.jit
    def _stage_chunk(loads, bias, mask, next_mask, smem, HAS_Z: gl.constexpr, SOFTPLUS: gl.constexpr,
                     LT: gl.constexpr, LB: gl.constexpr):
        """The per-(position, channel) factors, computed once per warp in the
        compact layout and handed to the chunk layout through shared memory
        (``smem``: dt, dt one step later, u, dy, dz per unit y, softplus' (the
        ddelta factor), B, C).
        Returns them in LT ((BLOCK_L, BLOCK_D), a lane per state group) and B, C
        in LB ((BLOCK_L, STATE), every channel's lane the same)."""
        u_raw, delta_raw, next_raw, g_raw, z_raw, B_raw, C_raw, _ = loads
        s_dt, s_dt_next, s_u, s_dy, s_gate, s_dsoftplus, s_B, s_C = smem
        dt, raw = _dt(delta_raw, bias, mask, SOFTPLUS)
        dt_next, _ = _dt(next_raw, bias, next_mask, SOFTPLUS)
        g = g_raw.to(gl.float32)
        s_dt.store(dt)
        s_dt_next.store(dt_next)
        s_u.store(u_raw.to(gl.float32))
        if HAS_Z:
            zf = z_raw.to(gl.float32)
            sig = _sigmoid(zf)
            s_dy.store(g * zf * sig)
            s_gate.store(g * sig * (1.0 + zf * (1.0 - sig)))  # d(y silu(z)) / dz times g, per unit y
        else:
            s_dy.store(g)
        if SOFTPLUS:
            s_dsoftplus.store(_sigmoid(raw))  # softplus' = sigmoid
        s_B.store(B_raw.to(gl.float32))
        s_C.store(C_raw.to(gl.float32))
        gate = s_dy.load(LT)
        dsoftplus = gate
        if HAS_Z:
            gate = s_gate.load(LT)
        if SOFTPLUS:
            dsoftplus = s_dsoftplus.load(LT)
        return (s_dt.load(LT), s_dt_next.load(LT), s_u.load(LT), s_dy.load(LT), gate, dsoftplus,
                s_B.load(LB), s_C.load(LB))

    @gluon.jit
    def _backward_direction(
        u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, chunks_ptr, seg_ptr,
        du_ptr, ddt_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr, z_ptr, g_ptr, dz_ptr,
        b, d0, split, dim, length, n_chunks, n_splits, chunk_lo, chunk_hi, s_ub, s_dtb, s_Bb, s_Cb, s_zb, s_gb, smem,
        REVERSE: gl.constexpr, HAS_Z: gl.constexpr, SPLIT: gl.constexpr, SOFTPLUS: gl.constexpr,
        STATE: gl.constexpr, BLOCK_L: gl.constexpr, BLOCK_D: gl.constexpr, L3: gl.constexpr, LR: gl.constexpr,
        LC: gl.constexpr,
    ):
        """Gradients of one direction over chunks [chunk_lo, chunk_hi), walked
        against scan order. Tiles are (BLOCK_L, STATE, BLOCK_D) in L3 (a
        chunk's positions in each thread's registers, row l the l-th in scan
        order); LR holds the same tile with the channels in registers, for the
        sums over channels; LC is the compact layout of global loads.

        Per chunk: states h_t re-scanned from the restored entering state; the
        adjoint lambda_t = C_t dy_t + exp(dt_{t+1} A) lambda_{t+1} scanned back;
        then du, ddelta (stored), dz's share (HAS_Z), dB, dC (added
        atomically), dA, dD, dbias (accumulated, added atomically at the end)."""
        LT: gl.constexpr = gl.SliceLayout(1, L3)  # (BLOCK_L, BLOCK_D)
        LB: gl.constexpr = gl.SliceLayout(2, L3)  # (BLOCK_L, STATE)
        LS: gl.constexpr = gl.SliceLayout(0, L3)  # (STATE, BLOCK_D)
        n_s = gl.arange(0, STATE, layout=gl.SliceLayout(1, LS))
        d_s = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, LS))
        d_mask_s = d_s < dim
        A = gl.load(A_ptr + d_s[None, :] * STATE + n_s[:, None], mask=d_mask_s[None, :], other=0.0)
        A2 = A * LOG2E
        rows_s = b * dim + d_s[None, :]
        ckpt_offs = rows_s * (n_chunks * STATE) + n_s[:, None]
        l_t = gl.arange(0, BLOCK_L, layout=gl.SliceLayout(1, LT))
        d_t = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, LT))
        d_mask_t = d_t < dim
        Dskip = gl.load(D_ptr + d_t, mask=d_mask_t, other=0.0)
        rows_t = (d_t - d0) * length
        l_c = gl.arange(0, BLOCK_L, layout=gl.SliceLayout(1, LC))
        d_c = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, LC))
        d_mask_c = d_c < dim
        bias = gl.load(bias_ptr + d_c, mask=d_mask_c, other=0.0)
        rows_c = (d_c - d0) * length
        rows_b = gl.arange(0, STATE, layout=gl.SliceLayout(0, LC)) * length
        l3 = gl.arange(0, BLOCK_L, layout=gl.SliceLayout(1, LB))[:, None, None]
        u_base = u_ptr + b * s_ub + d0 * length
        dt_base = dt_ptr + b * s_dtb + d0 * length
        z_base = z_ptr + b * s_zb + d0 * length
        g_base = g_ptr + b * s_gb + d0 * length
        grad_base = (b * dim + d0) * length  # du, ddelta, dz: contiguous (batch, dim, length)
        B_base = B_ptr + b * s_Bb
        C_base = C_ptr + b * s_Cb
        l_r = gl.arange(0, BLOCK_L, layout=gl.SliceLayout(1, gl.SliceLayout(2, LR)))
        n_r = gl.arange(0, STATE, layout=gl.SliceLayout(0, gl.SliceLayout(2, LR)))
        dBC_base = b * STATE * length + n_r[None, :] * length  # dB, dC: float32 (batch, STATE, length)

        # The adjoint state one step beyond this segment (against scan order):
        # zero at the sequence's end, else what the carry launches left.
        carry = gl.zeros([STATE, BLOCK_D], gl.float32, LS)
        if SPLIT:
            carry = gl.load(seg_ptr + (rows_s * n_splits + split) * STATE + n_s[:, None],
                            mask=d_mask_s[None, :], other=0.0)

        dA_acc = gl.zeros([STATE, BLOCK_D], gl.float32, LS)
        dD_acc = gl.zeros([BLOCK_D], gl.float32, gl.SliceLayout(0, LT))
        dbias_acc = gl.zeros([BLOCK_D], gl.float32, gl.SliceLayout(0, LT))
        chunk = chunk_lo if REVERSE else chunk_hi - 1
        loads = _chunk_loads(u_base, dt_base, g_base, z_base, B_base, C_base, chunks_ptr, rows_c, rows_b,
                             ckpt_offs, chunk, l_c, d_mask_c, d_mask_s, length, HAS_Z, REVERSE, STATE, BLOCK_L)
        for _ in range(0, chunk_hi - chunk_lo):
            h0 = loads[7]
            _, mask_c, next_mask_c = _chunk_masks(chunk, l_c, d_mask_c, length, REVERSE, BLOCK_L)
            dt, dt_next, u, dy, gate, dsoftplus, B_raw, C_raw = _stage_chunk(
                loads, bias, mask_c, next_mask_c, smem, HAS_Z, SOFTPLUS, LT, LB)
            following = gl.minimum(chunk + 1, chunk_hi - 1) if REVERSE else gl.maximum(chunk - 1, chunk_lo)
            loads = _chunk_loads(u_base, dt_base, g_base, z_base, B_base, C_base, chunks_ptr, rows_c, rows_b,
                                 ckpt_offs, following, l_c, d_mask_c, d_mask_s, length, HAS_Z, REVERSE,
                                 STATE, BLOCK_L)
            pos = _positions(chunk, l_t, REVERSE, BLOCK_L)
            mask = (pos < length)[:, None] & d_mask_t[None, :]
            dtu = dt * u
            Bc = B_raw[:, :, None]
            Cc = C_raw[:, :, None]

            # The chunk's states, scanned in registers from the entering one
            # (folded into the first step; -0.0 elsewhere: x + -0.0 == x
            # exactly, so the select and the add fold away).
            decay = gl.exp2(dt[:, None, :] * A2[None, :, :])
            drive = dtu[:, None, :] * Bc
            seeded = drive + _at_position(l3, 0, decay * h0[None, :, :], -0.0)
            _, h = gl.associative_scan((decay, seeded), 0, _affine_combine)
            if HAS_Z:
                y = gl.sum(h * Cc, axis=1) + Dskip[None, :] * u
                gl.store(dz_ptr + grad_base + rows_t[None, :] + pos[:, None], y * gate, mask=mask)

            # The adjoint, against scan order (so on reversed rows), entering from the carry.
            decay_next = gl.exp2(dt_next[:, None, :] * A2[None, :, :])
            cdy = Cc * dy[:, None, :] + _at_position(l3, BLOCK_L - 1, decay_next * carry[None, :, :], -0.0)
            _, lam = gl.associative_scan((_reverse_positions(decay_next, L3), _reverse_positions(cdy, L3)), 0,
                                         _affine_combine)
            lam = _reverse_positions(lam, L3)
            carry = gl.reduce(lam, 0, _keep_first)

            # decay_t * h_{t-1} = h_t - drive_t: no division by a decay that may underflow.
            lam_prev = lam * (h - drive)
            dA_acc += gl.sum(lam_prev * dt[:, None, :], axis=0)
            lam_B = gl.sum(lam * Bc, axis=1)
            ddt = lam_B * u + gl.sum(lam_prev * A[None, :, :], axis=1)
            du = dy * Dskip[None, :] + dt * lam_B
            if SOFTPLUS:
                ddt = ddt * dsoftplus
            ddelta = gl.where(mask, ddt, 0.0)
            dD_acc += gl.sum(dy * u, axis=0)
            dbias_acc += gl.sum(ddelta, axis=0)
            offs = grad_base + rows_t[None, :] + pos[:, None]
            gl.store(du_ptr + offs, du.to(du_ptr.dtype.element_ty), mask=mask)
            gl.store(ddt_ptr + offs, ddelta.to(ddt_ptr.dtype.element_ty), mask=mask)

            # B and C are shared by all channels: sum this program's, add atomically.
            pos_r = _positions(chunk, l_r, REVERSE, BLOCK_L)[:, None]
            in_range = pos_r < length
            dB_t = gl.sum(gl.convert_layout(lam * dtu[:, None, :], LR), axis=2)
            gl.atomic_add(dB_ptr + dBC_base + pos_r, dB_t, mask=in_range, sem="relaxed")
            dC_t = gl.sum(gl.convert_layout(h * dy[:, None, :], LR), axis=2)
            gl.atomic_add(dC_ptr + dBC_base + pos_r, dC_t, mask=in_range, sem="relaxed")
            chunk = following
        gl.atomic_add(dA_ptr + d_s[None, :] * STATE + n_s[:, None], dA_acc, mask=d_mask_s[None, :], sem="relaxed")
        gl.atomic_add(dD_ptr + d_t, dD_acc, mask=d_mask_t, sem="relaxed")
        gl.atomic_add(dbias_ptr + d_t, dbias_acc, mask=d_mask_t, sem="relaxed")

    @gluon.jit
    def _gluon_scan_bwd_kernel(
        u_f, dt_f, A_f, B_f, C_f, D_f, bias_f, chunks_f, seg_f, du_f, ddt_f, dA_f, dB_f, dC_f, dD_f, dbias_f,
        u_b, dt_b, A_b, B_b, C_b, D_b, bias_b, chunks_b, seg_b, du_b, ddt_b, dA_b, dB_b, dC_b, dD_b, dbias_b,
        z_ptr, g_ptr, dz_ptr, dim, length, n_chunks, chunks_per_split, n_splits,
        s_ufb, s_dtfb, s_Bfb, s_Cfb, s_ubb, s_dtbb, s_Bbb, s_Cbb, s_zb, s_gb,
        BIDIRECTIONAL: gl.constexpr, HAS_Z: gl.constexpr, SPLIT: gl.constexpr, SOFTPLUS: gl.constexpr,
        STATE: gl.constexpr, BLOCK_L: gl.constexpr, BLOCK_D: gl.constexpr, L3: gl.constexpr, LR: gl.constexpr,
        LC: gl.constexpr, ROWS: gl.constexpr,
    ):
        """Grid (batch, channel blocks, segments x directions): one direction's
        gradients over one segment. dz_ptr: float32 (directions, batch, dim,
        length), each direction's share of dz."""
        smem = (gl.allocate_shared_memory(gl.float32, [BLOCK_L, BLOCK_D], ROWS),  # dt
                gl.allocate_shared_memory(gl.float32, [BLOCK_L, BLOCK_D], ROWS),  # dt one step later
                gl.allocate_shared_memory(gl.float32, [BLOCK_L, BLOCK_D], ROWS),  # u
                gl.allocate_shared_memory(gl.float32, [BLOCK_L, BLOCK_D], ROWS),  # dy
                gl.allocate_shared_memory(gl.float32, [BLOCK_L, BLOCK_D], ROWS),  # dz per unit y
                gl.allocate_shared_memory(gl.float32, [BLOCK_L, BLOCK_D], ROWS),  # softplus'
                gl.allocate_shared_memory(gl.float32, [BLOCK_L, STATE], ROWS),  # B
                gl.allocate_shared_memory(gl.float32, [BLOCK_L, STATE], ROWS))  # C
        b = gl.program_id(0).to(gl.int64)
        d0 = gl.program_id(1) * BLOCK_D
        directions: gl.constexpr = 2 if BIDIRECTIONAL else 1
        split = gl.program_id(2) // directions
        chunk_lo = split * chunks_per_split
        chunk_hi = gl.minimum(chunk_lo + chunks_per_split, n_chunks)
        # A constexpr test first: a one-direction scan has no second branch to compile.
        if BIDIRECTIONAL and gl.program_id(2) % 2 == 1:
            _backward_direction(
                u_b, dt_b, A_b, B_b, C_b, D_b, bias_b, chunks_b, seg_b,
                du_b, ddt_b, dA_b, dB_b, dC_b, dD_b, dbias_b, z_ptr, g_ptr, dz_ptr + gl.num_programs(0) * dim * length,
                b, d0, split, dim, length, n_chunks, n_splits, chunk_lo, chunk_hi,
                s_ubb, s_dtbb, s_Bbb, s_Cbb, s_zb, s_gb, smem,
                True, HAS_Z, SPLIT, SOFTPLUS, STATE, BLOCK_L, BLOCK_D, L3, LR, LC)
        else:
            _backward_direction(
                u_f, dt_f, A_f, B_f, C_f, D_f, bias_f, chunks_f, seg_f,
                du_f, ddt_f, dA_f, dB_f, dC_f, dD_f, dbias_f, z_ptr, g_ptr, dz_ptr,
                b, d0, split, dim, length, n_chunks, n_splits, chunk_lo, chunk_hi,
                s_ufb, s_dtfb, s_Bfb, s_Cfb, s_zb, s_gb, smem,
                False, HAS_Z, SPLIT, SOFTPLUS, STATE, BLOCK_L, BLOCK_D, L3, LR, LC)


@functools.lru_cache(maxsize=None)  # built once per tile, not on every launch
def _backward_layouts(config: GluonBackwardConfig, state: int) -> dict:
    """Layouts of :func:`_gluon_scan_bwd_kernel`, as constexpr launch arguments:

    - L3 (BLOCK_L, STATE, BLOCK_D): a thread holds every position of the chunk
      and ``states_per_thread`` states of one channel; ``state //
      states_per_thread`` lanes share a channel, the rest and the warps run
      along channels.
    - LR: the same tile with the channels in registers (lanes along positions
      and states), for the sums over channels.
    - LC: (BLOCK_L, BLOCK_D) and (BLOCK_L, STATE) tiles with each value in
      one lane (lanes along positions first), for global loads; ROWS: shared
      tiles with a chunk's positions of one channel contiguous.
    """
    warps = config.num_warps
    lanes_n = state // config.states_per_thread
    lanes_l = min(config.block_l, 32)
    lanes_rn = 32 // lanes_l
    return dict(
        BLOCK_D=config.block_d(state),
        L3=gl.BlockedLayout([config.block_l, config.states_per_thread, 1], [1, lanes_n, 32 // lanes_n],
                            [1, 1, warps], [0, 1, 2]),
        LR=gl.BlockedLayout([1, max(1, state // lanes_rn), config.block_d(state) // warps],
                            [lanes_l, lanes_rn, 1], [1, 1, warps], [2, 1, 0]),
        LC=gl.BlockedLayout([1, 1], [lanes_l, 32 // lanes_l], [1, warps], [0, 1]),
        ROWS=gl.SwizzledSharedLayout(1, 1, 1, [0, 1]),
    )


def gluon_scan_backward(
    forward: ScanInputs,
    backward: Optional[ScanInputs],
    z: Optional[Tensor],
    saved: tuple[Tensor, Optional[Tensor]],
    grad_out: Tensor,
    delta_softplus: bool = True,
    checkpoint_positions: int = 64,
    config: GluonBackwardConfig = DEFAULT_BACKWARD_CONFIG,
) -> tuple[list[Tensor], Optional[list[Tensor]], Optional[Tensor]]:
    """Gradients of the fused scan's output, from the states a forward saved
    every ``checkpoint_positions`` positions ((batch, dim, slots, state)
    float32 per direction); the contract of
    :func:`encoders.ops.triton_scan.scan_backward`: returns ([du, ddelta, dA,
    dB, dC, dD, ddelta_bias] forward, the same backward or None, dz or None)."""
    if not gluon_available():
        raise RuntimeError("the Gluon scan needs Triton with Gluon (3.5 or later)")
    from .gluon_scan import _gluon_restore_kernel  # defined only where Gluon is

    bidirectional = backward is not None
    directions = 2 if bidirectional else 1
    batch, dim, _ = forward[0].shape
    config = config.for_problem(batch, dim, forward[2].shape[1], directions)
    f, b, (batch, dim, length, state) = _prepare_directions(forward, backward, config.states_per_thread,
                                                            "gluon scan backward")
    u = f[0]
    if checkpoint_positions % config.block_l:
        raise ValueError(f"gluon scan backward: checkpoint_positions={checkpoint_positions} is not a multiple of "
                         f"block_l={config.block_l}")
    n_chunks = _cdiv(length, config.block_l)
    group_chunks = checkpoint_positions // config.block_l
    n_slots = _cdiv(n_chunks, group_chunks)
    if saved[0].shape != (batch, dim, n_slots, state):
        raise ValueError(f"gluon scan backward: saved states {tuple(saved[0].shape)} do not match "
                         f"checkpoint_positions={checkpoint_positions} (expected {(batch, dim, n_slots, state)})")
    grad_out = _rows_of_length(grad_out)
    zt = _rows_of_length(z) if z is not None else u
    f32 = dict(device=u.device, dtype=torch.float32)
    block_d = config.block_d(state)
    # The restore launch re-scans like the forward, in the forward's tile at this chunk length.
    restore_config = GluonScanConfig(block_l=config.block_l)
    restore_block_d = restore_config.block_d(state)

    def chunk_states(direction: ScanInputs, ckpt: Tensor, reverse: bool) -> Tensor:
        chunks = torch.empty(batch, dim, n_chunks, state, **f32)
        _gluon_restore_kernel[(batch, _cdiv(dim, restore_block_d), n_slots)](
            *direction, ckpt, chunks, dim, length, n_slots, n_chunks, *_batch_strides(direction),
            REVERSE=reverse, SOFTPLUS=delta_softplus, GROUP_CHUNKS=group_chunks, STATE=state,
            BLOCK_L=config.block_l, num_warps=1, **_kernel_layouts(restore_config, state))
        return chunks

    chunks_f = chunk_states(f, saved[0], False)
    chunks_b = chunk_states(b, saved[1], True) if bidirectional else chunks_f

    def grad_buffers(direction: ScanInputs) -> list[Tensor]:
        return [torch.empty(batch, dim, length, device=u.device, dtype=direction[0].dtype),
                torch.empty(batch, dim, length, device=u.device, dtype=direction[1].dtype),
                torch.zeros(dim, state, **f32), torch.zeros(batch, state, length, **f32),
                torch.zeros(batch, state, length, **f32), torch.zeros(dim, **f32), torch.zeros(dim, **f32)]

    grads_f = grad_buffers(f)
    grads_b = grad_buffers(b) if bidirectional else grads_f
    dz_shares = torch.empty(directions, batch, dim, length, **f32) if z is not None else grads_f[0]
    splits, chunks_per_split = triton_scan.split_layout(
        n_chunks, config.choose_splits(batch, dim, length, state, directions))
    # The first two launches of a split backward (segment adjoint ends, carry) are the Triton ones.
    seg_f, seg_b = triton_scan._adjoint_segment_starts(
        f, b, zt, grad_out, bidirectional, z is not None, delta_softplus, n_chunks, chunks_per_split, splits,
        config.block_l, 8, {"num_warps": 1}, grads_f[3])
    options = {"num_warps": config.num_warps}
    if config.max_registers is not None:
        options["maxnreg"] = config.max_registers
    _gluon_scan_bwd_kernel[(batch, _cdiv(dim, block_d), splits * directions)](
        *f, chunks_f, seg_f, *grads_f, *b, chunks_b, seg_b, *grads_b, zt, grad_out, dz_shares,
        dim, length, n_chunks, chunks_per_split, splits,
        *_batch_strides(f), *_batch_strides(b), zt.stride(0), grad_out.stride(0),
        BIDIRECTIONAL=bidirectional, HAS_Z=z is not None, SPLIT=splits > 1, SOFTPLUS=delta_softplus,
        STATE=state, BLOCK_L=config.block_l, **_backward_layouts(config, state), **options)
    dz = dz_shares.sum(0) if z is not None else None
    return triton_scan._gradients_in_input_order(forward, backward, grads_f, grads_b if bidirectional else None,
                                                 z, dz)
