"""Retrieval evaluation of a saved dual encoder.

    python -m training.evaluate --checkpoint runs/NAME/model.pt --dataset msrvtt --root DATA/msrvtt \
        [--postprocess none|dsl|qbnorm] [--out results.json]

Datasets (``--root``):
    msrvtt     the 1k-A test split in the standard layout (``MSRVTT_JSFUSION_test.csv``,
               ``MSRVTT_data.json``, ``videos/all/``); QB-Norm's bank = training captions.
    pairs      ``--pairs-file`` (default ``ROOT/pairs.jsonl``) of video + caption rows; rows
               of the same video become several captions of one gallery item.
    synthetic  a directory written by ``python -m data.synthetic`` (``captions.jsonl``);
               ``--split`` test/train/all (default: test if present, else all); every
               paraphrase is a caption. QB-Norm's bank = its training-split captions.

Clips are read with "middle" sampling at the checkpoint's frame count and resolution.
Both directions are reported (R@1/5/10, MdR, MnR; ranks 1-based; video-to-text counts
the best-ranked correct caption). The table goes to stdout, logs to stderr, and the
JSON file (``training.evaluate_io`` schema) records the checkpoint, data and settings.
For synthetic data with forward/backward pairs it also reports ``order_pair_accuracy``:
the percentage of captions that score their own video strictly above the same frames
played backwards (an order-blind model ties and scores 0).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from data.msrvtt import MSRVTTLayout, load_train_records
from data.pairs import read_pairs
from encoders.checkpoint import CheckpointError, load_model
from training.datasets import disk_eval_set, limit_eval_set, synthetic_disk_records
from training.evaluate_io import write_results_json
from training.retrieval_eval import encode_eval_set, order_pair_accuracy, retrieval_results
from training.retrieval_metrics import format_results_table

logger = logging.getLogger("training.evaluate")


def query_bank(dataset: str, root: str, pairs_file: Optional[str], limit: int) -> list[str]:
    """Training captions for QB-Norm: MSR-VTT 9k captions, the synthetic train split, or
    for "pairs" the ``--bank-file`` rows."""
    if dataset == "msrvtt":
        records = load_train_records(MSRVTTLayout(root), "9k")
        return [c for r in records for c in r.captions][:limit]
    if dataset == "synthetic":
        records, _ = synthetic_disk_records(root, "train")
        return [c for r in records for c in r.captions][:limit]
    if pairs_file is None:
        raise ValueError("--postprocess qbnorm with --dataset pairs needs --bank-file (training pairs)")
    return [r.captions[0] for r in read_pairs(pairs_file)][:limit]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate",
                                     description="Text-video retrieval evaluation of a dual-encoder checkpoint.")
    parser.add_argument("--checkpoint", required=True, help="file written by training (model.pt or a step checkpoint)")
    parser.add_argument("--dataset", required=True, choices=("msrvtt", "pairs", "synthetic"))
    parser.add_argument("--root", required=True, help="dataset directory")
    parser.add_argument("--pairs-file", help="pairs dataset: JSONL/CSV file (default ROOT/pairs.jsonl)")
    parser.add_argument("--split", choices=("test", "train", "all"), help="synthetic dataset split")
    parser.add_argument("--captions", choices=("all", "first"), default="all",
                        help="use every caption of a video as a query, or only its first")
    parser.add_argument("--postprocess", choices=("none", "dsl", "qbnorm"), default="none",
                        help="also report scores after DSL or QB-Norm (raw scores are always reported)")
    parser.add_argument("--bank-file", help="pairs dataset + qbnorm: training pairs file for the query bank")
    parser.add_argument("--bank-size", type=int, default=5000, help="QB-Norm: at most this many bank captions")
    parser.add_argument("--max-videos", type=int, help="evaluate on the first N videos only")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-bf16", action="store_true", help="float32 on CUDA too")
    parser.add_argument("--out", help="write the results JSON here")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else torch.device(args.device)
    use_bf16 = device.type == "cuda" and not args.no_bf16
    try:
        model = load_model(args.checkpoint, map_location=device)
    except (FileNotFoundError, CheckpointError) as error:
        logger.error("%s", error)
        return 2
    started = time.perf_counter()
    eval_set = disk_eval_set(args.dataset, args.root, model.config, args.split, args.pairs_file, args.captions)
    eval_set = limit_eval_set(eval_set, args.max_videos)
    logger.info("%s: %d videos, %d captions; %d frames at %d px, %s", eval_set.name, len(eval_set.video_ids),
                len(eval_set.captions), model.config.num_frames, model.config.img_size,
                "bf16" if use_bf16 else "float32")
    encoded = encode_eval_set(model, eval_set, device, args.batch_size, args.num_workers, use_bf16,
                              show_progress=sys.stderr.isatty())
    bank = (query_bank(args.dataset, args.root, args.bank_file, args.bank_size)
            if args.postprocess == "qbnorm" else None)
    results = retrieval_results(model, encoded, [args.postprocess], bank, device, use_bf16)
    order_accuracy = None
    if encoded.twin is not None:
        order_accuracy = order_pair_accuracy(model.similarity(encoded.text_emb, encoded.video_emb),
                                             encoded.text_to_video, encoded.twin)
    seconds = time.perf_counter() - started
    print(format_results_table(results))
    if order_accuracy is not None:
        print(f"captions that score their video above its time reversal: {order_accuracy:.1f}%")
    if args.out:
        meta = {
            "checkpoint": str(Path(args.checkpoint).resolve()),
            "dataset": args.dataset,
            "root": str(Path(args.root).resolve()),
            "eval_set": eval_set.name,
            "num_videos": len(encoded.video_ids),
            "num_captions": int(encoded.text_emb.shape[0]),
            "skipped_videos": encoded.skipped_videos,
            "captions": args.captions,
            "num_frames": model.config.num_frames,
            "img_size": model.config.img_size,
            "sampling": "middle",
            "video_tower": model.config.video_tower,
            "pooling": model.config.pooling,
            "precision": "bf16" if use_bf16 else "float32",
            "device": str(device),
            "postprocess": args.postprocess,
            "qbnorm_bank_size": len(bank) if bank else 0,
            "order_pair_accuracy": order_accuracy,
            "seconds": round(seconds, 3),
        }
        write_results_json(args.out, results, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
