"""Model-independent output of the evaluation: the results JSON file."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from training.retrieval_metrics import RetrievalResults

logger = logging.getLogger(__name__)

RESULTS_SCHEMA = "mambasearch.retrieval_results/v1"


def write_results_json(path: str | os.PathLike[str],
                       results: RetrievalResults | Mapping[str, RetrievalResults],
                       meta: Mapping[str, Any] | None = None) -> Path:
    """Write evaluation results (and what produced them) to ``path`` as JSON.

    The file is ``{"schema": RESULTS_SCHEMA, "created_utc": ISO-8601 str, "meta": meta,
    "results": {name: RetrievalResults.to_dict()}}``; a single ``RetrievalResults`` is
    stored under the name ``"results"``. ``meta`` (checkpoint, dataset, split, frames,
    ...) must be JSON-serialisable; ``pathlib.Path`` values are written as strings.
    The write is atomic (temporary file in the same directory, then ``os.replace``), so
    a crash never leaves a truncated file. Parent directories are created.

    Returns:
        The path written, as a ``Path``.

    Raises:
        TypeError: ``meta`` holds something JSON cannot encode.
    """
    named = {"results": results} if isinstance(results, RetrievalResults) else dict(results)
    for name, result in named.items():
        if not isinstance(result, RetrievalResults):
            raise TypeError(f"results[{name!r}] is {type(result).__name__}, not RetrievalResults")
    document = {
        "schema": RESULTS_SCHEMA,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "meta": dict(meta or {}),
        "results": {str(name): result.to_dict() for name, result in named.items()},
    }

    def encode_extra(value: Any) -> Any:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise TypeError(f"meta value of type {type(value).__name__} is not JSON-serialisable")

    text = json.dumps(document, indent=2, sort_keys=False, default=encode_extra, allow_nan=False)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text + "\n")
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    logger.info("wrote retrieval results to %s", target)
    return target


def read_results_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a file written by :func:`write_results_json`; refuse any other JSON.

    Raises:
        ValueError: the file is not a results file of schema ``RESULTS_SCHEMA``.
    """
    with open(path, encoding="utf-8") as stream:
        document = json.load(stream)
    if not isinstance(document, dict) or document.get("schema") != RESULTS_SCHEMA:
        raise ValueError(f"{path} is not a retrieval results file (schema {RESULTS_SCHEMA!r})")
    return document
