"""The selective-scan backends against a float64 step-by-step recurrence."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from encoders.ops import (
    SCAN_BACKEND_ENV,
    ScanBackendUnavailable,
    resolve_scan_backend,
    selective_scan,
    selective_scan_reference,
    selective_scan_torch,
)
from encoders.ops.selective_scan import cuda_scan_available
from scan_cases import (
    DIRECTION_NAMES,
    INPUT_NAMES,
    gluon_forward_errors,
    random_scan_inputs,
    relative_error,
    triton_errors,
)


def run_with_grads(fn, inputs: dict[str, torch.Tensor], cotangent: torch.Tensor, **kwargs):
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}
    y, last = fn(**leaves, delta_softplus=True, return_last_state=True, **kwargs)
    (y * cotangent.to(y.dtype)).sum().backward()
    return y, last, {k: leaves[k].grad for k in INPUT_NAMES}


@pytest.mark.parametrize(
    "batch,dim,length,state,chunk",
    [
        (2, 7, 37, 5, None),   # odd length, dim not a multiple of anything
        (1, 3, 1, 4, None),    # length 1
        (3, 5, 101, 16, 8),    # length not a multiple of the chunk
        (2, 4, 64, 16, 64),    # one chunk
        (1, 6, 50, 3, 1),      # chunk of one step
    ],
)
def test_torch_scan_matches_float64_recurrence(batch, dim, length, state, chunk):
    inputs = random_scan_inputs(batch, dim, length, state, seed=length * 31 + dim)
    cotangent = torch.randn(batch, dim, length, dtype=torch.float64)
    y_ref, last_ref, grads_ref = run_with_grads(
        selective_scan_reference, {k: v.double() for k, v in inputs.items()}, cotangent
    )
    y, last, grads = run_with_grads(selective_scan_torch, inputs, cotangent, chunk_size=chunk)
    assert y.dtype == torch.float32
    assert relative_error(y, y_ref) <= 1e-5
    assert relative_error(last, last_ref) <= 1e-5
    for name in INPUT_NAMES:
        assert relative_error(grads[name], grads_ref[name]) <= 1e-5, name


def test_optional_inputs_can_be_omitted():
    inputs = random_scan_inputs(2, 3, 20, 4, seed=1)
    y = selective_scan_torch(inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"])
    y_ref = selective_scan_reference(*(inputs[k].double() for k in ("u", "delta", "A", "B", "C")))
    assert relative_error(y, y_ref) <= 1e-5


def test_state_carries_across_chunks():
    # With no decay (A ~ 0) and a single impulse at t=0, the state must survive
    # every chunk boundary: y_t = C_t * B_0 * delta_0 * u_0 for all t.
    length = 30
    u = torch.zeros(1, 1, length)
    u[..., 0] = 1.0
    delta = torch.ones(1, 1, length)
    A = torch.full((1, 1), -1e-9)
    B = torch.ones(1, 1, length)
    C = torch.ones(1, 1, length)
    y = selective_scan_torch(u, delta, A, B, C, chunk_size=4)
    torch.testing.assert_close(y, torch.ones_like(y), rtol=1e-6, atol=1e-6)


def test_bfloat16_inputs_return_bfloat16():
    inputs = random_scan_inputs(1, 4, 25, 4, seed=3, dtype=torch.bfloat16)
    y = selective_scan(**inputs, delta_softplus=True, backend="torch")
    assert y.dtype == torch.bfloat16
    y_ref = selective_scan_reference(**{k: v.double() for k, v in inputs.items()}, delta_softplus=True)
    assert relative_error(y, y_ref) <= 2e-2


def test_shape_errors_name_the_argument():
    inputs = random_scan_inputs(2, 3, 10, 4, seed=0)
    inputs["B"] = inputs["B"][:, :, :5]
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(**inputs, backend="torch")


def test_backend_resolution(monkeypatch, caplog):
    cpu = torch.device("cpu")
    monkeypatch.delenv(SCAN_BACKEND_ENV, raising=False)
    assert resolve_scan_backend("auto", cpu) == "torch"
    assert resolve_scan_backend(None, cpu) == "torch"
    with pytest.raises(ScanBackendUnavailable, match="needs CUDA tensors"):
        resolve_scan_backend("cuda", cpu)
    with pytest.raises(ValueError, match="unknown selective-scan backend 'bogus'"):
        resolve_scan_backend("bogus", cpu)
    monkeypatch.setenv(SCAN_BACKEND_ENV, "cuda")
    with pytest.raises(ScanBackendUnavailable):
        resolve_scan_backend("auto", cpu)
    # The argument wins over the environment.
    assert resolve_scan_backend("torch", cpu) == "torch"
    monkeypatch.setenv(SCAN_BACKEND_ENV, "nonsense")
    with pytest.raises(ValueError, match=SCAN_BACKEND_ENV):
        resolve_scan_backend(None, cpu)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("length", [1, 37, 1569])
def test_cuda_backend_matches_torch_backend(dtype, tol, length):
    if not cuda_scan_available():
        pytest.skip("mamba-ssm is not installed")
    inputs = random_scan_inputs(2, 48, length, 16, seed=length, dtype=dtype, device="cuda")
    cotangent = torch.randn(2, 48, length, dtype=torch.float64, device="cuda")
    y_t, last_t, g_t = run_with_grads(selective_scan, inputs, cotangent, backend="torch")
    y_c, last_c, g_c = run_with_grads(selective_scan, inputs, cotangent, backend="cuda")
    assert y_c.dtype == dtype
    assert relative_error(y_c, y_t) <= tol
    assert relative_error(last_c, last_t) <= tol
    for name in INPUT_NAMES:
        # bf16 round-off in mamba-ssm's backward is ~1e-9 absolute where the true
        # gradient is exactly 0 (dA at length 1): compare such tensors absolutely.
        assert relative_error(g_c[name], g_t[name], floor=1e-3) <= tol * 3, name


def _skip_without_triton() -> None:
    from encoders.ops.triton_scan import triton_available

    if not triton_available():
        pytest.skip("Triton is not installed")


#: (Gluon forward, Gluon backward): the defaults, Gluon forward with the Triton backward, Triton only.
KERNEL_CHOICES = [(True, True), (True, False), (False, False)]


@pytest.mark.gpu
@pytest.mark.parametrize("gluon_forward,gluon_backward", KERNEL_CHOICES)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2), (torch.float16, 1e-2)])
@pytest.mark.parametrize("batch,length", [(1, 1), (3, 37), (2, 1569), (1, 12545), (64, 197)])
def test_triton_scan_and_gradients_match_float64(dtype, tol, batch, length, gluon_forward, gluon_backward):
    """Both directions, gate, softplus: output and all 15 input gradients, for
    every forward / backward kernel pairing (each backward restarts from the
    states either forward saved). These small problems split the sequence."""
    from encoders.ops.triton_scan import TritonScanConfig

    _skip_without_triton()
    config = TritonScanConfig(gluon_forward=gluon_forward, gluon_backward=gluon_backward)
    errors = triton_errors(batch, 24, length, config=config, dtype=dtype, seed=length + batch)
    assert max(errors.values()) <= tol, errors


@pytest.mark.gpu
@pytest.mark.parametrize("gluon_forward,gluon_backward", KERNEL_CHOICES)
def test_scan_gradients_without_splitting(gluon_forward, gluon_backward):
    """Enough (batch x channel block) programs that no kernel splits the sequence."""
    from encoders.ops.triton_scan import TritonScanConfig

    _skip_without_triton()
    config = TritonScanConfig(gluon_forward=gluon_forward, gluon_backward=gluon_backward)
    errors = triton_errors(40, 256, 197, config=config, seed=11)
    assert max(errors.values()) <= 1e-4, errors


@pytest.mark.gpu
@pytest.mark.parametrize("splits", [2, 7, 1000])
def test_triton_split_sequence_matches_float64(splits):
    """Long sequences cut into segments (three launches forward, three backward)
    give the same output and gradients."""
    from encoders.ops.triton_scan import TritonScanConfig

    _skip_without_triton()
    config = TritonScanConfig(splits=splits, gluon_forward=False, gluon_backward=False)
    errors = triton_errors(2, 40, 3001, config=config, seed=splits)
    assert max(errors.values()) <= 1e-4, errors


def _skip_without_gluon() -> None:
    from encoders.ops.gluon_scan import gluon_available

    _skip_without_triton()
    if not gluon_available():
        pytest.skip("this Triton has no Gluon")


#: (block_l, states_per_thread, num_warps, parallel_directions)
GLUON_TILES = [(16, 8, 1, False), (8, 16, 1, True), (16, 4, 2, True), (4, 2, 1, False), (8, 8, 1, True)]


@pytest.mark.gpu
@pytest.mark.parametrize("tile", GLUON_TILES)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2), (torch.float16, 1e-2)])
@pytest.mark.parametrize("batch,dim,length", [(1, 24, 1), (3, 24, 37), (2, 40, 1569), (1, 48, 12545), (64, 24, 197)])
def test_gluon_forward_matches_float64(tile, dtype, tol, batch, dim, length):
    """The Gluon forward alone, every tile shape (lanes per channel 1 to 8),
    directions side by side or one after the other, short and long sequences
    (long ones at batch 1 split into segments)."""
    from encoders.ops.gluon_scan import GluonScanConfig

    _skip_without_gluon()
    block_l, states_per_thread, num_warps, parallel = tile
    config = GluonScanConfig(block_l, states_per_thread, num_warps, parallel_directions=parallel)
    assert gluon_forward_errors(batch, dim, length, config, dtype=dtype, seed=length + batch) <= tol


@pytest.mark.gpu
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("splits", [2, 7, 1000])
@pytest.mark.parametrize("bidirectional,gate,softplus", [(True, True, True), (False, True, True),
                                                         (True, False, True), (False, False, False),
                                                         (True, True, False)])  # the last: the mixer's inference
def test_gluon_forward_split_and_optional_parts(splits, bidirectional, gate, softplus, parallel):
    from encoders.ops.gluon_scan import GluonScanConfig

    _skip_without_gluon()
    config = GluonScanConfig(splits=splits, parallel_directions=parallel)
    error = gluon_forward_errors(2, 40, 3001, config, bidirectional=bidirectional,
                                 gate=gate, softplus=softplus, seed=0)
    assert error <= 1e-4



@pytest.mark.gpu
@pytest.mark.parametrize("parallel", [False, True])
def test_gluon_forward_reads_a_strided_gate_in_place(parallel):
    """z as the mixer passes it (a view into the in_proj output: channel
    stride batch x length) gives exactly the output of a contiguous copy."""
    from encoders.ops.gluon_scan import GluonScanConfig, gluon_scan_forward

    _skip_without_gluon()
    batch, dim, length = 3, 40, 1001
    fwd = random_scan_inputs(batch, dim, length, 16, seed=5, dtype=torch.bfloat16, device="cuda")
    bwd = random_scan_inputs(batch, dim, length, 16, seed=6, dtype=torch.bfloat16, device="cuda")
    directions = [tuple(inputs[k].float() if k in ("A", "D", "delta_bias") else inputs[k]
                        for k in DIRECTION_NAMES) for inputs in (fwd, bwd)]
    xz = torch.randn(2 * dim, batch, length, device="cuda", dtype=torch.bfloat16).transpose(0, 1)
    z = xz[:, dim:]  # (batch, dim, length), strides (length, batch * length, 1)
    assert z.stride(1) == batch * length
    config = GluonScanConfig(parallel_directions=parallel)
    strided, _ = gluon_scan_forward(directions[0], directions[1], z, True, config)
    copied, _ = gluon_scan_forward(directions[0], directions[1], z.contiguous(), True, config)
    assert torch.equal(strided, copied)

#: Compile-only cases: (kernel name, its constexpr arguments).
GLUON_COMPILE_CASES = {
    "forward, split, saving states": ("_gluon_scan_fwd_kernel", dict(
        END_STATES=False, SPLIT=True, BIDIRECTIONAL=True, HAS_Z=True, SOFTPLUS=True, SAVE_STATES=True,
        CKPT_CHUNKS=8)),
    "forward, segment end states": ("_gluon_scan_fwd_kernel", dict(
        END_STATES=True, SPLIT=False, BIDIRECTIONAL=True, HAS_Z=True, SOFTPLUS=True, SAVE_STATES=False,
        CKPT_CHUNKS=8)),
    "forward, one direction": ("_gluon_scan_fwd_kernel", dict(
        END_STATES=False, SPLIT=False, BIDIRECTIONAL=False, HAS_Z=True, SOFTPLUS=True, SAVE_STATES=False,
        CKPT_CHUNKS=8)),
    "forward, directions side by side, split, saving states": ("_gluon_scan_fwd_parallel_kernel", dict(
        END_STATES=False, SPLIT=True, HAS_Z=True, SOFTPLUS=True, SAVE_STATES=True, CKPT_CHUNKS=8)),
    "forward, directions side by side, segment end states": ("_gluon_scan_fwd_parallel_kernel", dict(
        END_STATES=True, SPLIT=False, HAS_Z=True, SOFTPLUS=True, SAVE_STATES=False, CKPT_CHUNKS=8)),
    "restore states": ("_gluon_restore_kernel", dict(REVERSE=True, SOFTPLUS=True, GROUP_CHUNKS=8)),
    "backward, split": ("_gluon_scan_bwd_kernel", dict(BIDIRECTIONAL=True, HAS_Z=True, SPLIT=True, SOFTPLUS=True)),
    "backward, one direction, no gate": ("_gluon_scan_bwd_kernel", dict(
        BIDIRECTIONAL=False, HAS_Z=False, SPLIT=False, SOFTPLUS=False)),
    "backward, few programs (2 states a thread)": ("_gluon_scan_bwd_kernel", dict(
        BIDIRECTIONAL=True, HAS_Z=True, SPLIT=False, SOFTPLUS=True)),
}
#: (batch, channels) each backward compile case is resolved for: Ti 8 frames, or few programs.
GLUON_BACKWARD_PROBLEMS = {"backward, few programs (2 states a thread)": (4, 384)}
#: Integer (not pointer) arguments of the Gluon kernels; float32 pointers by name prefix.
GLUON_INT_ARGS = {"dim", "length", "n_chunks", "n_slots", "n_splits", "chunks_per_split"}
GLUON_FLOAT32_POINTERS = ("A_", "D_", "bias", "ckpt", "seg", "dtsum", "chunks", "dA", "dB", "dC", "dD", "dbias", "ybuf",
                          "dz")


@pytest.mark.parametrize("case", sorted(GLUON_COMPILE_CASES))
def test_gluon_kernels_compile_for_hopper_without_spills(case, tmp_path):
    """Without a GPU: the default Gluon tile compiles for sm_90a, and ptxas
    reports no register spills (a spill would cost more than the tile saves)."""
    triton = pytest.importorskip("triton")
    from encoders.ops import gluon_backward, gluon_scan

    if not gluon_scan.gluon_available():
        pytest.skip("this Triton has no Gluon")
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    if not ptxas.exists():
        pytest.skip("this Triton ships no ptxas")
    name, flags = GLUON_COMPILE_CASES[case]
    parallel = name == "_gluon_scan_fwd_parallel_kernel"
    if name == "_gluon_scan_bwd_kernel":
        batch, dim = GLUON_BACKWARD_PROBLEMS.get(case, (32, 384))
        config = gluon_backward.DEFAULT_BACKWARD_CONFIG.for_problem(batch, dim, 16, directions=2)
        kernel = gluon_backward._gluon_scan_bwd_kernel
        layouts = gluon_backward._backward_layouts(config, 16)
    else:
        config = gluon_scan.DEFAULT_GLUON_CONFIG
        kernel = getattr(gluon_scan, name)
        layouts = gluon_scan._parallel_layouts(config, 16) if parallel else gluon_scan._kernel_layouts(config, 16)
    constants = dict(flags, STATE=16, BLOCK_L=config.block_l, **layouts)
    signature = {}
    for param in kernel.params:
        arg = param.name
        if param.is_constexpr:
            signature[arg] = "constexpr"
        elif arg in GLUON_INT_ARGS or arg.startswith("s_"):
            signature[arg] = "i32"
        else:
            signature[arg] = "*fp32" if arg.startswith(GLUON_FLOAT32_POINTERS) else "*bf16"
    source = GluonASTSource(kernel, signature=signature, constexprs=constants)
    warps = config.num_warps * (2 if parallel else 1)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    (tmp_path / "scan.ptx").write_text(compiled.asm["ptx"])
    report = subprocess.run([str(ptxas), "-v", "--gpu-name", "sm_90a", str(tmp_path / "scan.ptx"),
                             "-o", str(tmp_path / "scan.cubin")], capture_output=True, text=True, check=True).stderr
    assert "Used" in report, report
    assert " 0 bytes spill stores" in report or "spill" not in report, report


@pytest.mark.gpu
def test_gluon_forward_saves_the_states_the_triton_forward_saves():
    """Checkpointed states (what the Triton backward restarts from), split
    and not, directions side by side and not."""
    from encoders.ops.gluon_scan import GluonScanConfig, gluon_scan_forward
    from encoders.ops.triton_scan import TritonScanConfig, scan_forward

    _skip_without_gluon()
    fwd = random_scan_inputs(2, 40, 3001, 16, seed=1, device="cuda")
    bwd = random_scan_inputs(2, 40, 3001, 16, seed=2, device="cuda")
    direction = lambda inputs: tuple(inputs[k] for k in DIRECTION_NAMES)  # noqa: E731
    triton_config = TritonScanConfig(gluon_forward=False)
    y_t, (sf_t, sb_t) = scan_forward(direction(fwd), direction(bwd), fwd["z"], True, triton_config, save_states=True)
    every = triton_config.block_l * triton_config.state_checkpoint_chunks
    for splits, parallel in itertools.product((1, 5), (False, True)):
        config = GluonScanConfig(splits=splits, parallel_directions=parallel)
        y_g, (sf_g, sb_g) = gluon_scan_forward(direction(fwd), direction(bwd), fwd["z"], True, config,
                                               checkpoint_positions=every)
        assert relative_error(y_g, y_t) <= 1e-5
        assert relative_error(sf_g, sf_t) <= 1e-5 and relative_error(sb_g, sb_t) <= 1e-5


#: (block_l, states_per_thread, num_warps) of the Gluon backward: positions per thread 2 to 8, lanes
#: per channel 2 to 8, one and two warps.
GLUON_BACKWARD_TILES = [(4, 8, 1), (2, 8, 1), (8, 4, 1), (8, 2, 1), (4, 4, 2), (4, 2, 1)]


@pytest.mark.gpu
@pytest.mark.parametrize("tile", GLUON_BACKWARD_TILES)
@pytest.mark.parametrize("splits", [None, 7])
@pytest.mark.parametrize("bidirectional,gate,softplus", [(True, True, True), (False, False, False)])
def test_gluon_backward_tiles_match_the_triton_backward(tile, splits, bidirectional, gate, softplus):
    """Every Gluon backward tile, split and not, gives the gradients of the
    Triton backward (itself checked against float64 above) from the same saved
    states, on an odd length and a partial last channel block."""
    from encoders.ops.gluon_backward import GluonBackwardConfig, gluon_scan_backward
    from encoders.ops.gluon_scan import gluon_scan_forward
    from encoders.ops.triton_scan import TritonScanConfig, scan_backward

    _skip_without_gluon()
    fwd = random_scan_inputs(2, 40, 1001, 16, seed=3, device="cuda")
    bwd = random_scan_inputs(2, 40, 1001, 16, seed=4, device="cuda")
    if not softplus:
        for inputs in (fwd, bwd):
            inputs["delta"] = inputs["delta"].exp()
            inputs["delta_bias"] = inputs["delta_bias"].abs()
    direction = lambda inputs: tuple(inputs[k] for k in DIRECTION_NAMES)  # noqa: E731
    f, b = direction(fwd), direction(bwd) if bidirectional else None
    z = fwd["z"] if gate else None
    triton_config = TritonScanConfig(gluon_backward=False)
    every = triton_config.block_l * triton_config.state_checkpoint_chunks
    y, saved = gluon_scan_forward(f, b, z, softplus, checkpoint_positions=every)
    grad = torch.randn_like(y)
    expected = scan_backward(f, b, z, saved, grad, softplus, triton_config)
    block_l, states_per_thread, num_warps = tile
    config = GluonBackwardConfig(block_l, states_per_thread, num_warps, splits=splits)
    actual = gluon_scan_backward(f, b, z, saved, grad, softplus, every, config)
    for got, want in zip([*actual[0], *(actual[1] or []), actual[2]], [*expected[0], *(expected[1] or []), expected[2]]):
        if want is None:
            assert got is None
        else:
            assert relative_error(got, want, floor=1e-3) <= 1e-4


@pytest.mark.gpu
@pytest.mark.parametrize("gluon", [True, False])
@pytest.mark.parametrize("bidirectional,gate,softplus", [(False, True, True), (True, False, True), (False, False, False)])
def test_triton_optional_parts(bidirectional, gate, softplus, gluon):
    from encoders.ops.triton_scan import TritonScanConfig

    _skip_without_triton()
    config = TritonScanConfig(gluon_forward=gluon, gluon_backward=gluon)
    errors = triton_errors(2, 20, 300, config=config, bidirectional=bidirectional, gate=gate, softplus=softplus)
    assert max(errors.values()) <= 1e-4, errors


@pytest.mark.gpu
def test_triton_backend_through_selective_scan():
    """The "triton" backend of the mamba-ssm contract, optional D, bias and z omitted."""
    _skip_without_triton()
    inputs = random_scan_inputs(2, 24, 197, 16, seed=3, device="cuda")
    inputs["delta"] = inputs["delta"].exp()
    leaves = {k: inputs[k].clone().requires_grad_(True) for k in ("u", "delta", "A", "B", "C")}
    y = selective_scan(**leaves, backend="triton")
    y.square().sum().backward()
    exact = {k: v.detach().double().requires_grad_(True) for k, v in leaves.items()}
    expected = selective_scan_torch(**exact)
    expected.square().sum().backward()
    assert relative_error(y, expected) <= 1e-4
    for name, leaf in leaves.items():
        assert relative_error(leaf.grad, exact[name].grad) <= 1e-4, name


def test_triton_kernels_match_float64_in_the_interpreter():
    """The Triton kernels' arithmetic, forward and backward, checked on the CPU
    through Triton's interpreter (the GPU tests above check the compiled code)."""
    pytest.importorskip("triton")
    script = Path(__file__).with_name("triton_interpreter_check.py")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) >= 4
    for case, errors in results.items():
        assert max(errors.values()) <= 1e-5, (case, errors)


def test_without_gluon_triton_is_preferred_only_with_enough_parallel_work():
    from encoders.ops.triton_scan import TritonScanConfig, triton_scan_preferred

    config = TritonScanConfig(gluon_forward=False)
    assert triton_scan_preferred(32, 384, config)       # Ti, batch 32: measured faster
    assert not triton_scan_preferred(4, 384, config)    # Ti, 64 frames, batch 4: measured slower
    assert triton_scan_preferred(16, 768, config)       # S, batch 16
    assert not triton_scan_preferred(4, 768, config)    # S, 64 frames, batch 4
    assert not triton_scan_preferred(4, 384, config, needs_grad=False)
    assert triton_scan_preferred(32, 384, config, needs_grad=False)


@pytest.mark.parametrize("batch,dim,frames,expected", [
    (32, 384, 8, 1),    # Ti, 8 frames: 1536 backward programs, no split
    (16, 384, 16, 5),   # Ti, 16 frames: 768 programs, 5 segments (two waves of 4224)
    (8, 384, 32, 11),
    (4, 384, 64, 22),
    (16, 768, 16, 1),   # S, 16 frames: 1536 programs
    (8, 768, 32, 5),
    (4, 768, 64, 11),
    (1, 24, 1, 1),      # a one-position sequence cannot split
])
def test_backward_split_rule(batch, dim, frames, expected):
    """The backward's segments at the measured shapes (docs/benchmarks.md,
    "The backward's split rule"); every segment non-empty."""
    from encoders.ops.triton_scan import DEFAULT_CONFIG, _backward_segments, _cdiv

    length = 1 + 196 * frames if frames > 1 else 1
    splits, chunks_per_split = _backward_segments(batch, dim, length, DEFAULT_CONFIG)
    assert splits == expected
    n_chunks = _cdiv(length, DEFAULT_CONFIG.block_l)
    assert (splits - 1) * chunks_per_split < n_chunks <= splits * chunks_per_split


@pytest.mark.parametrize("batch,dim,frames,states_per_thread,expected", [
    (32, 384, 8, 4, 1),    # Ti, 8 frames: 3072 programs of 8 channels (one direction each)
    (32, 768, 8, 4, 1),
    (16, 768, 16, 4, 1),   # 3072 programs
    (16, 384, 16, 2, 1),   # 1536 programs of 8 channels, a mostly empty second wave: 4 channels
    (8, 768, 32, 2, 1),
    (8, 384, 32, 4, 1),    # 768 programs, one wave: 8 channels, unsplit
    (4, 768, 64, 4, 1),
    (4, 384, 64, 2, 1),    # 384 programs of 8 channels would split: 768 of 4 instead
    (2, 384, 64, 2, 11),   # 384 programs of 4 channels: split (1.09x faster at 384 programs)
])
def test_gluon_backward_tile_and_split_rule(batch, dim, frames, states_per_thread, expected):
    """The Gluon backward's tile and segments at the measured shapes
    (docs/benchmarks.md, "The Gluon backward"); a fixed tile is kept."""
    from encoders.ops.gluon_backward import DEFAULT_BACKWARD_CONFIG, GluonBackwardConfig

    config = DEFAULT_BACKWARD_CONFIG.for_problem(batch, dim, 16, directions=2)
    assert config.states_per_thread == states_per_thread
    assert config.choose_splits(batch, dim, 1 + 196 * frames, 16, directions=2) == expected
    fixed = GluonBackwardConfig(states_per_thread=8)
    assert fixed.for_problem(batch, dim, 16, directions=2) is fixed


def test_gluon_forward_splits_fewer_programs_side_by_side():
    """Programs with a warp per direction split only below parallel_min_programs."""
    from encoders.ops.gluon_scan import GluonScanConfig

    config = GluonScanConfig()
    ti_16_frames = (16, 384, 1 + 196 * 16, 16)  # 384 programs of 16 channels
    assert config.choose_splits(*ti_16_frames, parallel=True) == 1
    assert config.choose_splits(*ti_16_frames, parallel=False) == 6
    assert config.choose_splits(8, 384, 1 + 196 * 32, 16, parallel=True) == 11  # 192 programs


def test_with_gluon_triton_is_preferred_everywhere(monkeypatch):
    """The Gluon forward was measured faster than mamba-ssm at every shape,
    and with it whole training steps too."""
    from encoders.ops import gluon_scan
    from encoders.ops.triton_scan import triton_scan_preferred

    monkeypatch.setattr(gluon_scan, "gluon_available", lambda: True)
    assert triton_scan_preferred(4, 384, needs_grad=False)
    assert triton_scan_preferred(4, 384, needs_grad=True)
    monkeypatch.setattr(gluon_scan, "gluon_available", lambda: False)
    assert not triton_scan_preferred(4, 384, needs_grad=False)
    assert not triton_scan_preferred(4, 384, needs_grad=True)


def test_auto_backend_policy_on_cuda(monkeypatch):
    """What "auto" picks on a CUDA device, from the measurements in docs/benchmarks.md."""
    from encoders.ops import gluon_scan

    scan_module = sys.modules["encoders.ops.selective_scan"]  # the package exports a function of that name
    cuda = torch.device("cuda")
    monkeypatch.delenv(SCAN_BACKEND_ENV, raising=False)
    monkeypatch.setattr(scan_module, "triton_available", lambda: True)
    monkeypatch.setattr(scan_module, "cuda_scan_available", lambda: True)
    monkeypatch.setattr(scan_module, "_mamba_ssm_scan_fn", lambda: object())
    monkeypatch.setattr(gluon_scan, "gluon_available", lambda: False)
    assert resolve_scan_backend("auto", cuda, problem=(32, 384)) == "triton"   # Ti, 8 frames: faster
    assert resolve_scan_backend("auto", cuda, problem=(4, 384)) == "cuda"      # Ti, 64 frames, batch 4, training
    assert resolve_scan_backend("auto", cuda, problem=(16, 768)) == "triton"   # S, batch 16 (training too)
    monkeypatch.setattr(gluon_scan, "gluon_available", lambda: True)           # the Gluon forward: everywhere
    assert resolve_scan_backend("auto", cuda, problem=(4, 384)) == "triton"
    monkeypatch.setattr(gluon_scan, "gluon_available", lambda: False)
    monkeypatch.setattr(scan_module, "cuda_scan_available", lambda: False)     # no mamba-ssm installed
    assert resolve_scan_backend("auto", cuda, problem=(4, 384)) == "triton"


def test_gluon_backward_rejects_unsupported_shapes_by_name():
    """Bad shapes fail in the wrapper with the argument named, before any launch."""
    from encoders.ops.gluon_backward import gluon_scan_backward

    _skip_without_triton()
    from encoders.ops.gluon_scan import gluon_available

    if not gluon_available():
        pytest.skip("this Triton has no Gluon")
    inputs = random_scan_inputs(1, 8, 10, 12, seed=0)
    direction = tuple(inputs[k] for k in DIRECTION_NAMES)
    saved = (torch.zeros(1, 8, 1, 12), None)
    with pytest.raises(ValueError, match="state size 12"):
        gluon_scan_backward(direction, None, None, saved, inputs["u"])
    inputs = random_scan_inputs(1, 8, 10, 16, seed=0)
    direction = tuple(inputs[k] for k in DIRECTION_NAMES)
    with pytest.raises(ValueError, match="checkpoint_positions=12"):
        gluon_scan_backward(direction, None, None, (torch.zeros(1, 8, 1, 16), None), inputs["u"],
                            checkpoint_positions=12)
    with pytest.raises(ValueError, match="saved states"):
        gluon_scan_backward(direction, None, None, (torch.zeros(1, 8, 3, 16), None), inputs["u"])
