"""Bidirectional selective scan, forward and backward: Triton vs mamba-ssm vs PyTorch.

    python benchmarks/scan_speed.py                 # GPU, Ti and S widths, 8-64 frames, bf16
    python benchmarks/scan_speed.py --sweep         # + Gluon and Triton tile sizes
    python benchmarks/scan_speed.py --gluon-sweep   # + Gluon forward and backward tile sizes only

What one bidirectional mixer needs per layer, timed side by side in one process:
  * ours     : ``bidirectional_selective_scan_triton`` with its defaults - both
               directions in one launch, backward direction by index
               arithmetic, shared gate z, summed output; the forward is the
               Gluon kernel, so is the backward (autograd);
  * Triton kernels only: the same with the Triton (not Gluon) forward and backward;
  * mamba-ssm: two ``selective_scan_fn`` calls plus the flips of the backward
               inputs (u, delta, B, C, z) and of its output, and the sum - what
               the unfused mixer does ("x2 + flips"); and the two calls alone on
               pre-flipped inputs ("x2");
  * torch    : the same with the pure-PyTorch scan (small shapes only).
"fwd" is the forward pass alone (inference); "bwd" the backward alone (autograd
of a recorded forward, retain_graph, cotangent fixed). Each time is the median
of ``--rounds`` rounds that take every variant in turn.

Bounds. bytes: the unavoidable forward traffic (read u, delta of both directions,
z, B and C of both directions; write y) over the time, against the device's
measured copy bandwidth. exp: the forward needs batch x dim x state x length
exp2 per direction; their rate is compared with a Triton kernel that does
nothing but exp2 (the MUFU peak as this device delivers it).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import logging
import statistics
import sys
from pathlib import Path
from typing import Callable, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoders.ops.selective_scan import _mamba_ssm_scan_fn, selective_scan_torch  # noqa: E402
from encoders.ops.gluon_backward import GluonBackwardConfig, gluon_scan_backward  # noqa: E402
from encoders.ops.gluon_scan import GluonScanConfig, gluon_available, gluon_scan_forward  # noqa: E402
from encoders.ops.triton_scan import (  # noqa: E402
    DEFAULT_CONFIG,
    scan_backward,
    TritonScanConfig,
    bidirectional_selective_scan_triton,
    choose_splits,
)

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

STATE = 16


def cuda_time(fn: Callable[[], object], warmup: int = 3, iters: int = 20) -> float:
    """Mean seconds per call, CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / iters


def copy_bandwidth() -> float:
    """Bytes/s of a device-to-device copy (read + write counted)."""
    src = torch.empty(2**29, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    seconds = cuda_time(lambda: dst.copy_(src))
    return 2 * src.numel() * src.element_size() / seconds


@triton.jit
def _exp2_only_kernel(x_ptr, ITERS: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs)
    for _ in range(ITERS):
        x = tl.exp2(x * -0.5)  # stays in (0, 1]; one MUFU op and one FMUL per step
    tl.store(x_ptr + offs, x)


def exp2_rate() -> float:
    """exp2 per second of a kernel that does nothing else."""
    x = torch.rand(132 * 64 * 1024, device="cuda")
    iters = 256
    seconds = cuda_time(lambda: _exp2_only_kernel[(x.numel() // 1024,)](x, ITERS=iters, BLOCK=1024, num_warps=4))
    return x.numel() * iters / seconds


def make_direction(batch: int, dim: int, length: int, dtype: torch.dtype, grad: bool = False):
    g = torch.Generator(device="cuda").manual_seed(length + dim)
    u = torch.randn(batch, dim, length, device="cuda", dtype=dtype, generator=g)
    delta = (torch.randn(batch, dim, length, device="cuda", generator=g) * 0.5 - 1).to(dtype)
    A = -torch.exp(torch.randn(dim, STATE, device="cuda", generator=g) * 0.5)
    B = torch.randn(batch, STATE, length, device="cuda", dtype=dtype, generator=g)
    C = torch.randn(batch, STATE, length, device="cuda", dtype=dtype, generator=g)
    D = torch.randn(dim, device="cuda")
    bias = torch.randn(dim, device="cuda") * 0.5
    return tuple(t.requires_grad_(grad) for t in (u, delta, A, B, C, D, bias))


def problem(batch: int, dim: int, length: int, grad: bool = False):
    fwd = make_direction(batch, dim, length, torch.bfloat16, grad)
    bwd = make_direction(batch, dim, length, torch.bfloat16, grad)
    z = torch.randn(batch, dim, length, device="cuda", dtype=torch.bfloat16).requires_grad_(grad)
    return fwd, bwd, z


def triton_call(fwd, bwd, z, config: TritonScanConfig = DEFAULT_CONFIG) -> Callable[[], torch.Tensor]:
    return lambda: bidirectional_selective_scan_triton(fwd, bwd, z, True, config)


def two_scans_call(scan: Callable, fwd, bwd, z, flips: bool) -> Callable[[], torch.Tensor]:
    ub, db, Ab, Bb, Cb, Db, biasb = bwd
    if not flips:  # inputs flipped once, outside the timed region
        ub, db, Bb, Cb, zb = (t.detach().flip(-1).requires_grad_(t.requires_grad) for t in (ub, db, Bb, Cb, z))

    def call() -> torch.Tensor:
        u, delta, A, B, C, D, bias = fwd
        y = scan(u, delta, A, B, C, D, z, bias, True)
        if flips:  # what the unfused mixer does
            yb = scan(ub.flip(-1), db.flip(-1), Ab, Bb.flip(-1), Cb.flip(-1), Db, z.flip(-1), biasb, True)
            return y + yb.flip(-1)
        return y + scan(ub, db, Ab, Bb, Cb, Db, zb, biasb, True)

    return call


def median_times(timers: dict[str, Optional[Callable[[], float]]], rounds: int,
                 once: tuple[str, ...] = ("torch",)) -> dict[str, float]:
    """Median seconds per name over ``rounds`` rounds; each round times every
    name once, in turn, so clock drift during a run hits all of them alike.
    Names in ``once`` (slow references) are timed in the first round only;
    a missing timer gives NaN."""
    samples: dict[str, list[float]] = {name: [] for name in timers}
    for round_index in range(rounds):
        for name, timer in timers.items():
            if timer is not None and (round_index == 0 or name not in once):
                samples[name].append(timer())
    return {name: statistics.median(values) if values else float("nan") for name, values in samples.items()}


def backward_time(call: Callable[[], torch.Tensor], inputs: list[torch.Tensor], iters: int = 10) -> float:
    """Seconds of the backward pass alone: autograd.grad of one recorded forward."""
    y = call()
    cotangent = torch.randn_like(y)
    return cuda_time(lambda: torch.autograd.grad(y, inputs, cotangent, retain_graph=True, allow_unused=True),
                     warmup=2, iters=iters)


#: Tiles that compile without register spills on sm_90 (ptxas -v), (block_d, block_l, warps).
FORWARD_TILES = [(16, 4, 1), (8, 8, 1)]
BACKWARD_TILES = [(8, 4, 1), (4, 4, 1)]
REGISTER_CAPS = (None, 168, 128)  # ptxas maxnreg
SWEEP_SHAPES = ((8, 32), (64, 4))  # (frames, batch) at Ti width
SWEEP_MIN_PROGRAMS = (1, 512, 2048)  # 1: never split the sequence


#: Gluon forward tiles, (block_l, states_per_thread, num_warps, parallel_directions).
GLUON_TILES = [(8, 8, 1, True), (8, 8, 1, False), (8, 4, 1, True), (16, 8, 1, True)]
GLUON_SHAPES = ((384, 8, 32), (384, 16, 16), (384, 32, 8), (384, 64, 4), (768, 8, 32), (768, 16, 16),
                (768, 32, 8), (768, 64, 4))
#: min_programs of the directions-one-after-the-other forward, parallel_min_programs of the other.
GLUON_MIN_PROGRAMS = (128, 256, 512)


def gluon_sweep() -> None:
    """Gluon forward tiles, the directions side by side or one after the
    other, and segment counts, Ti and S widths."""
    print("\n### Gluon forward tiles\n")
    print("| dim | frames | batch | block_l | states/thread | warps | side by side | min_programs | splits | fwd us |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    for dim, frames, batch in GLUON_SHAPES:
        length = 1 + 196 * frames
        fwd, bwd, z = problem(batch, dim, length)
        for (block_l, per_thread, warps, parallel), min_programs in itertools.product(GLUON_TILES,
                                                                                       GLUON_MIN_PROGRAMS):
            config = GluonScanConfig(block_l, per_thread, warps, min_programs=min_programs,
                                     parallel_min_programs=min_programs, parallel_directions=parallel)
            splits = config.choose_splits(batch, dim, length, STATE, parallel)
            try:
                t = cuda_time(lambda: gluon_scan_forward(fwd, bwd, z, True, config), iters=10)
                result = f"{t * 1e6:.0f}"
            except Exception as err:
                result = f"failed: {type(err).__name__}"
            print(f"| {dim} | {frames} | {batch} | {block_l} | {per_thread} | {warps} | {parallel} | "
                  f"{min_programs} | {splits} | {result} |", flush=True)


#: (block_l, states_per_thread, num_warps, max_registers) of the Gluon backward; states_per_thread None is the
#: default rule (4, or 2 with few programs).
GLUON_BACKWARD_TILES = [(8, None, 1, None), (8, 4, 1, None), (8, 2, 1, None), (8, 4, 1, 200), (4, 8, 1, None),
                        (4, 4, 1, None), (8, 4, 2, None)]
GLUON_BACKWARD_SHAPES = ((384, 8, 32), (384, 16, 16), (384, 32, 8), (384, 64, 4), (768, 8, 32), (768, 16, 16),
                         (768, 32, 8), (768, 64, 4))


def gluon_backward_sweep() -> None:
    """Gluon backward tiles against the Triton backward, from the same saved states."""
    print("\n### Gluon backward tiles (us; the Triton backward from the same states first)\n")
    print("| dim | frames | batch | Triton backward | " + " | ".join(map(str, GLUON_BACKWARD_TILES)) + " |\n"
          "|---|---|---|---|" + "---|" * len(GLUON_BACKWARD_TILES))
    every = DEFAULT_CONFIG.block_l * DEFAULT_CONFIG.state_checkpoint_chunks
    for dim, frames, batch in GLUON_BACKWARD_SHAPES:
        length = 1 + 196 * frames
        fwd, bwd, z = problem(batch, dim, length)
        y, saved = gluon_scan_forward(fwd, bwd, z, True, checkpoint_positions=every)
        grad = torch.randn_like(y)
        triton_only = dataclasses.replace(DEFAULT_CONFIG, gluon_backward=False)
        times = [cuda_time(lambda: scan_backward(fwd, bwd, z, saved, grad, True, triton_only), iters=5)]
        for tile in GLUON_BACKWARD_TILES:
            config = GluonBackwardConfig(*tile)
            try:
                times.append(cuda_time(lambda: gluon_scan_backward(fwd, bwd, z, saved, grad, True, every, config),
                                       iters=5))
            except Exception:  # a tile that does not compile here: leave its cell empty
                logging.exception("gluon backward tile %s", tile)
                times.append(float("nan"))
        print(f"| {dim} | {frames} | {batch} | " + " | ".join(f"{t * 1e6:.0f}" for t in times) + " |", flush=True)


#: Segment counts tried for the Gluon backward's default tile, and the long-clip shapes where its rule splits.
GLUON_BACKWARD_SPLITS = (1, 2, 3, 4, 6, 8, 11, 16, 22)
GLUON_BACKWARD_SPLIT_SHAPES = ((384, 16, 16), (384, 32, 8), (384, 64, 4), (768, 32, 8), (768, 64, 4))


def kernel_times(call: Callable[[], object]) -> dict[str, float]:
    """Device seconds per launch of each kernel ``call`` runs (one profiled call after a warm-up)."""
    call()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    return {event.key: event.device_time_total * 1e-6 for event in prof.key_averages() if event.device_time_total > 0}


def gluon_backward_split_sweep() -> None:
    """The Gluon backward's default tile at every segment count, at the
    shapes where its rule splits, and where the time goes (per kernel)."""
    print("\n### Gluon backward segments (us; * the rule's choice)\n")
    print("| dim | frames | batch | " + " | ".join(map(str, GLUON_BACKWARD_SPLITS)) + " |\n"
          "|---|---|---|" + "---|" * len(GLUON_BACKWARD_SPLITS))
    every = DEFAULT_CONFIG.block_l * DEFAULT_CONFIG.state_checkpoint_chunks
    breakdowns = []
    for dim, frames, batch in GLUON_BACKWARD_SHAPES[:1] + GLUON_BACKWARD_SPLIT_SHAPES:
        length = 1 + 196 * frames
        fwd, bwd, z = problem(batch, dim, length)
        y, saved = gluon_scan_forward(fwd, bwd, z, True, checkpoint_positions=every)
        grad = torch.randn_like(y)
        chosen = GluonBackwardConfig().for_problem(batch, dim, STATE, 2).choose_splits(batch, dim, length, STATE, 2)
        cells = []
        for splits in GLUON_BACKWARD_SPLITS:
            config = GluonBackwardConfig(splits=splits)
            t = cuda_time(lambda: gluon_scan_backward(fwd, bwd, z, saved, grad, True, every, config), iters=5)
            cells.append(f"{t * 1e6:.0f}" + ("*" if splits == chosen else ""))
        print(f"| {dim} | {frames} | {batch} | " + " | ".join(cells) + " |", flush=True)
        times = kernel_times(lambda: gluon_scan_backward(fwd, bwd, z, saved, grad, True, every))
        breakdowns.append((dim, frames, batch, times))
    print("\n### Gluon backward (default), device us per kernel\n")
    for dim, frames, batch, times in breakdowns:
        parts = ", ".join(f"{name[:40]} {t * 1e6:.0f}" for name, t in sorted(times.items(), key=lambda kv: -kv[1]))
        print(f"- {dim} / {frames} frames / batch {batch}: total {sum(times.values()) * 1e6:.0f}: {parts}")


def sweep() -> None:
    """Triton tiles and segment counts at Ti width, forward and backward, at
    8 frames batch 32 and 64 frames batch 4."""
    if gluon_available():
        gluon_sweep()
        gluon_backward_sweep()
    print("\n### Forward tiles\n")
    print("| frames | batch | block_d | block_l | warps | max registers | min_programs | splits | fwd us |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for frames, batch in SWEEP_SHAPES:
        length = 1 + 196 * frames
        fwd, bwd, z = problem(batch, 384, length)
        for (block_d, block_l, warps), min_programs, cap in itertools.product(
                FORWARD_TILES, SWEEP_MIN_PROGRAMS, REGISTER_CAPS):
            config = TritonScanConfig(block_d=block_d, block_l=block_l, num_warps=warps, min_programs=min_programs,
                                      max_registers=cap)
            splits = choose_splits(batch, 384, length, config)
            try:
                t = cuda_time(triton_call(fwd, bwd, z, config), iters=10)
                result = f"{t * 1e6:.0f}"
            except Exception as err:  # out of resources for this tile
                result = f"failed: {type(err).__name__}"
            print(f"| {frames} | {batch} | {block_d} | {block_l} | {warps} | {cap} | {min_programs} | {splits} | "
                  f"{result} |")
    print("\n### Backward tiles\n")
    print("| frames | batch | block_l | bwd block_d | bwd warps | max registers | min_programs | splits | bwd us |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for frames, batch in SWEEP_SHAPES:
        length = 1 + 196 * frames
        fwd, bwd, z = problem(batch, 384, length, grad=True)
        inputs = [*fwd, *bwd, z]
        for (block_d, block_l, warps), min_programs, cap in itertools.product(
                BACKWARD_TILES, SWEEP_MIN_PROGRAMS, REGISTER_CAPS):
            config = TritonScanConfig(block_l=block_l, backward_block_d=block_d, backward_num_warps=warps,
                                      min_programs=min_programs, backward_max_registers=cap)
            splits = choose_splits(batch, 384, length, dataclasses.replace(config, block_d=block_d))
            try:
                t = backward_time(triton_call(fwd, bwd, z, config), inputs, iters=5)
                result = f"{t * 1e6:.0f}"
            except Exception as err:
                result = f"failed: {type(err).__name__}"
            print(f"| {frames} | {batch} | {block_l} | {block_d} | {warps} | {cap} | {min_programs} | {splits} | "
                  f"{result} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--widths", nargs="+", default=["tiny", "small"], choices=["tiny", "small"])
    parser.add_argument("--tokens-per-batch", type=int, default=256 * 196,
                        help="batch = this / (frames * 196): 32 clips at 8 frames")
    parser.add_argument("--torch-max-frames", type=int, default=8)
    parser.add_argument("--no-backward", action="store_true")
    parser.add_argument("--rounds", type=int, default=5,
                        help="each time in the table is the median of this many rounds (the PyTorch scan: one)")
    parser.add_argument("--sweep", action="store_true", help="time Gluon and Triton tile sizes first")
    parser.add_argument("--gluon-sweep", action="store_true", help="time Gluon forward tile sizes first")
    parser.add_argument("--gluon-backward-sweep", action="store_true",
                        help="time Gluon backward tiles against the Triton backward and its segment counts, then stop")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("scan_speed.py needs a CUDA device")
    mamba_scan = _mamba_ssm_scan_fn()
    bandwidth = copy_bandwidth()
    exp_peak = exp2_rate()
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}; triton {triton.__version__}; "
          f"bf16 inputs, fp32 state; copy bandwidth {bandwidth / 1e12:.2f} TB/s; "
          f"exp2-only kernel {exp_peak / 1e12:.2f} T exp2/s; Triton config {DEFAULT_CONFIG}")
    if args.gluon_backward_sweep:
        gluon_backward_sweep()
        gluon_backward_split_sweep()
        return
    if args.sweep:
        sweep()
    elif args.gluon_sweep:
        gluon_sweep()
        gluon_backward_sweep()
    print("\n### Bidirectional scan, microseconds (lower is better)\n")
    print("| width | frames | batch | pass | ours | Triton kernels only | mamba-ssm x2 + flips | mamba-ssm x2 | torch | "
          "vs x2+flips | vs x2 | vs Triton only | TB/s (% copy) | exp2 % of peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for width in args.widths:
        dim = {"tiny": 384, "small": 768}[width]  # d_inner = 2 x embed_dim
        for frames in args.frames:
            length = 1 + frames * 196
            batch = max(1, args.tokens_per_batch // (frames * 196))
            grad = not args.no_backward
            fwd, bwd, z = problem(batch, dim, length, grad)
            inputs = [*fwd, *bwd, z]
            calls = {
                "triton": triton_call(fwd, bwd, z),
                "triton kernels": triton_call(fwd, bwd, z, dataclasses.replace(DEFAULT_CONFIG, gluon_forward=False,
                                                                                    gluon_backward=False)),
                "flips": two_scans_call(mamba_scan, fwd, bwd, z, flips=True) if mamba_scan else None,
                "x2": two_scans_call(mamba_scan, fwd, bwd, z, flips=False) if mamba_scan else None,
                "torch": (two_scans_call(selective_scan_torch, fwd, bwd, z, flips=True)
                          if frames <= args.torch_max_frames else None),
            }
            with torch.no_grad():
                fwd_times = median_times(
                    {name: (functools.partial(cuda_time, call, **({"warmup": 1, "iters": 2} if name == "torch" else {}))
                            if call else None) for name, call in calls.items()}, args.rounds)
            bytes_moved = 2 * batch * length * (2 * dim * 2 + dim + dim + 2 * 2 * STATE)
            exps = 2 * batch * dim * STATE * length
            rows = [("fwd", fwd_times)]
            if grad:
                bwd_times = median_times(
                    {name: (functools.partial(backward_time, call, inputs, iters=2 if name == "torch" else 10)
                            if call else None) for name, call in calls.items()}, args.rounds)
                rows.append(("bwd", bwd_times))
            for label, times in rows:
                t = times["triton"]
                bound = (f"{bytes_moved / t / 1e12:.2f} ({100 * bytes_moved / t / bandwidth:.0f} %) | "
                         f"{100 * exps / t / exp_peak:.0f}" if label == "fwd" else " | ")
                print(f"| {width} | {frames} | {batch} | {label} | {t * 1e6:.0f} | {times['triton kernels'] * 1e6:.0f} | "
                      f"{times['flips'] * 1e6:.0f} | {times['x2'] * 1e6:.0f} | {times['torch'] * 1e6:.0f} | "
                      f"{times['flips'] / t:.2f}x | {times['x2'] / t:.2f}x | {times['triton kernels'] / t:.2f}x | "
                      f"{bound} |", flush=True)
            del fwd, bwd, z, inputs, calls
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
