"""Typed configuration of a contrastive training run: defaults, YAML overlay, dotted overrides.

A run's config is a :class:`TrainConfig` with six sections; every field has a default::

    model    DualEncoderConfig   (encoders.dual_encoder)
    data     DataConfig          which dataset, clips, batches, loader workers
    optim    OptimConfig         AdamW, warmup + cosine, gradient clipping
    train    TrainLoopConfig     steps, seed, precision, run directory, checkpoints, resume
    eval     EvalConfig          periodic held-out evaluation
    logging  LoggingConfig       log level, CSV, TensorBoard, progress bar

Resolution order: dataclass defaults, then the YAML file (a mapping of section ->
mapping of field -> value; sections and fields may be left out), then command-line
overrides ``--section.field value`` (or ``--section.field=value``). Fields typed as
dicts (``model.text``, ``model.video_overrides``) take a YAML mapping as a whole or
one key at a time: ``--model.text.width 64``.

Values from the command line are parsed as YAML scalars (``true``, ``null``, ``3e-4``,
``[0.9, 0.98]``) and converted to the field's type; string fields take the text as
given. Unknown sections or fields and values of the wrong type raise
:class:`ConfigError` with the full dotted key and the valid choices.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml

from encoders.dual_encoder import DualEncoderConfig


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key."""


@dataclass
class DataConfig:
    """Which data to train and evaluate on, and how to batch it.

    Attributes:
        dataset: "synthetic" (rendered in memory by ``data.synthetic``), "pairs"
            (JSONL/CSV of video path + caption) or "msrvtt" (standard file layout).
        root: MSR-VTT root directory ("msrvtt"); base directory for relative video
            paths ("pairs", default: each file's directory).
        train_file, eval_file: pairs files ("pairs").
        msrvtt_train_split: "9k" or "7k".
        synthetic_train_videos, synthetic_eval_videos: clips in the synthetic splits.
        synthetic_seed, synthetic_eval_seed: the two splits use different seeds, so no
            scene is shared between them.
        synthetic_min_events, synthetic_max_events: events per synthetic clip.
        train_sampling: frame sampling for training clips ("random" or "middle");
            evaluation always uses "middle".
        batch_size: clips per optimiser step on EACH process (global batch =
            batch_size x world size).
        eval_batch_size: clips or captions per encoding batch in evaluation.
        num_workers: DataLoader worker processes per rank (0 = in the main process).
        eval_captions: "all" = every caption of each evaluation video is a query
            (video-to-text counts the best-ranked one); "first" = one per video.
        max_bad_fraction: stop when more than this fraction of training items cannot be
            decoded (they are skipped and reported otherwise).
    """

    dataset: str = "synthetic"
    root: Optional[str] = None
    train_file: Optional[str] = None
    eval_file: Optional[str] = None
    msrvtt_train_split: str = "9k"
    synthetic_train_videos: int = 2000
    synthetic_eval_videos: int = 200
    synthetic_seed: int = 0
    synthetic_eval_seed: int = 1
    synthetic_min_events: int = 2
    synthetic_max_events: int = 3
    train_sampling: str = "random"
    batch_size: int = 32
    eval_batch_size: int = 64
    num_workers: int = 4
    eval_captions: str = "all"
    max_bad_fraction: float = 0.2


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay, and gradient clipping.

    Attributes:
        lr: peak learning rate (reached after ``warmup_steps``).
        min_lr_ratio: the cosine ends at ``lr * min_lr_ratio``.
        weight_decay: applied to weight matrices only; never to norms, biases,
            positional embeddings, cls token, ``A_log``/``D`` or the temperature.
        betas, eps: AdamW moments.
        warmup_steps: linear warmup from 0.
        grad_clip: max global gradient norm (0 or less: no clipping).
    """

    lr: float = 3e-4
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 100
    grad_clip: float = 1.0


@dataclass
class TrainLoopConfig:
    """Length, precision, where outputs go, checkpoints and resume.

    Attributes:
        steps: total optimiser steps of the run (the schedule's length).
        seed: seeds python, numpy and torch (plus the rank) and the data order.
        device: "auto" (CUDA if available), "cpu" or "cuda".
        precision: "auto" (bf16 autocast on CUDA, fp32 on CPU), "bf16" or "fp32".
        out_dir, run_name: the run directory is ``out_dir/run_name``.
        checkpoint_every: save ``checkpoints/step_{N:08d}.pt`` and ``last.pt`` every N steps
            (0: only at the end).
        keep_checkpoints: how many ``step_*`` files to keep (0: all).
        resume: "auto" (continue from ``last.pt`` in the run directory if there is one),
            "none" (start fresh; refuse a run directory that has checkpoints), or a
            checkpoint path.
        stop_after_steps: end the process after this many steps of the schedule, with a
            checkpoint, as if preempted (resuming continues the same schedule).
        log_every: steps between log lines / CSV rows.
    """

    steps: int = 1000
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    out_dir: str = "runs"
    run_name: str = "contrastive"
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    resume: str = "auto"
    stop_after_steps: Optional[int] = None
    log_every: int = 10


@dataclass
class EvalConfig:
    """Held-out retrieval evaluation during training.

    Attributes:
        every: evaluate every N steps (0: never during training).
        at_end: evaluate once more after the last step.
        postprocess: "none", "dsl" or "qbnorm" in addition to the raw scores
            ("qbnorm" uses the training captions as the query bank).
        max_videos: evaluate on at most this many videos (None: all).
    """

    every: int = 500
    at_end: bool = True
    postprocess: str = "none"
    max_videos: Optional[int] = None


@dataclass
class LoggingConfig:
    """Logs of a run (all on rank 0 only).

    Attributes:
        level: Python logging level name.
        csv: write ``metrics.csv`` in the run directory.
        tensorboard: write TensorBoard events to ``tensorboard/`` if the
            ``tensorboard`` package is importable (otherwise a log line says it is off).
        progress: tqdm progress bar.
    """

    level: str = "INFO"
    csv: bool = True
    tensorboard: bool = True
    progress: bool = True


@dataclass
class TrainConfig:
    """The whole run configuration (see module doc)."""

    model: DualEncoderConfig = field(default_factory=DualEncoderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (tuples become lists), loadable by :func:`config_from_dict`."""
        return _plain(dataclasses.asdict(self))

    def validate(self) -> None:
        """Check choices that span fields; raise :class:`ConfigError`."""
        choices = {
            "data.dataset": (self.data.dataset, ("synthetic", "pairs", "msrvtt")),
            "data.train_sampling": (self.data.train_sampling, ("random", "middle")),
            "data.eval_captions": (self.data.eval_captions, ("all", "first")),
            "data.msrvtt_train_split": (self.data.msrvtt_train_split, ("9k", "7k")),
            "train.device": (self.train.device, ("auto", "cpu", "cuda")),
            "train.precision": (self.train.precision, ("auto", "bf16", "fp32")),
            "eval.postprocess": (self.eval.postprocess, ("none", "dsl", "qbnorm")),
        }
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"{key} must be one of {allowed}, got {value!r}")
        positive = {"train.steps": self.train.steps, "data.batch_size": self.data.batch_size,
                    "data.eval_batch_size": self.data.eval_batch_size, "train.log_every": self.train.log_every}
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"{key} must be >= 1, got {value}")
        if self.data.batch_size < 2:
            raise ConfigError("data.batch_size must be >= 2 (contrastive learning needs negatives)")
        if self.data.dataset == "pairs" and not self.data.train_file:
            raise ConfigError("data.dataset 'pairs' needs data.train_file")
        if self.data.dataset == "msrvtt" and not self.data.root:
            raise ConfigError("data.dataset 'msrvtt' needs data.root")
        if self.train.stop_after_steps is not None and self.train.stop_after_steps < 1:
            raise ConfigError("train.stop_after_steps must be >= 1 or null")
        try:
            self.model.validate()
        except ValueError as error:
            raise ConfigError(f"model: {error}") from error


# ------------------------------------------------------------------ conversion


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, from_text: bool) -> Any:
    """``value`` as type ``tp``; ``from_text``: value is a command-line string."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if value is None or (from_text and str(value).strip().lower() in ("null", "none", "~")):
            if type(None) in args:
                return None
            raise ConfigError(f"{key} may not be null")
        errors = []
        for member in members:
            try:
                return _convert(value, member, key, from_text)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {members}")
    if tp is str:
        if from_text:
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    parsed = yaml.safe_load(value) if from_text and isinstance(value, str) else value
    if tp is bool:
        if isinstance(parsed, bool):
            return parsed
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(parsed, int) and not isinstance(parsed, bool):
            return parsed
        if isinstance(parsed, float) and parsed.is_integer():
            return int(parsed)
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(parsed, str):  # YAML reads "3e-4" (no dot) as a string
            try:
                return float(parsed)
            except ValueError:
                pass
        if isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
            return float(parsed)
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if origin is tuple:
        if isinstance(parsed, str) and from_text:
            parsed = [yaml.safe_load(part) for part in parsed.split(",")]
        if not isinstance(parsed, (list, tuple)) or len(parsed) != len(args):
            raise ConfigError(f"{key} must be a list of {len(args)} values, got {value!r}")
        return tuple(_convert(v, a, f"{key}[{i}]", False) for i, (v, a) in enumerate(zip(parsed, args)))
    if origin is dict or tp is dict:
        if not isinstance(parsed, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(parsed)
    if tp is Any:
        return parsed
    raise ConfigError(f"{key}: unsupported field type {_type_name(tp)}")


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _section_from_mapping(cls: type, values: Mapping[str, Any], prefix: str, base: Any = None) -> Any:
    """Instance of dataclass ``cls``: ``base`` (or defaults) updated with ``values``."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{prefix} must be a mapping, got {values!r}")
    types_by_name = _fields(cls)
    unknown = sorted(set(values) - set(types_by_name))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(f'{prefix}.{k}' for k in unknown)}; "
                          f"valid: {', '.join(sorted(types_by_name))}")
    updates = {}
    for name, value in values.items():
        tp = types_by_name[name]
        if dataclasses.is_dataclass(tp):
            updates[name] = _section_from_mapping(tp, value, f"{prefix}.{name}",
                                                  getattr(base, name) if base is not None else None)
        elif (typing.get_origin(tp) is dict or tp is dict) and isinstance(value, Mapping) and base is not None:
            # A mapping overlays a dict field key by key (keeps the defaults it does not name).
            updates[name] = {**getattr(base, name), **dict(value)}
        else:
            updates[name] = _convert(value, tp, f"{prefix}.{name}", from_text=False)
    if base is not None:
        kept = {k: getattr(base, k) for k in types_by_name if k not in updates}
        return cls(**{**kept, **updates})
    return cls(**updates)


def config_from_dict(values: Mapping[str, Any], base: Optional[TrainConfig] = None) -> TrainConfig:
    """A :class:`TrainConfig` from nested ``{section: {field: value}}`` over ``base`` (or the defaults)."""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"a config must be a mapping of sections, got {type(values).__name__}")
    return _section_from_mapping(TrainConfig, values, "config", base or TrainConfig())


def load_config_file(path: str | Path, base: Optional[TrainConfig] = None) -> TrainConfig:
    """Overlay the YAML file ``path`` on ``base`` (or the defaults)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from error
    try:
        return config_from_dict(values or {}, base)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from error


def parse_override_args(argv: Sequence[str]) -> list[tuple[str, str]]:
    """``["--a.b", "1", "--c.d=x"]`` -> ``[("a.b", "1"), ("c.d", "x")]``."""
    pairs: list[tuple[str, str]] = []
    position = 0
    while position < len(argv):
        token = argv[position]
        if not token.startswith("--") or len(token) <= 2:
            raise ConfigError(f"expected --section.key VALUE, got {token!r}")
        key = token[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            position += 1
        else:
            if position + 1 >= len(argv):
                raise ConfigError(f"--{key} needs a value")
            value = argv[position + 1]
            position += 2
        if "." not in key:
            raise ConfigError(f"--{key}: overrides name a section and a key, e.g. --optim.lr 1e-4")
        pairs.append((key, value))
    return pairs


def apply_overrides(config: TrainConfig, overrides: Sequence[tuple[str, str]]) -> TrainConfig:
    """Apply dotted ``(key, text value)`` overrides; returns a new config."""
    values = config.to_dict()
    for key, text in overrides:
        parts = key.split(".")
        owner_cls: type = TrainConfig
        node: Any = values
        for depth, part in enumerate(parts):
            if owner_cls is None:  # inside a dict field: any key, YAML-typed value
                if depth == len(parts) - 1:
                    node[part] = yaml.safe_load(text)
                else:
                    node = node.setdefault(part, {})
                    if not isinstance(node, dict):
                        raise ConfigError(f"--{key}: {'.'.join(parts[:depth + 1])} is not a mapping")
                continue
            types_by_name = _fields(owner_cls)
            if part not in types_by_name:
                where = ".".join(parts[:depth]) or "config"
                raise ConfigError(f"unknown key --{key}: {where} has no {part!r}; "
                                  f"valid: {', '.join(sorted(types_by_name))}")
            tp = types_by_name[part]
            if depth == len(parts) - 1:
                if dataclasses.is_dataclass(tp):
                    raise ConfigError(f"--{key} is a section; set its keys, e.g. --{key}.{next(iter(types_by_name))}")
                node[part] = _convert(text, tp, key, from_text=True)
            elif dataclasses.is_dataclass(tp):
                owner_cls, node = tp, node[part]
            elif typing.get_origin(tp) is dict or tp is dict:
                owner_cls, node = None, node.setdefault(part, {})
            else:
                raise ConfigError(f"--{key}: {'.'.join(parts[:depth + 1])} is a {_type_name(tp)}, not a section")
    return config_from_dict(values, TrainConfig())


def resolve_config(config_file: Optional[str | Path], override_argv: Sequence[str] = ()) -> TrainConfig:
    """Defaults, then ``config_file`` (if given), then ``--section.key value`` overrides; validated."""
    config = load_config_file(config_file) if config_file else TrainConfig()
    config = apply_overrides(config, parse_override_args(override_argv))
    config.validate()
    return config


def save_config(config: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (reloadable with :func:`load_config_file`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    return path


__all__ = [
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LoggingConfig",
    "OptimConfig",
    "TrainConfig",
    "TrainLoopConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config_file",
    "parse_override_args",
    "resolve_config",
    "save_config",
]
