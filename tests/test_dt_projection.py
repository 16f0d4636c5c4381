"""The mixer's dt = softplus(dt_proj(dt_low) + bias) (encoders.ops.dt_projection) against float64."""

from __future__ import annotations

import pytest
import torch

from encoders.ops.dt_projection import softplus_dt_projection_pair
from tests.triton_interpreter import run_in_triton_interpreter


def _float64(dt_low, weight, bias):
    return torch.nn.functional.softplus(torch.einsum("dr,brl->bdl", weight.double(), dt_low.double())
                                        + bias.double()[:, None])


def _relative_error(a, b) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def _direction(batch, rank, length, dim, dtype=torch.float32, device="cpu"):
    """dt_low as a view of the first ``rank`` rows of an x_proj-like output."""
    x_dbl = torch.randn(batch, rank + 32, length, device=device, dtype=dtype)
    return x_dbl[:, :rank], torch.randn(dim, rank, device=device, dtype=dtype), torch.randn(dim, device=device)


def test_cpu_path_matches_float64_and_keeps_the_graph():
    torch.manual_seed(0)
    forward, backward = _direction(2, 12, 9, 20), _direction(2, 12, 9, 20)
    forward[1].requires_grad_(True)
    dt_f, dt_b = softplus_dt_projection_pair(forward, backward)
    assert dt_f.shape == dt_b.shape == (2, 20, 9)
    assert _relative_error(dt_f, _float64(*forward)) <= 1e-6
    assert _relative_error(dt_b, _float64(*backward)) <= 1e-6
    dt_f.sum().backward()
    assert forward[1].grad is not None


def test_mismatched_inputs_are_named():
    low, weight, bias = _direction(1, 8, 5, 16)
    with pytest.raises(ValueError, match="do not fit"):
        softplus_dt_projection_pair((low, weight[:, :7], bias), (low, weight, bias))
    with pytest.raises(ValueError, match="directions"):
        softplus_dt_projection_pair((low, weight, bias), (low[:, :, :4], weight, bias))


KERNEL_CHECK = """
import json, torch
from encoders.ops.dt_projection import _launch
torch.manual_seed(0)
errors = {}
for name, (batch, rank, length, dim) in [("Ti rank, odd sizes", (2, 12, 131, 70)),
                                         ("S rank", (1, 24, 40, 130)),
                                         ("tiny rank, one position", (3, 5, 1, 16))]:
    dirs = []
    for _ in range(2):
        x_dbl = torch.randn(batch, rank + 32, length)
        dirs.append((x_dbl[:, :rank], torch.randn(dim, rank), torch.randn(dim) * 4))
    for label, (low, weight, bias), dt in zip(("forward", "backward"), dirs, _launch(*dirs)):
        exact = torch.nn.functional.softplus(torch.einsum("dr,brl->bdl", weight.double(), low.double())
                                             + bias.double()[:, None])
        errors[f"{name}, {label}"] = ((dt.double() - exact).norm() / exact.norm()).item()
# softplus alone, element by element, from -60 to 60 (weight 1, rank 1 padded to 16)
x = torch.linspace(-60, 60, 4001).view(1, 1, -1)
one = (x, torch.ones(16, 1), torch.zeros(16))
dt, _ = _launch(one, one)
exact = torch.nn.functional.softplus(x.double()).expand(1, 16, -1)
errors["softplus, worst element"] = ((dt.double() - exact).abs() / exact).max().item()
print(json.dumps(errors))
"""


def test_kernel_matches_float64_in_the_interpreter():
    """The kernel's indexing (padded rank, masks at odd sizes, strided dt_low, the
    direction select) and its softplus on the CPU through Triton's interpreter, float32."""
    results = run_in_triton_interpreter(KERNEL_CHECK)
    assert len(results) == 7
    for case, error in results.items():
        assert error <= (1e-5 if case.startswith("softplus") else 1e-6), (case, error)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(32, 12, 1584, 384), (4, 24, 12560, 768), (3, 12, 77, 200)])
def test_kernel_on_gpu_matches_float64(shape, dtype):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    torch.manual_seed(1)
    batch, rank, length, dim = shape
    forward = _direction(batch, rank, length, dim, dtype, "cuda")
    backward = _direction(batch, rank, length, dim, dtype, "cuda")
    with torch.no_grad():
        dts = softplus_dt_projection_pair(forward, backward)
    for direction, dt in zip((forward, backward), dts):
        expected = _float64(*direction)
        assert dt.dtype == dtype and dt.shape == (batch, dim, length) and dt.is_contiguous()
        if dtype == torch.float32:
            assert _relative_error(dt, expected) <= 1e-5
        else:  # one rounding to bf16, nothing more
            assert _relative_error(dt, expected) <= 1.1 * _relative_error(expected.to(dtype), expected) + 1e-5
