"""Run with TRITON_INTERPRET=1: the Triton scan kernels against float64 on the CPU.

Prints one JSON line {case: {output or gradient name: relative error}}.
Called by tests/test_selective_scan.py in a subprocess, because the interpreter
must be switched on before Triton compiles anything.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from encoders.ops.triton_scan import TritonScanConfig  # noqa: E402
from scan_cases import triton_errors  # noqa: E402

CASES = {
    # name: (batch, dim, length, config, keyword arguments)
    "bidirectional, gate, one segment": (2, 6, 37, TritonScanConfig(block_d=4, block_l=16, num_warps=1, splits=1), {}),
    "bidirectional, gate, 3 segments": (2, 6, 37, TritonScanConfig(block_d=4, block_l=8, num_warps=1, splits=3), {}),
    "length 1": (1, 4, 1, TritonScanConfig(block_d=4, block_l=16, num_warps=1), {}),
    "one direction, 4 segments, odd dim": (2, 5, 50, TritonScanConfig(block_d=2, block_l=8, num_warps=1, splits=4),
                                           {"bidirectional": False}),
    "no gate, no softplus": (1, 3, 33, TritonScanConfig(block_d=4, block_l=8, num_warps=1, splits=2),
                             {"gate": False, "softplus": False}),
    "states kept every 3 chunks, 2 segments": (
        2, 5, 61, TritonScanConfig(block_d=4, block_l=4, num_warps=1, splits=2, state_checkpoint_chunks=3), {}),
    # delta + bias about -12 to -8 (dt 6e-6 to 3e-4), where log(1 + e^x) in
    # float32 loses most of e^x's bits: the softplus must not round there.
    "softplus far below zero, no D skip": (1, 4, 40, TritonScanConfig(block_d=4, block_l=8, num_warps=1, splits=2),
                                           {"delta_shift": -9.0, "d_skip": False}),
    "states kept every chunk": (
        1, 4, 29, TritonScanConfig(block_d=4, block_l=4, num_warps=1, state_checkpoint_chunks=1), {}),
}


def main() -> None:
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("run with TRITON_INTERPRET=1")
    results = {}
    for name, (batch, dim, length, config, kwargs) in CASES.items():
        results[name] = triton_errors(batch, dim, length, config=config, device="cpu", seed=len(results), **kwargs)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
