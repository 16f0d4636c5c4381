"""Selective scan (the S6 recurrence of Mamba) with interchangeable backends.

Contract (identical to mamba-ssm's ``selective_scan_fn``)::

    u, delta, z : (batch, dim, length)
    A           : (dim, state)            real, normally negative
    B, C        : (batch, state, length)  input-dependent
    D           : (dim,) or None          skip connection
    delta_bias  : (dim,) or None

    delta <- softplus(delta + delta_bias)          (if delta_softplus)
    h_t    = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t     (per dim, state)
    y_t    = sum_state(C_t * h_t) + D * u_t
    y      = y * silu(z)                                           (if z is given)

returns y: (batch, dim, length) in u's dtype (and the final state
(batch, dim, state) in float32 if ``return_last_state``).

Backends:
  * ``"triton"``: this project's fused Triton kernels, forward and backward
    (CUDA tensors; see :mod:`encoders.ops.triton_scan`).
  * ``"cuda"``:  mamba-ssm's fused CUDA kernel (optional dependency, CUDA tensors).
  * ``"torch"``: pure PyTorch, any device, autograd; a two-level chunked scan
    (see :func:`selective_scan_torch`).
  * ``"auto"``:  the fastest available for the tensors at hand: on CUDA
    "triton" where it was measured faster than mamba-ssm (enough batch x
    width, docs/benchmarks.md) and whenever mamba-ssm is absent, else "cuda";
    "torch" off CUDA.

The backend is chosen by the ``backend`` argument, else the environment variable
``MAMBASEARCH_SCAN_BACKEND``, else ``"auto"``.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .autograd import needs_autograd
from .triton_scan import bidirectional_selective_scan_triton, triton_available, triton_scan_preferred

logger = logging.getLogger(__name__)

SCAN_BACKEND_ENV = "MAMBASEARCH_SCAN_BACKEND"
SCAN_BACKENDS = ("auto", "triton", "cuda", "torch")


class ScanBackendUnavailable(RuntimeError):
    """The requested scan backend cannot run here (missing package or wrong device)."""


@functools.lru_cache(maxsize=1)
def _mamba_ssm_scan_fn() -> Optional[Callable]:
    """mamba-ssm's ``selective_scan_fn`` or None if it does not import.

    mamba-ssm imports its compiled extension unguarded, so on a machine without
    CUDA (or with a mismatched build) the import raises; we treat any failure as
    "not available" and remember why.
    """
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as err:  # ImportError, OSError from a bad .so, RuntimeError ...
        logger.debug("mamba-ssm selective scan unavailable: %s", err)
        return None
    return selective_scan_fn


def cuda_scan_available() -> bool:
    """True when mamba-ssm's CUDA kernel imports and a CUDA device is present."""
    return torch.cuda.is_available() and _mamba_ssm_scan_fn() is not None


_logged_choices: set[tuple[str, str, str]] = set()


def resolve_scan_backend(backend: Optional[str], device: torch.device,
                         problem: Optional[tuple[int, int]] = None, needs_grad: bool = True) -> str:
    """Turn a requested backend (one of ``SCAN_BACKENDS`` or None) into a concrete one.

    Order of precedence: explicit argument (if not None/"auto"), then the
    ``MAMBASEARCH_SCAN_BACKEND`` environment variable, then automatic choice.
    Raises :class:`ScanBackendUnavailable` if an explicitly requested backend
    cannot run here (wrong device or missing package). ``problem`` =
    (batch, dim) and ``needs_grad`` (a backward may follow) let "auto" pick
    this project's kernels only where they were measured to beat mamba-ssm
    (:func:`triton_scan_preferred`); without it, or
    without mamba-ssm, "auto" on CUDA is Triton. With the Gluon forward ours
    is taken at every shape: inference was measured 2.7-3.4x faster end to end,
    training steps 1.20-1.28x at VideoMamba-Ti and 2.0-2.2x at -S, with a third
    less peak memory (8 and 32 frames; the "triton" path also runs the convs
    in Triton and pads rows). Without Gluon, only where the Triton kernels have
    enough parallel work.
    """
    requested = backend if backend not in (None, "auto") else os.environ.get(SCAN_BACKEND_ENV, "auto")
    requested = requested.strip().lower()
    if requested not in SCAN_BACKENDS:
        raise ValueError(
            f"unknown selective-scan backend {requested!r} (from "
            f"{'argument' if backend not in (None, 'auto') else SCAN_BACKEND_ENV}); "
            f"choose one of {', '.join(SCAN_BACKENDS)}"
        )
    if requested == "auto":
        # Measured on an H100 (docs/benchmarks.md): with the Gluon forward our
        # kernels win everywhere; the Triton-only kernels with enough parallel
        # work (large batch x width), mamba-ssm with little (long clips at
        # small batch). Triton needs no CUDA build, so it is the CUDA fallback
        # when mamba-ssm is not installed.
        triton_ok = device.type == "cuda" and triton_available()
        mamba_ok = device.type == "cuda" and cuda_scan_available()
        if triton_ok and (not mamba_ok or problem is None or triton_scan_preferred(*problem, needs_grad=needs_grad)):
            chosen = "triton"
        elif mamba_ok:
            chosen = "cuda"
        else:
            chosen = "torch"
    else:
        chosen = requested
    if chosen in ("cuda", "triton") and device.type != "cuda":
        raise ScanBackendUnavailable(f"selective-scan backend {chosen!r} needs CUDA tensors, got tensors on {device}")
    if chosen == "cuda" and _mamba_ssm_scan_fn() is None:
        raise ScanBackendUnavailable(
            "selective-scan backend 'cuda' needs mamba-ssm (pip install 'mambasearch[gpu]'); it failed to import"
        )
    if chosen == "triton" and not triton_available():
        raise ScanBackendUnavailable("selective-scan backend 'triton' needs Triton (a CUDA build of PyTorch)")
    key = (requested, device.type, chosen)
    if key not in _logged_choices:
        _logged_choices.add(key)
        logger.info("selective scan: backend %r on %s (requested %r)", chosen, device.type, requested)
    return chosen


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    z: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: Optional[str] = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan with mamba-ssm's contract (see the module docstring)."""
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    needs_grad = needs_autograd(u, delta, A, B, C, D, z, delta_bias)
    chosen = resolve_scan_backend(backend, u.device, problem=(u.shape[0], u.shape[1]), needs_grad=needs_grad)
    if chosen == "triton" and return_last_state:
        if backend == "triton":
            raise ScanBackendUnavailable("selective-scan backend 'triton' does not return the last state")
        chosen = "cuda" if cuda_scan_available() else "torch"
    if chosen == "triton":
        dim = u.shape[1]
        zeros = u.new_zeros(dim, dtype=torch.float32)
        inputs = (u, delta, A, B, C, zeros if D is None else D, zeros if delta_bias is None else delta_bias)
        return bidirectional_selective_scan_triton(inputs, None, z, delta_softplus=delta_softplus)
    if chosen == "cuda":
        fn = _mamba_ssm_scan_fn()
        # mamba-ssm wants float32 "weights" (A, D, delta_bias) whatever the input dtype.
        return fn(u, delta, A.float(), B, C, None if D is None else D.float(), z,
                  None if delta_bias is None else delta_bias.float(), delta_softplus, return_last_state)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


def _check_shapes(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor],
    z: Optional[Tensor],
    delta_bias: Optional[Tensor],
) -> None:
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, dim, length), got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan: delta shape {tuple(delta.shape)} != u shape {tuple(u.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z shape {tuple(z.shape)} != u shape {tuple(u.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan: A must be (dim={dim}, state), got {tuple(A.shape)}")
    if A.is_complex():
        raise ValueError("selective_scan: complex A is not supported (VideoMamba uses real A)")
    state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.shape != (batch, state, length):
            raise ValueError(
                f"selective_scan: {name} must be (batch={batch}, state={state}, length={length}), "
                f"got {tuple(t.shape)}"
            )
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (dim,):
            raise ValueError(f"selective_scan: {name} must be (dim={dim},), got {tuple(t.shape)}")


def _default_chunk_size(length: int) -> int:
    # Python-level steps: `chunk` in pass 1, `length / chunk` in pass 2 and
    # `chunk` in pass 3; sqrt(length) keeps them near 3*sqrt(length) (120 for 1569).
    return max(1, int(math.ceil(math.sqrt(length))))


def _next_state(decay: Tensor, dtu_k: Tensor, B_k: Tensor, h: Tensor) -> Tensor:
    """The state after one position of every chunk: decay * h + dt u B, one fused multiply-add.

    decay, h: (batch, dim, chunks, state); dtu_k: (batch, dim, chunks); B_k:
    (batch, chunks, state).
    """
    return torch.addcmul(dtu_k[..., None] * B_k[:, None], decay, h)


def selective_scan_torch(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    z: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    chunk_size: Optional[int] = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Pure-PyTorch selective scan: exact, differentiable, any device.

    Chunked scan in three passes. The sequence is cut into ``n_chunks`` chunks
    of ``chunk`` steps. (1) Inside every chunk, all chunks at once, ``chunk``
    sequential steps give the chunk's end state from a zero start. (2)
    ``n_chunks`` sequential steps carry the state across chunk boundaries,
    with each chunk's total decay exp(A * sum of its dt). (3) Every chunk is
    re-run from its true initial state, all chunks at once, reading out y as it
    goes. This is the plain recurrence regrouped (no division by decays, so
    nothing overflows); it takes ~3*sqrt(length) Python-level steps instead of
    ``length``. Chunk inputs are laid out step-major, so each step reads
    contiguous slices, and a step is one fused multiply-add of the state
    (measured 1.5-1.8x the strided layout on a CPU, docs/benchmarks.md). All
    arithmetic is float32 (or float64 if the inputs are float64); the output
    has u's dtype.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    out_dtype = u.dtype
    compute_dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    batch, dim, length = u.shape
    state = A.shape[1]

    u_c = u.to(compute_dtype)
    dt = delta.to(compute_dtype)
    if delta_bias is not None:
        dt = dt + delta_bias.to(compute_dtype)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    A_b = A.to(compute_dtype)[:, None, :]  # (dim, 1, state): broadcasts over chunks

    chunk = chunk_size or _default_chunk_size(length)
    n_chunks = -(-length // chunk)
    pad = n_chunks * chunk - length

    def step_major(x: Tensor) -> Tensor:
        # (batch, channels, length) -> (chunk step, batch, channels, n_chunks), contiguous.
        # Padded steps have dt 0: decay exp(0) = 1 and input 0, so they leave the state unchanged.
        padded = F.pad(x, (0, pad)).view(x.shape[0], x.shape[1], n_chunks, chunk)
        return padded.permute(3, 0, 1, 2).contiguous()

    dt_steps = step_major(dt)  # (k, b, d, c)
    dtu_steps = step_major(dt * u_c)
    B_steps = step_major(B.to(compute_dtype)).transpose(2, 3)  # (k, b, c, n)
    C_steps = step_major(C.to(compute_dtype)).transpose(2, 3)

    # Pass 1, all chunks in parallel: chunk-local end state (started from zero).
    # Decays are kept for pass 3.
    decays = []
    local = dt_steps.new_zeros(batch, dim, n_chunks, state)
    for k in range(chunk):
        a_k = torch.exp(dt_steps[k][..., None] * A_b)  # (b, d, c, n)
        local = _next_state(a_k, dtu_steps[k], B_steps[k], local)
        decays.append(a_k)
    chunk_decay = torch.exp(dt_steps.sum(0)[..., None] * A_b)  # (b, d, c, n): one exponential

    # Pass 2, sequential over chunks: the state entering each chunk.
    carried = [local.new_zeros(batch, dim, state)]
    for c in range(1, n_chunks):
        carried.append(torch.addcmul(local[:, :, c - 1], chunk_decay[:, :, c - 1], carried[-1]))
    last_state = torch.addcmul(local[:, :, -1], chunk_decay[:, :, -1], carried[-1])

    # Pass 3, all chunks in parallel again: re-run each chunk from its true
    # initial state and read out y. Nothing of size (length x state) is kept
    # beyond the decays.
    h = torch.stack(carried, dim=2)  # (b, d, c, n)
    outputs = []
    for k in range(chunk):
        h = _next_state(decays[k], dtu_steps[k], B_steps[k], h)
        outputs.append((h * C_steps[k][:, None]).sum(-1))  # sum over state of C h: (b, d, c)
    # Stacked step-major, then one transposing copy: 4x faster than stacking along the last dim.
    y = torch.stack(outputs).permute(1, 2, 3, 0).reshape(batch, dim, n_chunks * chunk)[:, :, :length]
    if D is not None:
        y = y + D.to(compute_dtype)[:, None] * u_c
    if z is not None:
        y = y * F.silu(z.to(compute_dtype))
    y = y.to(out_dtype)
    if return_last_state:
        return y, last_state
    return y


def selective_scan_reference(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    z: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Step-by-step recurrence, one Python step per position: the ground truth
    the fast backends are tested against (slow; use float64 inputs for tests)."""
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    dt = delta + delta_bias[:, None] if delta_bias is not None else delta
    if delta_softplus:
        dt = F.softplus(dt)
    batch, dim, length = u.shape
    h = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(length):
        h = torch.exp(dt[:, :, t, None] * A) * h + (dt[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D[:, None] * u
    if z is not None:
        y = y * F.silu(z)
    return (y, h) if return_last_state else y
