"""Logging set-up and metric sinks of a training run (CSV file, optional TensorBoard).

Only rank 0 writes. ``metrics.csv`` has one row per logged event with the columns
``step``, ``kind`` ("train" or "eval") and the metric names seen so far; when a new
metric name appears the file is rewritten with the wider header, so every row of the
final file is complete for the columns it had.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

logger = logging.getLogger(__name__)


def configure_logging(level: str, rank: int) -> None:
    """Root logging to stderr: the configured level on rank 0, warnings only elsewhere;
    each line says the rank."""
    numeric = getattr(logging, level.upper(), None)
    if not isinstance(numeric, int):
        raise ValueError(f"unknown logging level {level!r}")
    logging.basicConfig(
        level=numeric if rank == 0 else logging.WARNING, stream=sys.stderr, force=True,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


class MetricsLogger:
    """Writes scalar metrics to ``metrics.csv`` and TensorBoard (each optional).

    Args:
        run_dir: the run directory.
        csv_enabled: write ``run_dir/metrics.csv`` (appends across resumes).
        tensorboard_enabled: write ``run_dir/tensorboard`` if the package is importable.
        enabled: False on ranks other than 0 (then nothing is written).
    """

    def __init__(self, run_dir: Path, csv_enabled: bool = True, tensorboard_enabled: bool = True,
                 enabled: bool = True) -> None:
        self.enabled = enabled
        self.csv_path: Optional[Path] = run_dir / "metrics.csv" if (enabled and csv_enabled) else None
        self._rows: list[dict[str, Any]] = []
        self._columns: list[str] = ["step", "kind"]
        if self.csv_path is not None and self.csv_path.is_file():
            with self.csv_path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                self._columns = list(reader.fieldnames or self._columns)
                self._rows = list(reader)
        self._writer = None
        if enabled and tensorboard_enabled:
            if importlib.util.find_spec("tensorboard") is None:
                logger.info("TensorBoard logging is off: the 'tensorboard' package is not installed")
            else:
                from torch.utils.tensorboard import SummaryWriter
                self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
                logger.info("TensorBoard logs in %s", run_dir / "tensorboard")

    def truncate_after(self, step: int) -> None:
        """Forget CSV rows after ``step`` (a resumed run repeats the steps after its checkpoint)."""
        if self.csv_path is None:
            return
        kept = [row for row in self._rows if int(row["step"]) <= step]
        if len(kept) != len(self._rows):
            self._rows = kept
            self._rewrite()

    def log(self, step: int, kind: str, metrics: Mapping[str, float]) -> None:
        """Record ``metrics`` at ``step`` under ``kind`` ("train" / "eval")."""
        if not self.enabled:
            return
        if self._writer is not None:
            for name, value in metrics.items():
                self._writer.add_scalar(f"{kind}/{name}", float(value), step)
        if self.csv_path is None:
            return
        row = {"step": step, "kind": kind, **{k: f"{float(v):.6g}" for k, v in metrics.items()}}
        new_columns = [k for k in row if k not in self._columns]
        self._rows.append(row)
        if new_columns:
            self._columns.extend(new_columns)
            self._rewrite()
        else:
            with self.csv_path.open("a", newline="", encoding="utf-8") as handle:
                csv.DictWriter(handle, fieldnames=self._columns).writerow(row)

    def _rewrite(self) -> None:
        assert self.csv_path is not None
        temporary = self.csv_path.with_suffix(".csv.tmp")
        with temporary.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self._columns)
            writer.writeheader()
            writer.writerows(self._rows)
        temporary.replace(self.csv_path)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


__all__ = ["MetricsLogger", "configure_logging"]
