"""Random selective-scan inputs and the float64 comparison shared by the scan tests."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from encoders.ops import selective_scan_torch

INPUT_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
DIRECTION_NAMES = ("u", "delta", "A", "B", "C", "D", "delta_bias")  # order of a ScanInputs tuple


def random_scan_inputs(batch: int, dim: int, length: int, state: int, seed: int,
                       dtype: torch.dtype = torch.float32, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Fresh random inputs in the ranges a trained Mamba layer sees."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift).to(device=device, dtype=dtype)

    return dict(
        u=rand(batch, dim, length),
        delta=rand(batch, dim, length, scale=0.5, shift=-1.0),
        A=-torch.exp(rand(dim, state, scale=0.5)).to(dtype),
        B=rand(batch, state, length),
        C=rand(batch, state, length),
        D=rand(dim),
        z=rand(batch, dim, length),
        delta_bias=rand(dim, scale=0.5),
    )


def relative_error(actual: torch.Tensor, expected: torch.Tensor, floor: float = 1e-6) -> float:
    """max |actual - expected| / max |expected|; the denominator is floored so
    that an exactly-zero expectation (e.g. dA at length 1) tolerates round-off
    noise instead of dividing by zero."""
    scale = expected.double().abs().max().clamp_min(floor)
    return ((actual.double() - expected.double()).abs().max() / scale).item()


def reference_bidirectional(fwd: dict, bwd: Optional[dict], z: Optional[torch.Tensor], softplus: bool) -> torch.Tensor:
    """The unfused composition: scan(fwd) [+ flip(scan(flip(bwd)))], gated by silu(z)."""
    y = selective_scan_torch(fwd["u"], fwd["delta"], fwd["A"], fwd["B"], fwd["C"], fwd["D"], None,
                             fwd["delta_bias"], softplus)
    if bwd is not None:
        flip = lambda t: t.flip(-1)  # noqa: E731
        y = y + selective_scan_torch(flip(bwd["u"]), flip(bwd["delta"]), bwd["A"], flip(bwd["B"]), flip(bwd["C"]),
                                     bwd["D"], None, bwd["delta_bias"], softplus).flip(-1)
    return y if z is None else y * F.silu(z)


def triton_errors(batch: int, dim: int, length: int, config=None, bidirectional: bool = True, gate: bool = True,
                  softplus: bool = True, dtype: torch.dtype = torch.float32, device: str = "cuda",
                  seed: int = 0, delta_shift: float = 0.0, d_skip: bool = True) -> dict[str, float]:
    """Relative errors of the Triton scan's output and of every input gradient
    against the float64 PyTorch scan, on fresh random inputs and a random cotangent.
    ``delta_shift`` is added to delta; without ``d_skip`` D is 0 (so that the
    scan's part of y is not hidden under D * u)."""
    from encoders.ops.triton_scan import DEFAULT_CONFIG, bidirectional_selective_scan_triton

    fwd = random_scan_inputs(batch, dim, length, 16, seed=seed, dtype=dtype, device=device)
    bwd = random_scan_inputs(batch, dim, length, 16, seed=seed + 1, dtype=dtype, device=device)
    for inputs in (fwd, bwd):
        inputs["A"] = inputs["A"].float()  # scan parameters are float32, as in the mixer
        if not softplus:
            inputs["delta"] = inputs["delta"].float().exp().to(dtype)
        inputs["delta"] = inputs["delta"] + delta_shift
        if not d_skip:
            inputs["D"] = torch.zeros_like(inputs["D"])
    z = fwd["z"] if gate else None
    directions = {"f": fwd, "b": bwd} if bidirectional else {"f": fwd}
    leaves = {(d, k): inputs[k].detach().clone().requires_grad_(True)
              for d, inputs in directions.items() for k in DIRECTION_NAMES}
    if gate:
        leaves[("", "z")] = z.detach().clone().requires_grad_(True)
    y = bidirectional_selective_scan_triton(
        tuple(leaves[("f", k)] for k in DIRECTION_NAMES),
        tuple(leaves[("b", k)] for k in DIRECTION_NAMES) if bidirectional else None,
        leaves.get(("", "z")), softplus, config or DEFAULT_CONFIG)
    cotangent = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 2), dtype=torch.float64)
    (y * cotangent.to(device=device, dtype=y.dtype)).sum().backward()

    exact = {key: leaf.detach().double().requires_grad_(True) for key, leaf in leaves.items()}
    expected = reference_bidirectional(
        {k: exact[("f", k)] for k in DIRECTION_NAMES},
        {k: exact[("b", k)] for k in DIRECTION_NAMES} if bidirectional else None,
        exact.get(("", "z")), softplus)
    (expected * cotangent.to(device)).sum().backward()
    errors = {"y": relative_error(y, expected)}
    assert y.dtype == dtype, y.dtype
    for key, leaf in leaves.items():
        # Gradients that are exactly 0 (dA at length 1) carry ~1e-8 of round-off: floor the scale.
        errors[".".join(filter(None, key))] = relative_error(leaf.grad, exact[key].grad, floor=1e-3)
    return errors


def gluon_forward_errors(batch: int, dim: int, length: int, config=None, bidirectional: bool = True,
                         gate: bool = True, softplus: bool = True, dtype: torch.dtype = torch.float32,
                         seed: int = 0) -> float:
    """Relative error of the Gluon forward scan's output against the float64
    PyTorch scan, on fresh random inputs (CUDA)."""
    from encoders.ops.gluon_scan import DEFAULT_GLUON_CONFIG, gluon_scan_forward

    fwd = random_scan_inputs(batch, dim, length, 16, seed=seed, dtype=dtype, device="cuda")
    bwd = random_scan_inputs(batch, dim, length, 16, seed=seed + 1, dtype=dtype, device="cuda")
    for inputs in (fwd, bwd):
        inputs["A"] = inputs["A"].float()
        if not softplus:  # dt = delta + bias must stay positive, or long sequences overflow float64
            inputs["delta"] = inputs["delta"].float().exp().to(dtype)
            inputs["delta_bias"] = inputs["delta_bias"].abs()
    z = fwd["z"] if gate else None
    y, _ = gluon_scan_forward(tuple(fwd[k] for k in DIRECTION_NAMES),
                              tuple(bwd[k] for k in DIRECTION_NAMES) if bidirectional else None,
                              z, softplus, config or DEFAULT_GLUON_CONFIG)
    assert y.dtype == dtype, y.dtype
    exact = lambda inputs: {k: v.double() for k, v in inputs.items()}  # noqa: E731
    expected = reference_bidirectional(exact(fwd), exact(bwd) if bidirectional else None,
                                       z.double() if gate else None, softplus)
    return relative_error(y, expected)
