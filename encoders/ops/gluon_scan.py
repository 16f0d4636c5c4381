"""Bidirectional selective-scan forward in Gluon: one thread per channel.

Same contract as :func:`encoders.ops.triton_scan.scan_forward` (inputs in
ORIGINAL order, the backward direction read by index arithmetic, y = (forward
+ backward) * silu(z)), with a different work decomposition whose layouts
Triton's compiler would not choose by itself, so they are written out in
Gluon (Triton's explicit-layout dialect, compiled at run time like Triton):

- A thread owns one channel and ``STATE // STATES_PER_THREAD`` lanes share it
  (1 or 2), so the state recurrence and most of the sum over states stay in
  registers. Per element of (position, state, channel) that leaves the minimum
  work: one exp2 (the decay), a multiply for its argument, a multiply for the
  drive, the recurrence FMA and the read-out FMA.
- Per chunk of ``BLOCK_L`` positions, u / delta / z are loaded coalesced
  (lanes along positions), softplus and dt*u are computed once per (position,
  channel) and staged in shared memory with B and C (float32); the steps then
  read one row each (a broadcast for B and C). The chunk's outputs go back
  through shared memory and leave coalesced, gated.
- The next chunk's global loads are issued before this chunk's arithmetic.

Both directions run in one program, one after the other; the backward
direction accumulates onto the forward's stored (ungated) output and gates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

try:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
except ImportError:  # pragma: no cover - CPU-only PyTorch or an older Triton
    gluon = None

#: (u, delta, A, B, C, D, delta_bias) of one scan direction.
ScanInputs = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def gluon_available() -> bool:
    return gluon is not None


@dataclass(frozen=True)
class GluonScanConfig:
    """Tiles and launch shape of the Gluon forward.

    - block_l: positions per chunk (staged in shared memory).
    - states_per_thread: STATE / this many lanes share a channel.
    - num_warps: warps per program; a program owns
      32 * num_warps * states_per_thread / STATE channels.
    - splits / min_programs / split_target: as in
      :class:`encoders.ops.triton_scan.TritonScanConfig`: with fewer than
      ``min_programs`` (batch x channel-block) programs, the sequence is cut
      into segments for about ``split_target`` programs (three launches).

    Defaults come from ``benchmarks/scan_speed.py --sweep`` on an H100
    (docs/benchmarks.md).
    """

    block_l: int = 8
    states_per_thread: int = 8
    num_warps: int = 1
    splits: Optional[int] = None
    min_programs: int = 512
    split_target: int = 2048

    def block_d(self, state: int) -> int:
        return 32 // (state // self.states_per_thread) * self.num_warps

    def choose_splits(self, batch: int, dim: int, length: int, state: int) -> int:
        n_chunks = _cdiv(length, self.block_l)
        if self.splits is not None:
            return max(1, min(self.splits, n_chunks))
        programs = batch * _cdiv(dim, self.block_d(state))
        if programs >= self.min_programs:
            return 1
        return max(1, min(_cdiv(self.split_target, programs), n_chunks))


DEFAULT_GLUON_CONFIG = GluonScanConfig()


if gluon is not None:

    LOG2E: gl.constexpr = gl.constexpr(1.4426950408889634)

    @gluon.jit
    def _softplus(x):
        # PyTorch's softplus: linear above 20; log(1 + e^x) ~ e^x far below 0.
        return gl.where(x > 20.0, x, gl.where(x < -15.0, gl.exp(x), gl.log(1.0 + gl.exp(x))))

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
    def _direction(
        u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, z_ptr, out_ptr, ckpt_ptr,
        b, d0, dim, length, s_ub, s_dtb, s_Bb, s_Cb, s_zb, n_slots, h, chunk_lo, chunk_hi,
        smem_dt, smem_dtu, smem_B, smem_C, smem_y,
        REVERSE: gl.constexpr, WRITE_OUT: gl.constexpr, ACCUMULATE: gl.constexpr, GATE: gl.constexpr,
        SOFTPLUS: gl.constexpr, SAVE_STATES: gl.constexpr, CKPT_CHUNKS: gl.constexpr,
        STATE: gl.constexpr, BLOCK_L: gl.constexpr, BLOCK_D: gl.constexpr,
        LS: gl.constexpr, LC: gl.constexpr, LD: gl.constexpr, LB: gl.constexpr, LD_B: gl.constexpr,
    ):
        """One direction over chunks [chunk_lo, chunk_hi) in scan order from
        state ``h`` (STATE, BLOCK_D); writes (or accumulates onto) ``out`` if
        WRITE_OUT. Returns (final state, sum of dt per channel).

        Layouts: LS (STATE, BLOCK_D) the state; LC (BLOCK_L, BLOCK_D) coalesced
        global tiles (lanes along positions); LD the same tiles with lanes
        along channels, for shared-memory rows; LB (BLOCK_L, STATE) B and C as
        loaded, LD_B as stored. SAVE_STATES: the state entering every
        CKPT_CHUNKS-th chunk's group (in scan order) goes to ``ckpt_ptr``,
        (batch, dim, n_slots, STATE) float32, as the Triton backward reads it."""
        n_s = gl.arange(0, STATE, layout=gl.SliceLayout(1, LS))
        d_s = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, LS))
        A2 = gl.load(A_ptr + d_s[None, :] * STATE + n_s[:, None], mask=(d_s < dim)[None, :], other=0.0) * LOG2E
        ckpt_offs = (b * dim + d_s[None, :]) * (n_slots * STATE) + n_s[:, None]
        l_c = gl.arange(0, BLOCK_L, layout=gl.SliceLayout(1, LC))
        d_c = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, LC))
        d_mask_c = d_c < dim
        bias = gl.load(bias_ptr + d_c, mask=d_mask_c, other=0.0)
        Dskip = gl.load(D_ptr + d_c, mask=d_mask_c, other=0.0)
        # Every (batch, row, length) tensor here has rows of stride ``length``
        # (the wrapper makes it so): one int32 row offset serves them all.
        rows_c = (d_c - d0) * length
        u_base = u_ptr + b * s_ub + d0 * length
        dt_base = dt_ptr + b * s_dtb + d0 * length
        z_base = z_ptr + b * s_zb + d0 * length
        out_base = out_ptr + (b * dim + d0) * length
        l_b = gl.arange(0, BLOCK_L, layout=gl.SliceLayout(1, LB))
        rows_b = gl.arange(0, STATE, layout=gl.SliceLayout(0, LB)) * length
        B_base = B_ptr + b * s_Bb
        C_base = C_ptr + b * s_Cb
        B_cols = smem_B.permute([1, 0])  # (STATE, BLOCK_L) views: a step reads one column
        C_cols = smem_C.permute([1, 0])
        dt_sum = gl.zeros([BLOCK_D], gl.float32, gl.SliceLayout(0, LC))
        n_chunks = gl.cdiv(length, BLOCK_L)

        chunk = chunk_hi - 1 if REVERSE else chunk_lo
        loads = _chunk_loads(u_base, dt_base, B_base, C_base, rows_c, rows_b, chunk * BLOCK_L + l_c,
                             chunk * BLOCK_L + l_b, d_mask_c, length)
        for _ in range(0, chunk_hi - chunk_lo):
            u_raw, delta_raw, B_raw, C_raw = loads
            following = gl.maximum(chunk - 1, chunk_lo) if REVERSE else gl.minimum(chunk + 1, chunk_hi - 1)
            # What the steps need is loaded a chunk ahead; z and the other
            # direction's output only at the end of this chunk, so their loads
            # are issued now and wait through its steps.
            loads = _chunk_loads(u_base, dt_base, B_base, C_base, rows_c, rows_b, following * BLOCK_L + l_c,
                                 following * BLOCK_L + l_b, d_mask_c, length)
            pos_c = chunk * BLOCK_L + l_c
            mask = (pos_c < length)[:, None] & d_mask_c[None, :]
            offs = rows_c[None, :] + pos_c[:, None]
            if WRITE_OUT:
                if GATE:
                    z_raw = gl.load(z_base + offs, mask=mask, other=0.0)
                if ACCUMULATE:
                    acc_raw = gl.load(out_base + offs, mask=mask, other=0.0)
            if SAVE_STATES:
                if REVERSE:
                    first = ((chunk + 1) % CKPT_CHUNKS == 0) | (chunk == n_chunks - 1)
                else:
                    first = chunk % CKPT_CHUNKS == 0
                if first:
                    gl.store(ckpt_ptr + ckpt_offs + (chunk // CKPT_CHUNKS) * STATE, h,
                             mask=(d_s < dim)[None, :])
            u = u_raw.to(gl.float32)
            raw = delta_raw.to(gl.float32) + bias[None, :]
            if SOFTPLUS:
                raw = _softplus(raw)
            dt = gl.where(mask, raw, 0.0)  # masked positions: decay 1, no input
            dt_sum += gl.sum(dt, axis=0)
            smem_dt.store(gl.convert_layout(dt, LD))
            smem_dtu.store(gl.convert_layout(dt * u, LD))
            smem_B.store(gl.convert_layout(B_raw.to(gl.float32), LD_B))
            if WRITE_OUT:
                smem_C.store(gl.convert_layout(C_raw.to(gl.float32), LD_B))
            for i in gl.static_range(BLOCK_L):
                if REVERSE:
                    h = _step(h, A2, smem_dt, smem_dtu, B_cols, C_cols, smem_y, BLOCK_L - 1 - i, WRITE_OUT, LS)
                else:
                    h = _step(h, A2, smem_dt, smem_dtu, B_cols, C_cols, smem_y, i, WRITE_OUT, LS)
            if WRITE_OUT:
                y = gl.convert_layout(smem_y.load(LD), LC) + Dskip[None, :] * u
                if ACCUMULATE:
                    y += acc_raw.to(gl.float32)
                if GATE:
                    zf = z_raw.to(gl.float32)
                    y = y * zf / (1.0 + gl.exp(-zf))
                gl.store(out_base + offs, y.to(out_ptr.dtype.element_ty), mask=mask)
            chunk = following
        return h, dt_sum

    @gluon.jit
    def _gluon_scan_fwd_kernel(
        u_f, dt_f, A_f, B_f, C_f, D_f, bias_f,
        u_b, dt_b, A_b, B_b, C_b, D_b, bias_b,
        z_ptr, out_ptr, ckpt_f, ckpt_b, seg_f, seg_b, dtsum_f, dtsum_b,
        dim, length, chunks_per_split, n_splits, n_slots,
        s_ufb, s_dtfb, s_Bfb, s_Cfb, s_ubb, s_dtbb, s_Bbb, s_Cbb, s_zb,
        END_STATES: gl.constexpr, SPLIT: gl.constexpr, BIDIRECTIONAL: gl.constexpr, HAS_Z: gl.constexpr,
        SOFTPLUS: gl.constexpr, SAVE_STATES: gl.constexpr, CKPT_CHUNKS: gl.constexpr,
        STATE: gl.constexpr, BLOCK_L: gl.constexpr, STATES_PER_THREAD: gl.constexpr,
    ):
        """Grid (batch, channel blocks, segments). END_STATES: each segment's
        end state from a zero start and its summed dt, into ``seg_*`` /
        ``dtsum_*`` (launch 1 of 3 of a split scan). Otherwise write y, each
        segment starting from the state the carry kernel left in ``seg_*`` (if
        SPLIT) or from zero."""
        NUM_WARPS: gl.constexpr = gl.num_warps()
        LANES_N: gl.constexpr = STATE // STATES_PER_THREAD
        LANES_D: gl.constexpr = 32 // LANES_N
        BLOCK_D: gl.constexpr = LANES_D * NUM_WARPS
        LANES_L: gl.constexpr = 32 if BLOCK_L >= 32 else BLOCK_L
        LS: gl.constexpr = gl.BlockedLayout([STATES_PER_THREAD, 1], [LANES_N, LANES_D], [1, NUM_WARPS], [0, 1])
        LC: gl.constexpr = gl.BlockedLayout([1, 1], [LANES_L, 32 // LANES_L], [1, NUM_WARPS], [0, 1])
        LD: gl.constexpr = gl.BlockedLayout([1, 1], [LANES_N, LANES_D], [1, NUM_WARPS], [1, 0])
        LB: gl.constexpr = gl.BlockedLayout([1, 1], [LANES_L, 32 // LANES_L], [1, NUM_WARPS], [0, 1])
        LD_B: gl.constexpr = gl.BlockedLayout([1, 1], [32 // STATE, STATE], [1, NUM_WARPS], [1, 0])
        # Row-major tiles, one row per position: a step reads one row (dt,
        # dt*u: lanes along channels; B, C: every lane the same states, a
        # broadcast) and writes one row of y. Tiles are written and read whole
        # with lanes along rows (LD, LD_B): no bank conflicts either way.
        ROWS: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])
        smem_dt = gl.allocate_shared_memory(gl.float32, [BLOCK_L, BLOCK_D], ROWS)
        smem_dtu = gl.allocate_shared_memory(gl.float32, [BLOCK_L, BLOCK_D], ROWS)
        smem_y = gl.allocate_shared_memory(gl.float32, [BLOCK_L, BLOCK_D], ROWS)
        smem_B = gl.allocate_shared_memory(gl.float32, [BLOCK_L, STATE], ROWS)
        smem_C = gl.allocate_shared_memory(gl.float32, [BLOCK_L, STATE], ROWS)

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
        zero = gl.zeros([STATE, BLOCK_D], gl.float32, LS)

        # Forward direction. Its output is ungated unless it is the only one.
        if END_STATES:
            if split < n_splits - 1:  # the last segment's end state is never used
                h, dts = _direction(
                    u_f, dt_f, A_f, B_f, C_f, D_f, bias_f, z_ptr, out_ptr, ckpt_f,
                    b, d0, dim, length, s_ufb, s_dtfb, s_Bfb, s_Cfb, s_zb, n_slots, zero, chunk_lo, chunk_hi,
                    smem_dt, smem_dtu, smem_B, smem_C, smem_y,
                    False, False, False, False, SOFTPLUS, False, CKPT_CHUNKS, STATE, BLOCK_L, BLOCK_D, LS, LC, LD, LB, LD_B)
                gl.store(seg_f + seg_offs, h, mask=seg_mask)
                gl.store(dtsum_f + (b * dim + d_c) * n_splits + split, dts, mask=d_c < dim)
        else:
            h0 = gl.load(seg_f + seg_offs, mask=seg_mask, other=0.0) if SPLIT else zero
            _direction(
                u_f, dt_f, A_f, B_f, C_f, D_f, bias_f, z_ptr, out_ptr, ckpt_f,
                b, d0, dim, length, s_ufb, s_dtfb, s_Bfb, s_Cfb, s_zb, n_slots, h0, chunk_lo, chunk_hi,
                smem_dt, smem_dtu, smem_B, smem_C, smem_y,
                False, True, False, HAS_Z and not BIDIRECTIONAL, SOFTPLUS, SAVE_STATES, CKPT_CHUNKS,
                STATE, BLOCK_L, BLOCK_D, LS, LC, LD, LB, LD_B)
        if BIDIRECTIONAL:
            if END_STATES:
                if split > 0:  # the backward direction ends in segment 0
                    h, dts = _direction(
                        u_b, dt_b, A_b, B_b, C_b, D_b, bias_b, z_ptr, out_ptr, ckpt_b,
                        b, d0, dim, length, s_ubb, s_dtbb, s_Bbb, s_Cbb, s_zb, n_slots, zero, chunk_lo, chunk_hi,
                        smem_dt, smem_dtu, smem_B, smem_C, smem_y,
                        True, False, False, False, SOFTPLUS, False, CKPT_CHUNKS, STATE, BLOCK_L, BLOCK_D, LS, LC, LD, LB, LD_B)
                    gl.store(seg_b + seg_offs, h, mask=seg_mask)
                    gl.store(dtsum_b + (b * dim + d_c) * n_splits + split, dts, mask=d_c < dim)
            else:
                h0 = gl.load(seg_b + seg_offs, mask=seg_mask, other=0.0) if SPLIT else zero
                _direction(
                    u_b, dt_b, A_b, B_b, C_b, D_b, bias_b, z_ptr, out_ptr, ckpt_b,
                    b, d0, dim, length, s_ubb, s_dtbb, s_Bbb, s_Cbb, s_zb, n_slots, h0, chunk_lo, chunk_hi,
                    smem_dt, smem_dtu, smem_B, smem_C, smem_y,
                    True, True, True, HAS_Z, SOFTPLUS, SAVE_STATES, CKPT_CHUNKS,
                    STATE, BLOCK_L, BLOCK_D, LS, LC, LD, LB, LD_B)

    @gluon.jit
    def _carry_direction(seg_ptr, dtsum_ptr, A_ptr, rows, d_offs, d_mask, n_splits,
                         REVERSE: gl.constexpr, STATE: gl.constexpr, LS: gl.constexpr):
        # Replace every segment's local end state with its true start state.
        n_offs = gl.arange(0, STATE, layout=gl.SliceLayout(1, LS))
        A2 = gl.load(A_ptr + d_offs[None, :] * STATE + n_offs[:, None], mask=d_mask[None, :], other=0.0) * LOG2E
        h = gl.zeros_like(A2)
        for i in range(0, n_splits):
            s = n_splits - 1 - i if REVERSE else i
            ptrs = seg_ptr + (rows[None, :] * n_splits + s) * STATE + n_offs[:, None]
            local_end = gl.load(ptrs, mask=d_mask[None, :], other=0.0)
            dts = gl.load(dtsum_ptr + rows * n_splits + s, mask=d_mask, other=0.0)
            gl.store(ptrs, h, mask=d_mask[None, :])
            h = gl.exp2(A2 * dts[None, :]) * h + local_end

    @gluon.jit
    def _gluon_scan_carry_kernel(seg_f, dtsum_f, A_f, seg_b, dtsum_b, A_b, dim, n_splits,
                                 BIDIRECTIONAL: gl.constexpr, STATE: gl.constexpr):
        """Grid (batch, blocks of 32 channels): launch 2 of 3 of a split scan."""
        LS: gl.constexpr = gl.BlockedLayout([STATE, 1], [1, 32], [1, 1], [0, 1])
        b = gl.program_id(0).to(gl.int64)
        d_offs = gl.program_id(1) * 32 + gl.arange(0, 32, layout=gl.SliceLayout(0, LS))
        d_mask = d_offs < dim
        rows = b * dim + d_offs
        _carry_direction(seg_f, dtsum_f, A_f, rows, d_offs, d_mask, n_splits, False, STATE, LS)
        if BIDIRECTIONAL:
            _carry_direction(seg_b, dtsum_b, A_b, rows, d_offs, d_mask, n_splits, True, STATE, LS)


def _rows_of_length(t: Tensor) -> Tensor:
    """``t`` (batch, rows, length) with row stride == length and unit stride
    along length (a copy only when it is not already so)."""
    if t.stride(-1) == 1 and t.stride(-2) == t.shape[-1]:
        return t
    return t.contiguous()


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

    def prepare(direction: ScanInputs) -> ScanInputs:
        u, delta, A, B, C, D, bias = direction
        return (_rows_of_length(u), _rows_of_length(delta), A.float().contiguous(), _rows_of_length(B),
                _rows_of_length(C), D.float().contiguous(), bias.float().contiguous())

    f = prepare(forward)
    bidirectional = backward is not None
    b = prepare(backward) if bidirectional else f
    u = f[0]
    batch, dim, length = u.shape
    state = f[2].shape[1]
    if state & (state - 1) or state % config.states_per_thread or not 2 <= state <= 32:
        raise ValueError(f"gluon scan: state size {state} must be a power of two in [2, 32] divisible by "
                         f"states_per_thread={config.states_per_thread}")
    if batch * max(dim, state) * length >= 2**31:
        raise ValueError("gluon scan: batch x dim x length must stay below 2**31 (int32 offsets)")
    if checkpoint_positions is not None and checkpoint_positions % config.block_l:
        raise ValueError(f"gluon scan: checkpoint_positions={checkpoint_positions} is not a multiple of "
                         f"block_l={config.block_l}")
    zt = _rows_of_length(z) if z is not None else u
    out = torch.empty(batch, dim, length, device=u.device, dtype=u.dtype)
    f32 = dict(device=u.device, dtype=torch.float32)
    n_chunks = _cdiv(length, config.block_l)
    splits = config.choose_splits(batch, dim, length, state)
    chunks_per_split = _cdiv(n_chunks, splits)
    splits = _cdiv(n_chunks, chunks_per_split)  # every segment non-empty
    save_states = checkpoint_positions is not None
    ckpt_chunks = checkpoint_positions // config.block_l if save_states else 1
    n_slots = _cdiv(n_chunks, ckpt_chunks)
    if save_states:
        ckpt_f = torch.empty(batch, dim, n_slots, state, **f32)
        ckpt_b = torch.empty_like(ckpt_f) if bidirectional else ckpt_f
    else:
        ckpt_f = ckpt_b = out  # never written
    if splits > 1:
        seg_f = torch.empty(batch, dim, splits, state, **f32)
        seg_b = torch.empty_like(seg_f) if bidirectional else seg_f
        dtsum_f = torch.empty(batch, dim, splits, **f32)
        dtsum_b = torch.empty_like(dtsum_f) if bidirectional else dtsum_f
    else:
        seg_f = seg_b = dtsum_f = dtsum_b = out  # never read
    grid = (batch, _cdiv(dim, config.block_d(state)), splits)
    args = [*f, *b, zt, out, ckpt_f, ckpt_b, seg_f, seg_b, dtsum_f, dtsum_b,
            dim, length, chunks_per_split, splits, n_slots,
            f[0].stride(0), f[1].stride(0), f[3].stride(0), f[4].stride(0),
            b[0].stride(0), b[1].stride(0), b[3].stride(0), b[4].stride(0), zt.stride(0)]
    flags = dict(SPLIT=splits > 1, BIDIRECTIONAL=bidirectional, HAS_Z=z is not None, SOFTPLUS=delta_softplus,
                 SAVE_STATES=save_states, CKPT_CHUNKS=ckpt_chunks, STATE=state, BLOCK_L=config.block_l,
                 STATES_PER_THREAD=config.states_per_thread, num_warps=config.num_warps)
    if splits > 1:
        _gluon_scan_fwd_kernel[grid](*args, END_STATES=True, **flags)
        _gluon_scan_carry_kernel[(batch, _cdiv(dim, 32))](seg_f, dtsum_f, f[2], seg_b, dtsum_b, b[2], dim, splits,
                                                         BIDIRECTIONAL=bidirectional, STATE=state, num_warps=1)
    _gluon_scan_fwd_kernel[grid](*args, END_STATES=False, **flags)
    saved = (ckpt_f, ckpt_b if bidirectional else None) if save_states else None
    return out, saved
