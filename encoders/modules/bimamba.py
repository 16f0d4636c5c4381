"""Bidirectional Mamba mixer (OpenGVLab's "bimamba v2") with a choice of backward order."""

from __future__ import annotations

import functools
import math
import weakref
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..ops.autograd import needs_autograd
from ..ops.causal_conv import causal_conv1d, causal_conv1d_pair
from ..ops.channel_major_linear import channel_major_linear
from ..ops.dt_projection import softplus_dt_projection_pair
from ..ops.selective_scan import resolve_scan_backend, selective_scan
from ..ops.triton_scan import bidirectional_selective_scan_triton

BACKWARD_ORDERS = ("full", "temporal", "spatial")
#: Inference pads sequences to a multiple of this many tokens (see BiMambaMixer.forward).
_ROW_ALIGNMENT = 16


def _aligned(length: int) -> int:
    return -(-length // _ROW_ALIGNMENT) * _ROW_ALIGNMENT


@dataclass(frozen=True)
class TokenLayout:
    """How a video token sequence is laid out: ``num_prefix`` tokens (cls) first,
    then ``num_frames`` frames of ``tokens_per_frame`` tokens each, frame-major."""

    num_frames: int
    tokens_per_frame: int
    num_prefix: int = 1

    @property
    def length(self) -> int:
        return self.num_prefix + self.num_frames * self.tokens_per_frame


@functools.lru_cache(maxsize=64)
def _backward_permutation(order: str, layout: TokenLayout, device: torch.device) -> tuple[Tensor, Tensor]:
    """(perm, inverse) index tensors: position j of the backward scan reads token perm[j].

    "temporal": frames last-to-first, tokens inside a frame in their usual order.
    "spatial": frames first-to-last, tokens inside each frame reversed.
    Prefix (cls) tokens go to the END of the backward sequence, exactly where
    a full reversal puts them, so the backward scan always finishes on cls.
    """
    t, n, p = layout.num_frames, layout.tokens_per_frame, layout.num_prefix
    grid = torch.arange(p, layout.length).view(t, n)
    if order == "temporal":
        body = grid.flip(0)
    elif order == "spatial":
        body = grid.flip(1)
    else:
        raise ValueError(f"no permutation needed for backward order {order!r}")
    prefix = torch.arange(p - 1, -1, -1)
    perm = torch.cat([body.reshape(-1), prefix]).to(device)
    return perm, torch.argsort(perm)


class BiMambaMixer(nn.Module):
    """Bidirectional selective-state-space mixer, (batch, length, d_model) -> same.

    Shared ``in_proj`` (to x and z) and ``out_proj``; each direction has its own
    causal depthwise conv, x/dt projections, A and D. The backward direction
    runs the same computation on the reordered sequence (``backward_order``)
    and its output is put back in place; the two directions are SUMMED (no
    averaging), as in OpenGVLab's VideoMamba. Parameter names match theirs.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        dt_scale: float = 1.0,
        conv_bias: bool = True,
        bias: bool = False,
        backward_order: str = "full",
        scan_backend: Optional[str] = None,
    ) -> None:
        super().__init__()
        if backward_order not in BACKWARD_ORDERS:
            raise ValueError(f"backward_order must be one of {BACKWARD_ORDERS}, got {backward_order!r}")
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.backward_order = backward_order
        self.scan_backend = scan_backend

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        # Forward-direction parameters, then the "_b" (backward) twins.
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, bias=conv_bias)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, d_state))
        self.D = nn.Parameter(torch.empty(self.d_inner))
        self.conv1d_b = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, bias=conv_bias)
        self.x_proj_b = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj_b = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_b_log = nn.Parameter(torch.empty(self.d_inner, d_state))
        self.D_b = nn.Parameter(torch.empty(self.d_inner))
        self._init_ssm(dt_min, dt_max, dt_init_floor, dt_scale)
        # id(A_log) -> (weak references to A_log, D, dt bias; their stamps; the
        # float32 values the scan takes): see _scan_parameters. Also
        # ("zero bias", device) -> zeros: see _zero_bias.
        self._parameter_cache: dict = {}

    @torch.no_grad()
    def _init_ssm(self, dt_min: float, dt_max: float, dt_init_floor: float, dt_scale: float) -> None:
        """Mamba's initialisation: S4D-real A (A_log = log 1..N), D = 1, dt_proj
        weights uniform in +-dt_rank^-0.5 * dt_scale and its bias the inverse
        softplus of dt ~ log-uniform[dt_min, dt_max]."""
        for dt_proj, A_log, D in ((self.dt_proj, self.A_log, self.D), (self.dt_proj_b, self.A_b_log, self.D_b)):
            std = self.dt_rank**-0.5 * dt_scale
            nn.init.uniform_(dt_proj.weight, -std, std)
            dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            dt = dt.clamp(min=dt_init_floor)
            dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
            dt_proj.bias._no_reinit = True
            A_log.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
            A_log._no_weight_decay = True
            D.fill_(1.0)
            D._no_weight_decay = True

    def padded_length(self, hidden: Tensor) -> int:
        """How many tokens this mixer runs ``hidden`` (batch, length, d_model)
        on: its length, rounded up to a multiple of _ROW_ALIGNMENT on the
        one-launch Triton path (see :meth:`forward`). A caller that makes the
        input anyway (the block's norm) can pad it there for free."""
        fused, _ = self._paths(hidden)
        return _aligned(hidden.shape[1]) if fused else hidden.shape[1]

    def forward(self, hidden: Tensor, layout: Optional[TokenLayout] = None, length: Optional[int] = None) -> Tensor:
        """hidden: (batch, length, d_model) -> (batch, length, d_model).
        ``layout`` is needed only for the "temporal" and "spatial" backward
        orders. ``length``: the real token count when ``hidden`` comes padded
        to :meth:`padded_length` with zero rows after it.

        Between the two projections everything stays in (batch, channels,
        length) layout with unit stride along length, which is what the scan
        kernels want, and every projection is one (batched) GEMM whose operands
        cuBLAS reads in place: no transposed copy is made anywhere.

        The one-launch path (inference and training) runs on the sequence
        padded to a multiple of _ROW_ALIGNMENT tokens, so that every (batch,
        channel) row starts 32-byte aligned: cuBLAS and Triton need that for
        vector loads, and video lengths (1 + 196 x frames) are odd (x_proj and
        dt_proj ran 1.9x slower on them, docs/benchmarks.md). The padding is
        inert: the convs read nothing past ``length`` and write zeros after it
        (so x_proj's B and C are 0 there), so the backward direction's state
        stays zero through it, the forward direction's outputs there are
        dropped, and every gradient at the padding is 0.
        """
        batch = hidden.shape[0]
        length = hidden.shape[1] if length is None else length
        fused, inference = self._paths(hidden)
        padded = _aligned(length) if fused else length
        if hidden.shape[1] != padded:
            hidden = F.pad(hidden[:, :length], (0, 0, 0, padded - length))
        # in_proj as W @ hidden^T over all (batch, length) columns: the result
        # (2*d_inner, batch*length) viewed as (batch, 2*d_inner, length).
        xz = torch.mm(self.in_proj.weight, hidden.reshape(batch * padded, -1).t())
        xz = xz.view(-1, batch, padded).transpose(0, 1)
        if self.in_proj.bias is not None:
            xz = xz + self.in_proj.bias[:, None]
        if fused:
            y = self._fused_scan(xz, length, inference)[..., :length]
        else:
            y = self._flipped_scan(xz, layout)
        # out_proj from y (b, d_inner, l) to (b, l, d_model), y read in place.
        return channel_major_linear(y, self.out_proj.weight, self.out_proj.bias)

    def _flipped_scan(self, xz: Tensor, layout: Optional[TokenLayout]) -> Tensor:
        """Both directions, the backward one on a reordered copy of ``xz`` whose
        output is put back in place. (b, 2*d_inner, l) -> (b, d_inner, l)."""
        length = xz.shape[-1]
        if self.backward_order == "full":
            xz_b = xz.flip(-1)
            inverse = None
        else:
            if layout is None or layout.length != length:
                raise ValueError(
                    f"backward_order={self.backward_order!r} needs the token layout "
                    f"(got {layout} for length {length})"
                )
            perm, inverse = _backward_permutation(self.backward_order, layout, xz.device)
            xz_b = xz.index_select(-1, perm)
        y = self._scan(xz, self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)
        y_b = self._scan(xz_b, self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b)
        return y + (y_b.flip(-1) if inverse is None else y_b.index_select(-1, inverse))

    def _paths(self, hidden: Tensor) -> tuple[bool, bool]:
        """(the one-launch Triton path, inference on it: padded rows, see forward)."""
        fused = self.backward_order == "full" and self._fused_bidirectional(hidden)
        return fused, fused and not self._needs_grad(hidden)

    def _needs_grad(self, hidden: Tensor) -> bool:
        return needs_autograd(hidden, self.A_log)

    def _fused_bidirectional(self, hidden: Tensor) -> bool:
        """Use the one-launch Triton path: CUDA tensors and the backend resolves to "triton"."""
        problem = (hidden.shape[0], self.d_inner)
        return hidden.is_cuda and resolve_scan_backend(self.scan_backend, hidden.device, problem,
                                                       needs_grad=self._needs_grad(hidden)) == "triton"

    def _project(self, x: Tensor, x_proj: nn.Linear, dt_proj: nn.Linear, A_log: Tensor, D: Tensor):
        """Scan inputs (u, delta, A, B, C, D, delta_bias) of one direction from its
        conv output x (b, d_inner, l): batched GEMMs with broadcast weights, no
        transposed copies. dt_proj's bias goes to the scan (applied before the
        softplus there), as mamba does."""
        batch = x.shape[0]
        dt, B, C = self._x_projection(x, x_proj)
        delta = torch.bmm(dt_proj.weight.expand(batch, -1, -1), dt)
        A, D, delta_bias = self._scan_parameters(A_log, D, dt_proj.bias)
        return x, delta, A, B, C, D, delta_bias

    def _scan_parameters(self, A_log: Tensor, D: Tensor, delta_bias: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(A, D, delta_bias) as the scan takes them: float32, A = -exp(A_log).
        Without autograd they are kept between calls, per parameter and its
        version (an in-place update or a new tensor makes them anew): in
        inference they were five small kernel launches a direction and layer
        (about 4 % of VideoMamba-Ti's GPU time at 8 frames, and more of the host's)."""
        params = (A_log, D, delta_bias)
        if needs_autograd(*params):
            return -torch.exp(A_log.float()), D.float(), delta_bias.float()
        # What identifies a parameter's current values: the object, its version
        # (in-place updates), and its storage (.to() and .cuda() swap .data).
        stamps = tuple((p._version, p.data_ptr(), p.dtype, p.device) for p in params)
        cached = self._parameter_cache.get(id(A_log))
        if cached is not None and cached[1] == stamps and all(ref() is p for ref, p in zip(cached[0], params)):
            return cached[2]
        values = (-torch.exp(A_log.float()), D.float(), delta_bias.float())
        self._parameter_cache[id(A_log)] = (tuple(weakref.ref(p) for p in params), stamps, values)
        return values

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_parameter_cache": {}}  # weak references do not pickle; the cache refills

    def _fused_scan(self, xz: Tensor, valid_length: int, inference: bool) -> Tensor:
        """Both directions without flips: the backward direction's conv is
        anti-causal on the unflipped sequence, its projections are pointwise in
        time, and the Triton kernel scans it from the last position to the first.
        ``valid_length``: the real length; ``xz`` may be padded after it (see
        forward). Both convs run in one Triton pass over x (with autograd in
        training); in ``inference`` both dt projections also run in one kernel
        with their softplus."""
        x, z = xz.chunk(2, dim=1)
        u_f, u_b = causal_conv1d_pair(x, (self.conv1d.weight, self.conv1d.bias),
                                      (self.conv1d_b.weight, self.conv1d_b.bias), silu=True,
                                      valid_length=valid_length)
        if not inference:
            forward = self._project(u_f, self.x_proj, self.dt_proj, self.A_log, self.D)
            backward = self._project(u_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b)
            return bidirectional_selective_scan_triton(forward, backward, z)
        # dt = softplus(dt_proj(.) + bias) of both directions in one kernel, so
        # the scan skips its per-element softplus (delta_softplus=False, zero bias).
        low_f, B_f, C_f = self._x_projection(u_f, self.x_proj)
        low_b, B_b, C_b = self._x_projection(u_b, self.x_proj_b)
        dt_f, dt_b = softplus_dt_projection_pair((low_f, self.dt_proj.weight, self.dt_proj.bias),
                                                 (low_b, self.dt_proj_b.weight, self.dt_proj_b.bias))
        A_f, D_f, _ = self._scan_parameters(self.A_log, self.D, self.dt_proj.bias)
        A_b, D_b, _ = self._scan_parameters(self.A_b_log, self.D_b, self.dt_proj_b.bias)
        zero = self._zero_bias(u_f.device)
        return bidirectional_selective_scan_triton((u_f, dt_f, A_f, B_f, C_f, D_f, zero),
                                                   (u_b, dt_b, A_b, B_b, C_b, D_b, zero), z, delta_softplus=False)

    def _x_projection(self, x: Tensor, x_proj: nn.Linear) -> tuple[Tensor, Tensor, Tensor]:
        """x (b, d_inner, l) -> views (dt_low, B, C) of x_proj's output, one
        batched GEMM with the weight broadcast (no transposed copy)."""
        x_dbl = torch.bmm(x_proj.weight.expand(x.shape[0], -1, -1), x)
        return torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)

    def _zero_bias(self, device: torch.device) -> Tensor:
        """float32 zeros (d_inner,), kept per device: the scan's delta bias when dt arrives with its bias added."""
        key = ("zero bias", device)
        if key not in self._parameter_cache:
            self._parameter_cache[key] = torch.zeros(self.d_inner, device=device)
        return self._parameter_cache[key]

    def _scan(
        self, xz: Tensor, conv: nn.Conv1d, x_proj: nn.Linear, dt_proj: nn.Linear, A_log: Tensor, D: Tensor
    ) -> Tensor:
        """One direction: conv + SiLU, input-dependent (dt, B, C), gated scan.
        xz: (b, 2*d_inner, l) -> (b, d_inner, l)."""
        x, z = xz.chunk(2, dim=1)  # views with unit stride along l
        x = causal_conv1d(x, conv.weight, conv.bias, silu=True)  # (b, d_inner, l), contiguous
        u, delta, A, B, C, D, delta_bias = self._project(x, x_proj, dt_proj, A_log, D)
        return selective_scan(u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=True,
                              backend=self.scan_backend)
