"""The mixer's out_proj from channel-major y (encoders.ops.channel_major_linear) against float64."""

from __future__ import annotations

import pytest
import torch

from encoders.ops.channel_major_linear import channel_major_linear, channel_major_linear_reference
from tests.triton_interpreter import run_in_triton_interpreter


def _float64(y, weight, bias):
    out = torch.einsum("bkt,nk->btn", y.double(), weight.double())
    return out if bias is None else out + bias.double()


def _relative_error(a, b) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def test_cpu_path_matches_float64_and_keeps_the_graph():
    y = torch.randn(2, 24, 9, requires_grad=True)
    weight = torch.randn(5, 24, requires_grad=True)
    bias = torch.randn(5)
    out = channel_major_linear(y, weight, bias)
    assert out.shape == (2, 9, 5)
    assert _relative_error(out, _float64(y, weight, bias)) <= 1e-6
    out.sum().backward()
    assert y.grad is not None and weight.grad is not None


def test_mismatched_weight_is_named():
    with pytest.raises(ValueError, match="does not fit weight"):
        channel_major_linear(torch.randn(1, 8, 3), torch.randn(4, 7))


KERNEL_CHECK = """
import json, torch
from encoders.ops.channel_major_linear import _launch
torch.manual_seed(0)
errors = {}
for name, (batch, k, length, stride, n), with_bias in [("odd sizes, bias", (2, 70, 131, 131, 45), True),
                                                        ("one token, no bias", (3, 64, 1, 1, 192), False),
                                                        ("rows padded to 16", (2, 70, 131, 144, 45), True),
                                                        ("rows padded to 16, 300 features", (1, 70, 131, 144, 300),
                                                         True)]:
    y = torch.randn(batch, 2 * k, stride)[:, k:, :length]  # a channel slice, as a strided view
    weight = torch.randn(n, k)
    bias = torch.randn(n) if with_bias else None
    expected = torch.einsum("bkt,nk->btn", y.double(), weight.double())
    if bias is not None:
        expected = expected + bias.double()
    errors[name] = ((_launch(y, weight, bias).double() - expected).norm() / expected.norm()).item()
print(json.dumps(errors))
"""


def test_kernel_matches_float64_in_the_interpreter():
    """The kernel's indexing (transposed tiles, masks at odd sizes, strided y;
    the three tiles ``for_problem`` picks) on the CPU through Triton's interpreter, float32."""
    results = run_in_triton_interpreter(KERNEL_CHECK)
    assert len(results) == 4
    for case, error in results.items():
        assert error <= 1e-6, (case, error)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(32, 384, 1569, 192), (4, 768, 12545, 384), (3, 200, 77, 96)])
@pytest.mark.parametrize("padded_rows", [False, True])
def test_kernel_on_gpu_matches_float64(shape, dtype, padded_rows):
    """Rows of y of stride length, and padded to 16 (as the mixer's inference leaves them)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    torch.manual_seed(1)
    batch, k, length, n = shape
    stride = -(-length // 16) * 16 if padded_rows else length
    y = torch.randn(batch, k, stride, device="cuda", dtype=dtype)[..., :length]
    weight = (k ** -0.5 * torch.randn(n, k, device="cuda")).to(dtype)
    bias = torch.randn(n, device="cuda", dtype=dtype)
    with torch.no_grad():
        out = channel_major_linear(y, weight, bias)
        cublas = channel_major_linear_reference(y, weight, bias)
    expected = _float64(y, weight, bias)
    assert out.dtype == dtype and out.shape == (batch, length, n)
    if dtype == torch.float32:
        assert _relative_error(out, expected) <= 1e-5
    else:
        assert _relative_error(out, expected) <= 1.5 * _relative_error(cublas, expected) + 1e-4
