"""Write a serving copy of a checkpoint: model and config only, optionally in half precision.

    python -m training.export --checkpoint runs/NAME/checkpoints/last.pt --out models/demo.pt --dtype float16

The output is a normal dual-encoder checkpoint (:func:`encoders.checkpoint.load_model`
reads it and casts the weights back to float32) without optimiser state; its ``extra``
keeps the source's evaluation results and step, and records the source file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from encoders.checkpoint import CheckpointError, model_from_payload, read_checkpoint, save_model

logger = logging.getLogger("training.export")

_DTYPES = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}


def export_model(source: str | Path, target: str | Path, dtype: str = "float16") -> Path:
    """Copy the model in ``source`` to ``target`` with weights in ``dtype``; returns ``target``."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    payload = read_checkpoint(source)
    model = model_from_payload(payload, str(source))
    extra = payload["extra"]
    kept = {key: extra[key] for key in ("step", "eval") if key in extra}
    train_state = extra.get("train_state")
    if isinstance(train_state, dict):
        kept.setdefault("step", train_state.get("progress", {}).get("step"))
        kept.setdefault("eval", train_state.get("last_eval", {}))
    kept.update(exported_from=str(Path(source).resolve()), weights_dtype=dtype)
    written = save_model(model, target, kept, weights_dtype=_DTYPES[dtype])
    logger.info("exported %s -> %s (%s, %.1f MB)", source, written, dtype, written.stat().st_size / 1e6)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default="float16")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        export_model(args.checkpoint, args.out, args.dtype)
    except (FileNotFoundError, CheckpointError) as error:
        logger.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
