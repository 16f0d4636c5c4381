"""The fused residual add + RMSNorm (encoders.ops.rms_norm) against float64."""

from __future__ import annotations

import pytest
import torch

from encoders.ops.rms_norm import add_rms_norm, add_rms_norm_reference, rms_norm
from tests.triton_interpreter import run_in_triton_interpreter


def _float64_add_rms_norm(hidden, residual, weight, eps):
    stream = hidden.double() if residual is None else residual.double() + hidden.double()
    normed = stream / torch.sqrt(stream.pow(2).mean(-1, keepdim=True) + eps) * weight.double()
    return normed, stream


def _relative_error(a, b) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("with_residual", [True, False])
def test_add_rms_norm_on_cpu_matches_float64(with_residual):
    torch.manual_seed(0)
    hidden = torch.randn(3, 17, 40, dtype=torch.bfloat16)
    residual = torch.randn(3, 17, 40) if with_residual else None
    weight = (1 + 0.1 * torch.randn(40)).to(torch.bfloat16)
    normed, stream = add_rms_norm(hidden, residual, weight, 1e-5)
    expected_normed, expected_stream = _float64_add_rms_norm(hidden, residual, weight, 1e-5)
    assert normed.dtype == torch.bfloat16 and stream.dtype == torch.float32
    assert _relative_error(stream, expected_stream) <= 1e-7
    assert _relative_error(normed, expected_normed) <= 1e-2  # bf16 output
    padded, _ = add_rms_norm(hidden, residual, weight, 1e-5, padded_length=20)
    assert padded.shape == (3, 20, 40) and torch.equal(padded[:, :17], normed) and not padded[:, 17:].any()


def test_add_rms_norm_keeps_the_graph_for_autograd():
    hidden = torch.randn(2, 5, 8, requires_grad=True)
    weight = torch.ones(8, requires_grad=True)
    normed, stream = add_rms_norm(hidden, torch.randn(2, 5, 8), weight, 1e-5)
    (normed.square().sum() + stream.sum()).backward()
    assert hidden.grad is not None and weight.grad is not None


KERNEL_CHECK = """
import json, torch
from encoders.ops.rms_norm import _launch, add_rms_norm_reference
torch.manual_seed(0)
errors = {}
for name, rows, width, with_residual, store in [("odd rows and width", 21, 37, True, True),
                                                 ("no residual", 16, 64, False, True),
                                                 ("norm only", 5, 192, False, False)]:
    hidden = torch.randn(rows, width, dtype=torch.bfloat16)
    residual = torch.randn(rows, width) if with_residual else None
    weight = 1 + 0.1 * torch.randn(width)
    normed, stream = _launch(hidden, residual, weight, 1e-5, store_residual=store)
    stream64 = hidden.double() + (residual.double() if with_residual else 0)
    expected = stream64 / torch.sqrt(stream64.pow(2).mean(-1, keepdim=True) + 1e-5) * weight.double()
    errors[name] = {"normed": ((normed.double() - expected).norm() / expected.norm()).item()}
    if store:
        errors[name]["residual"] = ((stream.double() - stream64).norm() / stream64.norm()).item()
# Sequences of 5 rows, normed into sequences of 8 (rows 5-7 zero), as the mixer's padded inference wants.
hidden = torch.randn(3, 5, 24, dtype=torch.bfloat16)
residual = torch.randn(3, 5, 24)
weight = 1 + 0.1 * torch.randn(24)
normed, stream = _launch(hidden, residual, weight, 1e-5, store_residual=True, padded_length=8)
stream64 = hidden.double() + residual.double()
expected = stream64 / torch.sqrt(stream64.pow(2).mean(-1, keepdim=True) + 1e-5) * weight.double()
errors["padded to 8"] = {"normed": ((normed[:, :5].double() - expected).norm() / expected.norm()).item(),
                         "padding": normed[:, 5:].abs().max().item(), "shape": float(normed.shape != (3, 8, 24)),
                         "residual": ((stream.double() - stream64).norm() / stream64.norm()).item()}
print(json.dumps(errors))
"""


def test_kernel_matches_float64_in_the_interpreter():
    """The Triton kernel's arithmetic on the CPU through Triton's interpreter
    (odd widths and row counts exercise the masks); the GPU test checks the
    compiled code."""
    results = run_in_triton_interpreter(KERNEL_CHECK)
    assert len(results) == 4
    for case, errors in results.items():
        assert max(errors.values()) <= 1e-6, (case, errors)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.bfloat16, 4e-3)])
@pytest.mark.parametrize("with_residual", [True, False])
def test_fused_kernel_on_gpu_matches_float64(dtype, tol, with_residual):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    torch.manual_seed(1)
    hidden = torch.randn(4, 1569, 192, device="cuda", dtype=dtype)
    residual = torch.randn(4, 1569, 192, device="cuda") if with_residual else None
    weight = (1 + 0.1 * torch.randn(192, device="cuda")).to(dtype)
    with torch.no_grad():
        normed, stream = add_rms_norm(hidden, residual, weight, 1e-5)
        alone = rms_norm(stream, weight, 1e-5)
        reference, reference_stream = add_rms_norm_reference(hidden, residual, weight, 1e-5)
    expected, expected_stream = _float64_add_rms_norm(hidden, residual, weight, 1e-5)
    assert normed.dtype == dtype and stream.dtype == torch.float32
    with torch.no_grad():
        padded, _ = add_rms_norm(hidden, residual, weight, 1e-5, padded_length=1584)
    assert padded.shape == (4, 1584, 192) and torch.equal(padded[:, :1569], normed) and not padded[:, 1569:].any()
    assert torch.equal(stream, reference_stream)
    assert _relative_error(normed, expected) <= tol
    assert _relative_error(alone, expected) <= tol
    # No worse than the PyTorch ops it replaces.
    assert _relative_error(normed, expected) <= 2 * _relative_error(reference, expected) + 1e-7
