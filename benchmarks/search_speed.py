"""Library search speed: FAISS index types on clustered vectors, and indexing throughput.

Part 1 (``--sizes``): N random-but-clustered 512-d unit vectors (``--clusters`` Gaussian
clusters around random unit centres, like embeddings of a real library), queries drawn
the same way (not in the database). For each index type (Flat, HNSW32, IVF-SQ8 as
chosen by ``index.vectors.ivf_nlist``), all wrapped in ``IDMap2`` with inner product as
the library uses them:
  * build time (training included),
  * single-query latency p50/p99 (``--queries`` queries one at a time),
  * batched latency per query p50/p99 (batches of ``--batch``),
  * recall@10 against exact search (IndexFlatIP).
Part 2 (``--index-videos``): indexing throughput (segments/s) of ``index.build`` on the
CPU with random models: the test-size model and a VideoMamba-Ti-shaped one.

Run::

    python benchmarks/search_speed.py                       # 10k and 100k, indexing throughput
    python benchmarks/search_speed.py --sizes 10000 100000 1000000   # 1M too (long on 2 cores)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

logger = logging.getLogger("search_speed")


def clustered_vectors(n: int, dim: int, clusters: int, rng: np.random.Generator, spread: float = 0.6) -> np.ndarray:
    """``n`` unit vectors around ``clusters`` random unit centres (centres fixed by the rng's first draw)."""
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        labels = rng.integers(0, clusters, m)
        noise = rng.standard_normal((m, dim)).astype(np.float32) * (spread / np.sqrt(dim))
        block = centres[labels] + noise
        out[start:start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def bench_index(factory: str, data: np.ndarray, queries: np.ndarray, truth: np.ndarray, batch: int) -> dict:
    from index.vectors import VectorConfig, VectorIndex

    ids = np.arange(len(data), dtype=np.int64)
    t0 = time.perf_counter()
    index = VectorIndex.build(data.shape[1], factory, ids, data, VectorConfig(hnsw_ef_search=64, ivf_nprobe=16))
    build_s = time.perf_counter() - t0
    import faiss

    single = []
    found = np.empty((len(queries), 10), dtype=np.int64)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # one query: OpenMP fan-out only adds overhead (measured: 1 ms vs 4-10 ms)
    for i, q in enumerate(queries):
        t = time.perf_counter()
        _, found[i:i + 1] = index.search(q[None], 10)
        single.append((time.perf_counter() - t) * 1e3)
    faiss.omp_set_num_threads(threads)
    batched = []
    for start in range(0, len(queries), batch):
        chunk = queries[start:start + batch]
        t = time.perf_counter()
        index.search(chunk, 10)
        batched.append((time.perf_counter() - t) * 1e3 / len(chunk))
    recall = float(np.mean([len(set(found[i]) & set(truth[i])) / 10 for i in range(len(queries))]))
    return {"factory": index.factory, "build_s": build_s, "single_p50": np.percentile(single, 50),
            "single_p99": np.percentile(single, 99), "batch_p50": np.percentile(batched, 50),
            "batch_p99": np.percentile(batched, 99), "recall": recall}


def run_search(sizes: list[int], dim: int, clusters: int, n_queries: int, batch: int, seed: int) -> list[dict]:
    import faiss

    from index.vectors import MIN_TRAIN_PER_LIST, ivf_nlist

    rows = []
    for n in sizes:
        rng = np.random.default_rng(seed)
        data = clustered_vectors(n + n_queries, dim, clusters, rng)
        data, queries = data[:n], data[n:]
        exact = faiss.IndexFlatIP(dim)
        exact.add(data)
        _, truth = exact.search(queries, 10)
        nlist = min(ivf_nlist(n), 2 ** int(np.log2(n // MIN_TRAIN_PER_LIST)))  # trainable at this N
        for factory in ("IDMap2,Flat", "IDMap2,HNSW32", f"IDMap2,IVF{nlist},SQ8"):
            logger.info("N=%d %s ...", n, factory)
            row = bench_index(factory, data, queries, truth, batch)
            row["n"] = n
            rows.append(row)
            logger.info("%s", row)
    return rows


def run_indexing(videos: int, seconds: float, workers: int, ti_videos: int) -> list[dict]:
    """segments/s of build_library on generated 64x64 videos with 2 random models (the Ti-shaped one
    on the first ``ti_videos`` videos only: its pure-PyTorch CPU scan takes seconds per clip)."""
    from data.segments import SegmentationConfig
    from index.build import BuildConfig, build_library
    from index.encoder import Encoder, EncoderConfig
    from index.store import LibraryConfig, LibraryStore
    from tests.index_fixtures import pattern_video, tiny_checkpoint
    from encoders.checkpoint import save_model
    from encoders.dual_encoder import DualEncoderConfig, create_dual_encoder

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(videos):
            pattern_video(root / "lib" / f"v{i:03d}.mp4", seed=i, seconds=seconds, fps=8, size=64)
        models = {"tiny (depth 2, width 32, 4x32px)": tiny_checkpoint(root / "tiny.pt")}
        ti = DualEncoderConfig(video_tower="videomamba", video_encoder="videomamba_tiny", num_frames=8, img_size=224,
                               embed_dim=512)
        models["VideoMamba-Ti (24x192, 8x224px)"] = save_model(create_dual_encoder(ti), root / "ti.pt")
        for folder in ("lib_ti",):
            (root / folder).mkdir()
            for i in range(ti_videos):
                os.link(root / "lib" / f"v{i:03d}.mp4", root / folder / f"v{i:03d}.mp4")
        for (name, path), lib in zip(models.items(), ("lib", "lib_ti")):
            encoder = Encoder(EncoderConfig(checkpoint=str(path), device="cpu", batch_size=16))
            cfg = LibraryConfig(db=str(root / f"{path.stem}.db"))
            with LibraryStore(cfg, writable=True) as store:
                summary = build_library(store, encoder, [str(root / lib)],
                                        BuildConfig(segmentation=SegmentationConfig(window_s=2.0), workers=workers,
                                                    progress=False))
            rows.append({"model": name, "segments": summary.segments, "seconds": summary.seconds,
                         "segments_per_s": summary.segments_per_s, "workers": workers})
            logger.info("%s", rows[-1])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=256)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index-videos", type=int, default=16, help="videos for the throughput run (0 = skip)")
    parser.add_argument("--video-seconds", type=float, default=10.0)
    parser.add_argument("--ti-videos", type=int, default=2, help="videos for the Ti-shaped model")
    parser.add_argument("--workers", type=int, default=0, help="decoder processes (0 = inline; spawn costs ~3 s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("index").setLevel(logging.WARNING)
    import faiss
    import torch

    print(f"CPU threads: faiss {faiss.omp_get_max_threads()}, torch {torch.get_num_threads()}, "
          f"cores {os.cpu_count()}; faiss {faiss.__version__}")
    rows = run_search(args.sizes, args.dim, args.clusters, args.queries, args.batch, args.seed)
    print("\nsingle queries with 1 faiss thread, batches with all")
    print("\n| N | index | build s | single p50 ms | single p99 ms | batched p50 ms/q | batched p99 ms/q | recall@10 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:,} | {r['factory']} | {r['build_s']:.1f} | {r['single_p50']:.3f} | {r['single_p99']:.3f} | "
              f"{r['batch_p50']:.4f} | {r['batch_p99']:.4f} | {r['recall']:.3f} |")
    if args.index_videos:
        rows = run_indexing(args.index_videos, args.video_seconds, args.workers, args.ti_videos)
        print("\n| model (random weights, CPU) | segments | seconds | segments/s |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r['model']} | {r['segments']} | {r['seconds']:.1f} | {r['segments_per_s']:.1f} |")


if __name__ == "__main__":
    main()
