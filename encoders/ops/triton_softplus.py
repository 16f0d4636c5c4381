"""softplus for Triton kernels: PyTorch's, log(1 + e^x) (x above 20: x), in float32.

Shared by the dt kernel (:mod:`encoders.ops.dt_projection`) and the Triton scan
(:mod:`encoders.ops.triton_scan`). The Gluon scan has its own copy in Gluon's
dialect (:func:`encoders.ops.gluon_scan._softplus`), written the same way.
"""

from __future__ import annotations

try:  # Triton ships with CUDA builds of PyTorch; CPU-only installs lack it.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None


if triton is not None:

    LN2: tl.constexpr = tl.constexpr(0.6931471805599453)

    @triton.jit
    def log2(x, FAST: tl.constexpr):
        """log2 on the special-function unit (``lg2.approx``: absolute error
        about 2**-22) if FAST, else Triton's (libdevice's polynomial, a dozen
        FMAs; the interpreter needs it)."""
        if FAST:
            return tl.inline_asm_elementwise("lg2.approx.ftz.f32 $0, $1;", "=f,f", [x], dtype=tl.float32,
                                             is_pure=True, pack=1)
        return tl.log2(x)

    @triton.jit
    def softplus(x, FAST_LOG: tl.constexpr):
        """softplus(x) to a relative error below 1e-5 everywhere
        (tests/test_dt_projection.py): where e^x < 1/32, four terms of log1p's
        series (below 2e-7 there) instead of log(1 + e^x), in which 1 + e^x
        would lose e^x's low bits (all of them below x = -17); elsewhere the
        log is at least 0.03, so the fast log2's absolute error stays below
        4e-6 of it."""
        e = tl.exp(tl.minimum(x, 20.0))
        series = e * (1.0 - e * (0.5 - e * (0.3333333333333333 - e * 0.25)))
        return tl.where(x > 20.0, x, tl.where(e < 0.03125, series, LN2 * log2(1.0 + e, FAST_LOG)))
