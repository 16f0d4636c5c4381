"""Throughput and peak memory of VideoMamba against joint space-time attention ViTs.

    python benchmarks/encoder_speed.py                       # GPU: Ti and S, 8-64 frames
    python benchmarks/encoder_speed.py --device cpu          # CPU: 8 frames, batch 1
    python benchmarks/encoder_speed.py --profile             # + kernel profile of Ti (first --frames, default 8)
    python benchmarks/encoder_speed.py --cuda-graph          # inference timed as CUDA graph replays

Every model runs in the same process on the same inputs. Inference is bf16 (weights cast,
CUDA) under ``torch.inference_mode``; the training step is bf16 autocast with fp32 weights,
forward + backward + AdamW. The ViT baseline is DeiT-shaped (12 layers, width = the
VideoMamba width, 64-dim heads, MLP ratio 4) attending jointly over all 1 + T*196 tokens,
with PyTorch's fused SDPA ("flash") or an explicit softmax(QK^T)V ("naive").
Prints a markdown table: clips/s (median of --repeats timings, with their spread) and peak GiB
per model, frames and mode.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoders import create_video_encoder  # noqa: E402
from encoders.ops.patch_embed import patch_embed  # noqa: E402

logger = logging.getLogger("encoder_speed")


class JointAttentionViT(nn.Module):
    """Plain ViT over all space-time tokens: the TimeSformer "joint" baseline."""

    def __init__(self, width: int, depth: int = 12, head_dim: int = 64, patch: int = 16, naive: bool = False):
        super().__init__()
        self.heads = max(1, width // head_dim)
        self.naive = naive
        self.patch_embed = nn.Conv3d(3, width, (1, patch, patch), (1, patch, patch))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                dict(
                    norm1=nn.LayerNorm(width),
                    qkv=nn.Linear(width, 3 * width),
                    proj=nn.Linear(width, width),
                    norm2=nn.LayerNorm(width),
                    fc1=nn.Linear(width, 4 * width),
                    fc2=nn.Linear(4 * width, width),
                )
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if not self.naive:
            return F.scaled_dot_product_attention(q, k, v)
        weights = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        return weights.softmax(dim=-1) @ v

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        # the same GEMM patch embedding as VideoMamba's (encoders.ops.patch_embed), not cuDNN's slower Conv3d
        x = patch_embed(video, self.patch_embed.weight, self.patch_embed.bias).flatten(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        b, n, c = x.shape
        for blk in self.blocks:
            qkv = blk["qkv"](blk["norm1"](x)).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
            attn = self.attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(b, n, c)
            x = x + blk["proj"](attn)
            x = x + blk["fc2"](F.gelu(blk["fc1"](blk["norm2"](x))))
        return self.norm(x)[:, 0]


@dataclasses.dataclass
class Row:
    model: str
    mode: str
    frames: int
    batch: int
    clips_per_s: float
    peak_gib: float
    note: str = ""
    spread: float = float("nan")  # (max - min) / median of the repeated timings


def measure(fn: Callable[[], None], device: torch.device, warmup: int, iters: int,
            repeats: int = 1) -> tuple[float, float, float]:
    """Seconds per call (the median of ``repeats`` timings of ``iters``
    calls each), their spread ((max - min) / median) and peak GiB (CUDA only;
    NaN on CPU)."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings.append((time.perf_counter() - start) / iters)
    timings.sort()
    median = timings[len(timings) // 2]
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return median, (timings[-1] - timings[0]) / median, peak


def build(kind: str, width_name: str, frames: int, scan_backend: str | None) -> nn.Module:
    width = {"tiny": 192, "small": 384}[width_name]
    if kind == "videomamba":
        return create_video_encoder(f"videomamba_{width_name}", num_frames=frames, scan_backend=scan_backend)
    return JointAttentionViT(width, naive=(kind == "vit_naive"))


def bench_one(kind: str, width_name: str, frames: int, batch: int, mode: str, device: torch.device,
              args: argparse.Namespace, scan_backend: str | None = None) -> Row:
    name = f"{kind}[{scan_backend}]-{width_name}" if kind == "videomamba" else f"{kind}-{width_name}"
    torch.manual_seed(0)
    model = build(kind, width_name, frames, scan_backend).to(device)
    video = torch.randn(batch, 3, frames, args.img_size, args.img_size, device=device)
    bf16 = device.type == "cuda"
    if mode == "inference":
        model.eval()
        if bf16:
            model = model.to(torch.bfloat16)
            video = video.to(torch.bfloat16)

        def step() -> None:
            with torch.inference_mode():
                model(video)

        if args.cuda_graph and device.type == "cuda":
            step = _graphed(step)
    else:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model(video).float().pow(2).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.empty_cache()
    try:
        seconds, spread, peak = measure(step, device, args.warmup, args.iters, args.repeats)
        if args.cuda_graph and mode == "inference":
            peak = float("nan")  # graphs keep private memory pools: the allocator's peak is not this model's
        row = Row(name, mode, frames, batch, batch / seconds, peak, spread=spread)
    except torch.OutOfMemoryError:
        row = Row(name, mode, frames, batch, float("nan"), float("nan"), "out of memory")
    # The model is freed when `step` goes out of scope; the next row empties the
    # CUDA cache before it measures.
    return row


def _graphed(step: Callable[[], None]) -> Callable[[], None]:
    """``step`` captured once in a CUDA graph (after warm-up calls that compile
    every kernel), so that timing replays measures the GPU's work without the
    host's launch overhead. Used for every model alike."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def profile_videomamba(device: torch.device, args: argparse.Namespace) -> str:
    """Top CUDA kernels of a VideoMamba-Ti bf16 inference call at the first of
    ``--frames`` (default 8) and its inference batch (``--clips-per-batch`` / frames)."""
    from torch.profiler import ProfilerActivity, profile

    frames = args.frames[0] if args.frames else 8
    batch = max(1, args.clips_per_batch // frames)
    model = create_video_encoder("videomamba_tiny", scan_backend=args.scan_backends[0]).to(device).eval()
    model = model.to(torch.bfloat16)
    video = torch.randn(batch, 3, frames, args.img_size, args.img_size, device=device, dtype=torch.bfloat16)
    with torch.inference_mode():
        for _ in range(3):
            model(video)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                model(video)
            torch.cuda.synchronize()
    averages = prof.key_averages()
    return (averages.table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=70)
            + "\n" + averages.table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--frames", type=int, nargs="+", default=None)
    parser.add_argument("--widths", nargs="+", default=["tiny", "small"], choices=["tiny", "small"])
    parser.add_argument("--models", nargs="+", default=["videomamba", "vit_flash", "vit_naive"],
                        choices=["videomamba", "vit_flash", "vit_naive"])
    parser.add_argument("--modes", nargs="+", default=["inference", "train"], choices=["inference", "train"])
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--clips-per-batch", type=int, default=256,
                        help="inference batch = this / frames (32 at 8 frames); training uses half")
    parser.add_argument("--batches", type=int, nargs="+", default=None,
                        help="batch sizes to time instead of the defaults (e.g. the CPU indexing batch)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3,
                        help="time this many blocks of --iters calls; clips/s from the median, spread across them")
    parser.add_argument("--scan-backends", nargs="+", default=["auto"],
                        help="VideoMamba scan backends to compare (auto, triton, cuda, torch), inference and training")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="inference: time replays of one CUDA graph per model (no host launch overhead)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device(args.device)
    if device.type == "cpu":
        args.frames = args.frames or [8]
        args.warmup, args.iters = min(args.warmup, 1), min(args.iters, 2)
    frames_list = args.frames or [8, 16, 32, 64]

    rows: list[Row] = []
    for width in args.widths:
        for frames in frames_list:
            for mode in args.modes:
                batch = 1 if device.type == "cpu" else max(1, args.clips_per_batch // frames)
                if mode == "train" and device.type != "cpu":
                    batch = max(1, batch // 2)
                for batch in args.batches or [batch]:
                    for kind in args.models:
                        backends = args.scan_backends if kind == "videomamba" else ["auto"]
                        for backend in backends:
                            row = bench_one(kind, width, frames, batch, mode, device, args, backend)
                            rows.append(row)
                            logger.info("%s", row)

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"\ndevice: {gpu}; torch {torch.__version__}; img {args.img_size}px; "
          f"{'bf16' if device.type == 'cuda' else 'fp32'}{'; inference in CUDA graphs' if args.cuda_graph else ''}\n")
    print("| model | mode | frames | batch | clips/s | spread | peak GiB | vs vit_flash | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        ref = next((r for r in rows if r.model == f"vit_flash-{row.model.split('-')[1]}" and r.mode == row.mode
                    and r.frames == row.frames and r.batch == row.batch), None)
        ratio = row.clips_per_s / ref.clips_per_s if ref and ref.clips_per_s == ref.clips_per_s else float("nan")
        print(f"| {row.model} | {row.mode} | {row.frames} | {row.batch} | {row.clips_per_s:.1f} | "
              f"{row.spread:.0%} | {row.peak_gib:.2f} | {ratio:.2f}x | {row.note} |")
    if args.profile and device.type == "cuda":
        frames = frames_list[0]
        print(f"\nVideoMamba-Ti bf16 inference, {frames} frames, batch {max(1, args.clips_per_batch // frames)}, "
              f"5 calls, scan backend {args.scan_backends[0]}:\n")
        print(profile_videomamba(device, args))


if __name__ == "__main__":
    main()
