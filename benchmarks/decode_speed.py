"""Decode speed of the PyAV and decord backends for sparse uniform sampling.

Generates (once, cached in ``--workdir``) two H.264 files with PyAV:
  * a 10-minute 640x360 30 fps video (libx264 "veryfast", default GOP of 250 frames)
  * a 1080p (1920x1080) 30 fps video, 30 s by default
then, for each backend, seek mode ("exact" frames, or nearest "keyframe") and
T in 8/16/32, times ``open_video`` + decoding T frames
sampled with the "middle" rule over the whole file (what indexing a library
does: one clip per file), in a fresh subprocess per configuration so the peak
resident memory (VmHWM) of that configuration can be reported.

Run::

    python benchmarks/decode_speed.py                 # full run, prints a markdown table
    python benchmarks/decode_speed.py --long-minutes 1 --hd-seconds 10 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

logger = logging.getLogger("decode_speed")


def make_h264(path: Path, width: int, height: int, seconds: float, fps: int = 30, preset: str = "veryfast") -> None:
    """Encode a moving textured test video (H.264, yuv420p) of ``seconds`` length to ``path``."""
    import av
    import cv2
    from tqdm import tqdm

    rng = np.random.default_rng(0)
    # A large smooth texture panned across the frame, plus moving blocks: camera-like
    # motion, cheap to render (about 0.3 Mbit/s at 360p and 1.8 Mbit/s at 1080p at CRF 23).
    tex_h, tex_w = height * 2, width * 2
    coarse = rng.integers(0, 256, size=(tex_h // 24 + 1, tex_w // 24 + 1, 3), dtype=np.uint8)
    texture = cv2.resize(coarse, (tex_w, tex_h), interpolation=cv2.INTER_CUBIC)
    block = max(8, height // 8)
    n = int(round(seconds * fps))
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": preset, "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in tqdm(range(n), desc=f"encoding {path.name}", unit="frame", leave=False):
            t = i / fps
            y = int((np.sin(t * 0.7) * 0.5 + 0.5) * (tex_h - height))
            x = int((np.cos(t * 0.3) * 0.5 + 0.5) * (tex_w - width))
            frame = texture[y : y + height, x : x + width].copy()
            for k in range(3):
                by = int((np.sin(t * (1.1 + k) + k) * 0.5 + 0.5) * (height - block))
                bx = int((i * (3 + 2 * k)) % (width - block))
                frame[by : by + block, bx : bx + block] = (80 * k, 255 - 70 * k, 40 + 100 * k)
            if (i // (fps * 7)) % 2:  # a "cut" every 7 s changes the colour balance
                frame = frame[..., ::-1]
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.rename(path)


def peak_rss_kib() -> int:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker(path: str, backend: str, seek_mode: str, num_frames: int, repeats: int) -> dict:
    """Time ``repeats`` clips in this process; return timings and peak RSS."""
    from data.decode import DecodeConfig, open_video
    from data.sampling import SamplingConfig, sample_frame_indices

    config = DecodeConfig(backend=backend, seek_mode=seek_mode)
    sampling = SamplingConfig(num_frames=num_frames, mode="middle")
    baseline_kib = peak_rss_kib()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with open_video(path, config) as reader:
            indices = sample_frame_indices(reader.num_frames, reader.fps, sampling)
            frames = reader.get_frames(indices)
        times.append(time.perf_counter() - start)
        assert frames.shape[0] == num_frames
    peak_kib = peak_rss_kib()
    return {
        "s_per_clip": statistics.median(times),
        "peak_rss_mib": peak_kib / 1024,
        "decode_rss_mib": (peak_kib - baseline_kib) / 1024,
    }


def run_config(path: Path, backend: str, seek_mode: str, num_frames: int, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(path), backend, seek_mode, str(num_frames), str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed for {path.name}/{backend}/{num_frames}:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "mambasearch_decode_bench")
    parser.add_argument("--long-minutes", type=float, default=10.0, help="length of the 360p file")
    parser.add_argument("--hd-seconds", type=float, default=30.0, help="length of the 1080p file")
    parser.add_argument("--seek-modes", nargs="+", default=["exact", "keyframe"], choices=["exact", "keyframe"])
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--backends", nargs="+", default=None, help="default: all installed")
    parser.add_argument("--repeats", type=int, default=3, help="clips per configuration (median reported)")
    parser.add_argument("--worker", nargs=5, metavar=("PATH", "BACKEND", "SEEK", "T", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        path, backend, seek_mode, t, repeats = args.worker
        print(json.dumps(worker(path, backend, seek_mode, int(t), int(repeats))))
        return 0

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from data.decode import available_backends

    backends = args.backends or available_backends()
    args.workdir.mkdir(parents=True, exist_ok=True)
    files = [
        ("360p, %g min" % args.long_minutes, args.workdir / f"long_360p_{args.long_minutes:g}min.mp4", 640, 360, args.long_minutes * 60),
        ("1080p, %g s" % args.hd_seconds, args.workdir / f"hd_1080p_{args.hd_seconds:g}s.mp4", 1920, 1080, args.hd_seconds),
    ]
    for label, path, w, h, seconds in files:
        if not path.exists():
            start = time.perf_counter()
            make_h264(path, w, h, seconds)
            logger.info("encoded %s (%s) in %.1f s", path, label, time.perf_counter() - start)

    print(f"machine: {os.cpu_count()} CPU cores; {args.repeats} clip(s) per row, median; open + probe + decode per clip")
    print()
    print("| file | backend | seek | T | s/clip | frames/s | peak RSS MiB (growth while decoding) |")
    print("|---|---|---|---|---|---|---|")
    totals: dict[tuple[str, str], float] = {}
    for label, path, *_ in files:
        for seek_mode in args.seek_modes:
            for t in args.frames:
                for backend in backends:
                    r = run_config(path, backend, seek_mode, t, args.repeats)
                    key = (backend, seek_mode)
                    totals[key] = totals.get(key, 0.0) + r["s_per_clip"]
                    print(
                        f"| {label} | {backend} | {seek_mode} | {t} | {r['s_per_clip']:.3f} | "
                        f"{t / r['s_per_clip']:.1f} | {r['peak_rss_mib']:.0f} ({r['decode_rss_mib']:.0f}) |",
                        flush=True,
                    )
    print()
    for (backend, seek_mode), total in sorted(totals.items()):
        print(f"{backend} ({seek_mode}): sum of s/clip over all rows {total:.2f} s")
    for seek_mode in args.seek_modes:
        ranked = sorted((total, b) for (b, m), total in totals.items() if m == seek_mode)
        print(f"fastest with seek={seek_mode}: {ranked[0][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
