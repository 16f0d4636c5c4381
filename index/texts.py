"""Caption corpora for video-to-text search.

    python -m index.texts add FILE [--db library.db] [--model CKPT] [--source NAME] [--format auto|lines|jsonl|msrvtt]

Formats:
* ``lines``: one caption per line (blank lines skipped);
* ``jsonl``: one object per line with ``caption``/``text``/``sentence`` (a string) or
  ``captions`` (a list), and optionally ``video_id``/``id`` (kept as the external id);
* ``msrvtt``: ``MSRVTT_data.json`` (``{"sentences": [{"video_id", "caption"}, ...]}``).
``auto`` picks ``msrvtt`` for ``.json``, ``jsonl`` for ``.jsonl``, else ``lines``.

Captions are cleaned (NFC, whitespace collapsed); captions longer than
``MAX_CAPTION_CHARS`` or with control characters are skipped with a warning. A
caption already in the same source is not added twice, so re-running ``add`` is
harmless. The source defaults to the file name.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

from sqlalchemy import select

from index.encoder import DEFAULT_MODEL_PATH, Encoder, EncoderConfig, default_model_path
from index.errors import LibraryError
from index.schema import SPACE_TEXTS, TextEntry, embedding_to_bytes
from index.store import LibraryConfig, LibraryStore

logger = logging.getLogger(__name__)

MAX_CAPTION_CHARS = 1000
_BATCH = 4096


@dataclass(frozen=True)
class Caption:
    text: str
    external_id: str | None = None


@dataclass
class TextsSummary:
    read: int = 0
    added: int = 0
    duplicates: int = 0
    skipped: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def clean_caption(text: str) -> str | None:
    """NFC, whitespace collapsed; None for empty, overlong or control-character captions."""
    text = " ".join(unicodedata.normalize("NFC", text).split())
    if not text or len(text) > MAX_CAPTION_CHARS:
        return None
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text):
        return None
    return text


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".json": "msrvtt", ".jsonl": "jsonl"}.get(suffix, "lines")


def read_captions(path: str | Path, fmt: str = "auto") -> Iterator[Caption | None]:
    """Captions of a corpus file (None for an unusable entry, counted as skipped).

    Raises:
        ValueError: malformed file (with file and line).
    """
    path = Path(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "msrvtt":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error
        if not isinstance(data, dict) or not isinstance(data.get("sentences"), list):
            raise ValueError(f"{path}: no 'sentences' list (expected MSR-VTT MSRVTT_data.json)")
        for item in data["sentences"]:
            if isinstance(item, dict) and isinstance(item.get("caption"), str):
                vid = item.get("video_id")
                yield Caption(item["caption"], None if vid is None else str(vid))
            else:
                yield None
        return
    with open(path, encoding="utf-8", errors="strict") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            if fmt == "lines":
                yield Caption(line)
                continue
            try:
                item = json.loads(line)
            except ValueError as error:
                raise ValueError(f"{path}:{number}: not a JSON object ({error})") from error
            if not isinstance(item, dict):
                raise ValueError(f"{path}:{number}: not a JSON object")
            vid = next((item[k] for k in ("video_id", "id") if item.get(k) is not None), None)
            vid = None if vid is None else str(vid)
            texts = item.get("captions")
            if isinstance(texts, list):
                for text in texts:
                    yield Caption(text, vid) if isinstance(text, str) else None
                continue
            text = next((item[k] for k in ("caption", "text", "sentence") if isinstance(item.get(k), str)), None)
            yield Caption(text, vid) if text is not None else None


def add_texts(store: LibraryStore, encoder: Encoder, captions: Iterator[Caption | None], source: str) -> TextsSummary:
    """Encode and add captions under ``source`` (duplicates within the source skipped).

    Raises:
        ModelMismatchError: the library was built with another model.
    """
    store.check_model(encoder.info)
    summary = TextsSummary()
    if store.library_model() is None:
        with store.transaction() as tx:
            store.set_model(tx, encoder.info)
    with store.session() as session:
        known = set(session.scalars(select(TextEntry.text).where(TextEntry.source == source)))
    batch: list[Caption] = []

    def flush() -> None:
        if not batch:
            return
        vectors = encoder.encode_texts([c.text for c in batch])
        with store.transaction() as tx:
            rows = [TextEntry(source=source, external_id=c.external_id, text=c.text,
                              embedding=embedding_to_bytes(v)) for c, v in zip(batch, vectors)]
            tx.session.add_all(rows)
            tx.session.flush()
            for row, vector in zip(rows, vectors):
                tx.add_vector(SPACE_TEXTS, row.id, vector)
        summary.added += len(batch)
        batch.clear()

    for caption in captions:
        summary.read += 1
        text = clean_caption(caption.text) if caption is not None else None
        if text is None:
            summary.skipped += 1
            continue
        if text in known:
            summary.duplicates += 1
            continue
        known.add(text)
        batch.append(Caption(text, caption.external_id))
        if len(batch) >= _BATCH:
            flush()
    flush()
    store.save()
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints a JSON summary. Exit 0 ok, 2 refused."""
    parser = argparse.ArgumentParser(prog="python -m index.texts", description="Caption corpora of a library.")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add a caption corpus")
    add.add_argument("file")
    add.add_argument("--db", default="library.db")
    add.add_argument("--vectors-dir", default=None)
    add.add_argument("--model", default=None, help=f"checkpoint (default: the library's, else {DEFAULT_MODEL_PATH})")
    add.add_argument("--device", default=None)
    add.add_argument("--source", default=None, help="corpus name (default: the file name)")
    add.add_argument("--format", default="auto", choices=("auto", "lines", "jsonl", "msrvtt"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        path = Path(args.file)
        if not path.is_file():
            raise FileNotFoundError(f"no such caption file: {path}")
        with LibraryStore(LibraryConfig(db=args.db, vectors_dir=args.vectors_dir), writable=True) as store:
            model = args.model
            if model is None:
                recorded = store.library_model()
                model = recorded.checkpoint_path if recorded and Path(recorded.checkpoint_path).is_file() \
                    else default_model_path()
            encoder = Encoder(EncoderConfig(checkpoint=model, device=args.device))
            summary = add_texts(store, encoder, read_captions(path, args.format), args.source or path.name)
    except (LibraryError, FileNotFoundError, ValueError, UnicodeDecodeError) as error:
        logger.error("%s", error)
        print(json.dumps({"error": str(error), "error_type": type(error).__name__}))
        return 2
    logger.info("captions: %s", summary.to_dict())
    print(json.dumps(summary.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
