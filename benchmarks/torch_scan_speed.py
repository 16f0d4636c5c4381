"""The pure-PyTorch selective scan (the CPU path): this tree against an earlier revision.

    python benchmarks/torch_scan_speed.py --baseline-rev c081fec
    python benchmarks/torch_scan_speed.py --baseline-rev c081fec --frames 8 16 --batches 1 8

The baseline is ``encoders/ops/selective_scan.py`` as it was at ``--baseline-rev``
(read with ``git show``), loaded beside the current one, so both run in one
process on the same inputs, alternating. Rows:

* scan: one ``selective_scan_torch`` call at VideoMamba widths (d_inner 384 for
  Ti, 768 for S; state 16; length 1 + 196 x frames; delta softplus, D and the
  gate on), inference (no autograd); and forward + backward at the Ti width;
* encoder: VideoMamba-Ti inference on ``--encoder-batch`` clips of 8 frames at
  224 x 224 with each implementation patched in (what indexing on a CPU runs).

Each figure is the median of ``--repeats`` runs after one warm-up; the ratio is
baseline time / current time; the relative error compares the two outputs (for
fwd+bwd: the gradient of delta).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from encoders.factory import create_video_encoder  # noqa: E402

# The module, not the package's re-exported function of the same name.
current_module = importlib.import_module("encoders.ops.selective_scan")

SCAN_PATH = "encoders/ops/selective_scan.py"
STATE = 16


def load_baseline(rev: str) -> ModuleType:
    """``encoders/ops/selective_scan.py`` at ``rev``, imported as a sibling module."""
    source = subprocess.run(["git", "show", f"{rev}:{SCAN_PATH}"], cwd=REPO, check=True, capture_output=True,
                            text=True).stdout
    name = "encoders.ops._selective_scan_baseline"
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    module.__package__ = "encoders.ops"  # its relative imports resolve beside the current module
    exec(compile(source, f"{rev}:{SCAN_PATH}", "exec"), module.__dict__)  # noqa: S102 - this repository's file
    return module


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def scan_inputs(batch: int, dim: int, length: int, requires_grad: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    inputs = {
        "u": torch.randn(batch, dim, length, generator=g),
        "delta": torch.randn(batch, dim, length, generator=g) * 0.5 - 1.0,
        "A": -torch.rand(dim, STATE, generator=g) * 4.0 - 0.1,
        "B": torch.randn(batch, STATE, length, generator=g),
        "C": torch.randn(batch, STATE, length, generator=g),
        "D": torch.randn(dim, generator=g),
        "z": torch.randn(batch, dim, length, generator=g),
        "delta_bias": torch.randn(dim, generator=g) * 0.1,
    }
    for value in inputs.values():
        value.requires_grad_(requires_grad)
    return inputs


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


Row = tuple[str, int, int, str, float, float, float]


def side_by_side(baseline: ModuleType, make_call: Callable[[ModuleType], Callable[[], torch.Tensor]],
                 repeats: int) -> tuple[float, float, float]:
    """(baseline s, current s, relative error of the outputs), timed alternately."""
    calls = {"baseline": make_call(baseline), "current": make_call(current_module)}
    outputs = {label: call() for label, call in calls.items()}
    times: dict[str, list[float]] = {label: [] for label in calls}
    for _ in range(repeats):
        for label, call in calls.items():
            times[label].append(median_seconds(call, 1))
    return (statistics.median(times["baseline"]), statistics.median(times["current"]),
            relative_error(outputs["current"], outputs["baseline"]))


def scan_rows(baseline: ModuleType, frames: list[int], batches: list[int], repeats: int) -> list[Row]:
    rows = []
    for width, dim in (("Ti", 384), ("S", 768)):
        for n_frames in frames:
            for batch in batches:
                inputs = scan_inputs(batch, dim, 1 + 196 * n_frames, requires_grad=False)

                def make_call(module: ModuleType, inputs: dict = inputs) -> Callable[[], torch.Tensor]:
                    def call() -> torch.Tensor:
                        with torch.inference_mode():
                            return module.selective_scan_torch(**inputs, delta_softplus=True)
                    return call
                rows.append((f"scan, {width}", n_frames, batch, "fwd", *side_by_side(baseline, make_call, repeats)))
    # Forward + backward (training on a CPU) at the Ti width.
    length = 1 + 196 * frames[0]
    inputs = scan_inputs(batches[0], 384, length, requires_grad=True)
    cotangent = torch.randn(batches[0], 384, length, generator=torch.Generator().manual_seed(1))

    def make_step(module: ModuleType) -> Callable[[], torch.Tensor]:
        def step() -> torch.Tensor:
            for value in inputs.values():
                value.grad = None
            module.selective_scan_torch(**inputs, delta_softplus=True).backward(cotangent)
            return inputs["delta"].grad.clone()
        return step
    rows.append(("scan, Ti", frames[0], batches[0], "fwd+bwd", *side_by_side(baseline, make_step, repeats)))
    return rows


def encoder_row(baseline: ModuleType, batch: int, repeats: int) -> Row:
    torch.manual_seed(0)
    model = create_video_encoder("videomamba_tiny", num_frames=8).eval()
    clips = torch.randn(batch, 3, 8, 224, 224, generator=torch.Generator().manual_seed(2))

    def make_call(module: ModuleType) -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            saved = current_module.selective_scan_torch
            current_module.selective_scan_torch = module.selective_scan_torch  # what selective_scan() calls
            try:
                with torch.inference_mode():
                    return model(clips)
            finally:
                current_module.selective_scan_torch = saved
        return call
    return ("VideoMamba-Ti encoder", 8, batch, "inference", *side_by_side(baseline, make_call, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-rev", required=True, help="git revision whose selective_scan.py is the baseline")
    parser.add_argument("--frames", type=int, nargs="+", default=[8])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="clips per scan call")
    parser.add_argument("--encoder-batch", type=int, default=4, help="clips per encoder call (0 = skip)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    baseline = load_baseline(args.baseline_rev)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; baseline {args.baseline_rev}")
    rows = scan_rows(baseline, args.frames, args.batches, args.repeats)
    if args.encoder_batch > 0:
        rows.append(encoder_row(baseline, args.encoder_batch, args.repeats))
    print("| what | frames | batch | pass | baseline s | current s | baseline / current | rel. difference |")
    print("|---|---|---|---|---|---|---|---|")
    for what, n_frames, batch, kind, before, after, error in rows:
        print(f"| {what} | {n_frames} | {batch} | {kind} | {before:.3f} | {after:.3f} | {before / after:.2f}x "
              f"| {error:.1e} |")


if __name__ == "__main__":
    main()
