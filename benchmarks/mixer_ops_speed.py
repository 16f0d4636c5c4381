"""The bidirectional mixer's steps around the scan: odd against aligned rows, and their floor.

    python benchmarks/mixer_ops_speed.py            # GPU: Ti and S widths, 8-64 frames
    python benchmarks/mixer_ops_speed.py --tiles    # + tiles of the out_proj kernel

Per layer of VideoMamba inference (bf16, random weights, the encoder_speed batch:
256 clips-frames, 1 + 196 x frames tokens), each step as the mixer runs it, on
(batch, channels, length) activations whose rows have stride ``length`` (odd:
what the mixer had) and stride ``length`` rounded up to 16 tokens (what its
inference path pads to), side by side in one process:

  * in_proj            : cuBLAS mm, W @ hidden^T;
  * convs              : both directions' Triton conv + SiLU, one kernel each;
  * convs, one pass    : both in one kernel (``causal_conv1d_pair_triton``, what the mixer runs now);
  * x_proj + dt_proj   : both directions' batched GEMMs (cuBLAS, broadcast weights), the
                         softplus left to the scan (what the mixer's training path runs);
  * ... + softplus, Triton dt : x_proj on cuBLAS, then both directions' dt_proj + bias + softplus
                         in one Triton kernel (``softplus_dt_projection_pair``, what inference runs);
  * out_proj, bmm      : cuBLAS bmm of y^T read in place (what the mixer ran before);
  * out_proj, Triton   : ``encoders.ops.channel_major_linear`` (what it runs now);
  * add + RMSNorm      : ``encoders.ops.rms_norm.add_rms_norm`` (token-major, no rows to align).

"floor" is the bytes each step must read and write once over the device's
measured copy bandwidth. Each time is the median of ``--rounds`` rounds that
take every step in turn.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from encoders.ops.causal_conv import causal_conv1d_pair_triton, causal_conv1d_triton  # noqa: E402
from encoders.ops.channel_major_linear import (  # noqa: E402
    ChannelMajorLinearConfig,
    channel_major_linear,
    channel_major_linear_reference,
)
from encoders.ops.channel_major_linear import _launch as out_proj_launch  # noqa: E402
from encoders.ops.dt_projection import softplus_dt_projection_pair  # noqa: E402
from encoders.ops.rms_norm import add_rms_norm  # noqa: E402
from scan_speed import copy_bandwidth, cuda_time, median_times  # noqa: E402

STATE = 16
WIDTHS = {"Ti": 192, "S": 384}
FRAMES = (8, 16, 32, 64)
ALIGNMENT = 16
OUT_PROJ_TILES = [ChannelMajorLinearConfig(), ChannelMajorLinearConfig(64, 64, 64),
                  ChannelMajorLinearConfig(128, 64, 32), ChannelMajorLinearConfig(128, 128, 64, 8),
                  ChannelMajorLinearConfig(128, 64, 64, 4, 2), ChannelMajorLinearConfig(128, 64, 64, 8, 4),
                  ChannelMajorLinearConfig(64, 256, 64, 8), ChannelMajorLinearConfig(64, 256, 32, 8),
                  ChannelMajorLinearConfig(128, 256, 64, 8), ChannelMajorLinearConfig(64, 256, 64, 4),
                  ChannelMajorLinearConfig(32, 256, 64, 4)]


class Layer:
    """Random bf16 weights and activations of one mixer layer; rows of ``stride`` tokens."""

    def __init__(self, d_model: int, batch: int, length: int, stride: int) -> None:
        bf16 = dict(device="cuda", dtype=torch.bfloat16)
        self.dim, self.rank, self.batch = 2 * d_model, -(-d_model // 16), batch
        self.length, self.stride = length, stride
        self.hidden = torch.randn(batch * stride, d_model, **bf16)
        self.in_proj = d_model ** -0.5 * torch.randn(2 * self.dim, d_model, **bf16)
        self.conv = [(0.5 * torch.randn(self.dim, 4, **bf16), 0.1 * torch.randn(self.dim, **bf16)) for _ in range(2)]
        self.x_proj = [self.dim ** -0.5 * torch.randn(self.rank + 2 * STATE, self.dim, **bf16) for _ in range(2)]
        self.dt_proj = [self.rank ** -0.5 * torch.randn(self.dim, self.rank, **bf16) for _ in range(2)]
        self.dt_bias = [torch.randn(self.dim, **bf16) - 4.0 for _ in range(2)]
        self.out_proj = self.dim ** -0.5 * torch.randn(d_model, self.dim, **bf16)
        self.xz = self.run_in_proj()
        self.u = self.run_convs()
        self.y = torch.randn(batch, self.dim, stride, **bf16)[..., :length]

    def run_in_proj(self) -> torch.Tensor:
        return torch.mm(self.in_proj, self.hidden.t()).view(-1, self.batch, self.stride).transpose(0, 1)

    def run_convs(self) -> list[torch.Tensor]:
        x = self.xz[:, :self.dim]
        return [causal_conv1d_triton(x, w, b, True, reverse=reverse, valid_length=self.length)
                for reverse, (w, b) in zip((False, True), self.conv)]

    def run_convs_pair(self) -> tuple[torch.Tensor, torch.Tensor]:
        return causal_conv1d_pair_triton(self.xz[:, :self.dim], *self.conv, True, valid_length=self.length)

    def run_projections(self) -> None:
        for u, x_proj, dt_proj in zip(self.u, self.x_proj, self.dt_proj):
            x_dbl = torch.bmm(x_proj.expand(self.batch, -1, -1), u)
            torch.bmm(dt_proj.expand(self.batch, -1, -1), x_dbl[:, :self.rank])

    def run_projections_softplus(self) -> None:
        lows = [torch.bmm(x_proj.expand(self.batch, -1, -1), u)[:, :self.rank]
                for u, x_proj in zip(self.u, self.x_proj)]
        softplus_dt_projection_pair(*zip(lows, self.dt_proj, self.dt_bias))


def floors(d_model: int, batch: int, length: int) -> dict[str, float]:
    """Bytes each step must move (bf16 activations; the residual stream is float32)."""
    dim, tokens = 2 * d_model, batch * length
    return {
        "in_proj": 2 * tokens * (d_model + 2 * dim),
        "convs": 2 * 2 * tokens * 2 * dim,
        "convs, one pass": 2 * tokens * 3 * dim,
        "x_proj + dt_proj": 2 * 2 * tokens * (dim + 2 * dim),  # read u; write delta (B, C, dt are small)
        "x_proj + dt_proj + softplus, Triton dt": 2 * 2 * tokens * (dim + 2 * dim),
        "out_proj, bmm": 2 * tokens * (dim + d_model),
        "out_proj, Triton": 2 * tokens * (dim + d_model),
        "add + RMSNorm": tokens * d_model * (2 + 4 + 4 + 2),
    }


def step_timers(layer: Layer, residual: torch.Tensor, hidden3d: torch.Tensor, weight: torch.Tensor) -> dict:
    return {
        "in_proj": lambda: cuda_time(layer.run_in_proj),
        "convs": lambda: cuda_time(layer.run_convs),
        "convs, one pass": lambda: cuda_time(layer.run_convs_pair),
        "x_proj + dt_proj": lambda: cuda_time(layer.run_projections),
        "x_proj + dt_proj + softplus, Triton dt": lambda: cuda_time(layer.run_projections_softplus),
        "out_proj, bmm": lambda: cuda_time(lambda: channel_major_linear_reference(layer.y, layer.out_proj)),
        "out_proj, Triton": lambda: cuda_time(lambda: channel_major_linear(layer.y, layer.out_proj)),
        "add + RMSNorm": lambda: cuda_time(lambda: add_rms_norm(hidden3d, residual, weight, 1e-5)),
    }


def table(rounds: int) -> None:
    bandwidth = copy_bandwidth()
    print(f"\ndevice: {torch.cuda.get_device_name()}; torch {torch.__version__}; copy bandwidth "
          f"{bandwidth / 1e12:.2f} TB/s\n")
    print("| width | frames | batch | step | us, rows of length | us, rows padded to 16 | aligned vs odd | floor us | "
          "aligned of floor |\n|---|---|---|---|---|---|---|---|---|")
    for (width, d_model), frames in itertools.product(WIDTHS.items(), FRAMES):
        batch, length = 256 // frames, 1 + 196 * frames
        aligned = -(-length // ALIGNMENT) * ALIGNMENT
        residual = torch.randn(batch, length, d_model, device="cuda")
        hidden3d = torch.randn(batch, length, d_model, device="cuda", dtype=torch.bfloat16)
        weight = torch.ones(d_model, device="cuda", dtype=torch.bfloat16)
        with torch.inference_mode():
            layers = {stride: Layer(d_model, batch, length, stride) for stride in (length, aligned)}
            timers = {(stride, step): timer for stride, layer in layers.items()
                      for step, timer in step_timers(layer, residual, hidden3d, weight).items()}
            times = median_times(timers, rounds, once=())
        for step, floor_bytes in floors(d_model, batch, length).items():
            odd, even = times[(length, step)], times[(aligned, step)]
            floor = floor_bytes / bandwidth
            print(f"| {width} | {frames} | {batch} | {step} | {odd * 1e6:.0f} | {even * 1e6:.0f} | "
                  f"{odd / even:.2f}x | {floor * 1e6:.0f} | {floor / even:.0%} |", flush=True)


def tile_sweep() -> None:
    print("\n### out_proj tiles (us; block_t / block_n / block_k / warps / stages), y rows of length, "
          "then padded to 16\n")
    names = ["/".join(map(str, vars(c).values())) for c in OUT_PROJ_TILES]
    print("| width | frames | batch | rows | " + " | ".join(names) + " |\n|---|---|---|---|" + "---|" * len(names))
    for (width, d_model), frames in itertools.product(WIDTHS.items(), FRAMES):
        batch, length = 256 // frames, 1 + 196 * frames
        for stride in (length, -(-length // ALIGNMENT) * ALIGNMENT):
            y = torch.randn(batch, 2 * d_model, stride, device="cuda", dtype=torch.bfloat16)[..., :length]
            weight = torch.randn(d_model, 2 * d_model, device="cuda", dtype=torch.bfloat16)
            cells = []
            for config in OUT_PROJ_TILES:
                try:
                    with torch.inference_mode():
                        cells.append(f"{cuda_time(lambda: out_proj_launch(y, weight, None, config)) * 1e6:.0f}")
                except Exception as err:  # a tile that does not fit (shared memory) is reported, not fatal
                    cells.append(f"failed: {type(err).__name__}")
            print(f"| {width} | {frames} | {batch} | {stride} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tiles", action="store_true", help="also sweep the out_proj kernel's tiles")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not torch.cuda.is_available():
        raise SystemExit("mixer_ops_speed.py needs a CUDA device")
    table(args.rounds)
    if args.tiles:
        tile_sweep()


if __name__ == "__main__":
    main()
