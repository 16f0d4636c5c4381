"""Bidirectional selective-scan forward: Triton (one launch) vs mamba-ssm vs PyTorch.

    python benchmarks/scan_speed.py              # GPU, Ti and S widths, 8-64 frames, bf16

What one bidirectional mixer needs per layer, timed side by side in one process:
  * triton : ``bidirectional_selective_scan_triton`` - both directions, backward by
             index arithmetic, shared gate z, summed output;
  * mamba-ssm: two ``selective_scan_fn`` calls plus the flips of the backward
             inputs (u, delta, B, C, z) and of its output, and the sum - what the
             unfused mixer does;
  * torch  : the same with the pure-PyTorch scan (small shapes only).
Bytes: the unavoidable traffic of the bidirectional scan (read u, delta of both
directions, z, B and C of both directions; write y) divided by the time, against
the device's measured copy bandwidth (read + write of a 1 GiB tensor).
Forward only: the Triton kernel has no backward yet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoders.ops.selective_scan import _mamba_ssm_scan_fn, selective_scan_torch  # noqa: E402
from encoders.ops.triton_scan import bidirectional_selective_scan_triton  # noqa: E402


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


def make_direction(batch: int, dim: int, length: int, state: int, dtype: torch.dtype):
    g = torch.Generator(device="cuda").manual_seed(length + dim)
    u = torch.randn(batch, dim, length, device="cuda", dtype=dtype, generator=g)
    delta = (torch.randn(batch, dim, length, device="cuda", generator=g) * 0.5 - 1).to(dtype)
    A = -torch.exp(torch.randn(dim, state, device="cuda", generator=g) * 0.5)
    B = torch.randn(batch, state, length, device="cuda", dtype=dtype, generator=g)
    C = torch.randn(batch, state, length, device="cuda", dtype=dtype, generator=g)
    D = torch.randn(dim, device="cuda")
    bias = torch.randn(dim, device="cuda") * 0.5
    return u, delta, A, B, C, D, bias


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--widths", nargs="+", default=["tiny", "small"], choices=["tiny", "small"])
    parser.add_argument("--tokens-per-batch", type=int, default=256 * 196,
                        help="batch = this / (frames * 196): 32 clips at 8 frames")
    parser.add_argument("--torch-max-frames", type=int, default=8)
    parser.add_argument("--sweep", action="store_true", help="time Triton block sizes at Ti, 8 frames, batch 32")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("scan_speed.py needs a CUDA device")
    mamba_scan = _mamba_ssm_scan_fn()
    bandwidth = copy_bandwidth()
    if args.sweep:
        fwd = make_direction(32, 384, 1569, 16, torch.bfloat16)
        bwd = make_direction(32, 384, 1569, 16, torch.bfloat16)
        z = torch.randn(32, 384, 1569, device="cuda", dtype=torch.bfloat16)
        print("| variant | block_d | block_l | warps | triton us |\n|---|---|---|---|---|")
        configs = [(False, 4, 16, 1), (False, 2, 16, 1), (False, 4, 8, 1), (False, 8, 8, 1), (False, 2, 8, 1),
                   (False, 1, 16, 1), (False, 1, 32, 1)]
        configs += [(True, bd, 0, 1) for bd in (1, 2, 4, 8)]
        for sequential, block_d, block_l, warps in configs:
            try:
                t = cuda_time(lambda: bidirectional_selective_scan_triton(
                    fwd, bwd, z, block_d=block_d, block_l=max(block_l, 16), num_warps=warps, sequential=sequential))
                print(f"| {'sequential' if sequential else 'chunked'} | {block_d} | {block_l} | {warps} | {t * 1e6:.0f} |")
            except Exception as err:  # out of resources for this config
                print(f"| {sequential} | {block_d} | {block_l} | {warps} | failed: {type(err).__name__} |")
    print(f"\ndevice: {torch.cuda.get_device_name()}; torch {torch.__version__}; bf16 inputs, fp32 state; "
          f"copy bandwidth {bandwidth / 1e12:.2f} TB/s\n")
    print("| width | frames | batch | dim | length | triton us | mamba-ssm x2 + flips us | torch us | "
          "triton vs mamba-ssm | triton TB/s | % of copy bw |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for width in args.widths:
        dim = {"tiny": 384, "small": 768}[width]  # d_inner = 2 x embed_dim
        for frames in args.frames:
            length = 1 + frames * 196
            batch = max(1, args.tokens_per_batch // (frames * 196))
            fwd = make_direction(batch, dim, length, 16, torch.bfloat16)
            bwd = make_direction(batch, dim, length, 16, torch.bfloat16)
            z = torch.randn(batch, dim, length, device="cuda", dtype=torch.bfloat16)

            def run_triton() -> torch.Tensor:
                return bidirectional_selective_scan_triton(fwd, bwd, z)

            def run_two(scan: Callable) -> Callable[[], torch.Tensor]:
                def call() -> torch.Tensor:
                    u, delta, A, B, C, D, bias = fwd
                    y = scan(u, delta, A, B, C, D, z, bias, True)
                    ub, db, Ab, Bb, Cb, Db, biasb = bwd
                    # The unfused mixer feeds the backward scan flipped inputs.
                    yb = scan(ub.flip(-1), db.flip(-1), Ab, Bb.flip(-1), Cb.flip(-1), Db, z.flip(-1), biasb, True)
                    return y + yb.flip(-1)
                return call

            t_triton = cuda_time(run_triton)
            t_mamba = cuda_time(run_two(mamba_scan)) if mamba_scan is not None else float("nan")
            t_torch = (cuda_time(run_two(selective_scan_torch), warmup=1, iters=2)
                       if frames <= args.torch_max_frames else float("nan"))
            element = 2  # bf16
            bytes_moved = element * batch * length * (2 * dim * 2 + dim + dim + 2 * 2 * 16)
            achieved = bytes_moved / t_triton
            print(f"| {width} | {frames} | {batch} | {dim} | {length} | {t_triton * 1e6:.0f} | {t_mamba * 1e6:.0f} | "
                  f"{t_torch * 1e6:.0f} | {t_mamba / t_triton:.2f}x | {achieved / 1e12:.2f} | "
                  f"{100 * achieved / bandwidth:.0f} |")


if __name__ == "__main__":
    main()
