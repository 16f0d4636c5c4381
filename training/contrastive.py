"""Contrastive video-text training of a :class:`encoders.dual_encoder.DualEncoder`.

    python -m training.contrastive --config configs/synthetic_tiny.yaml [--section.key value ...]
    torchrun --nproc_per_node N -m training.contrastive --config FILE.yaml ...

Per step: a batch of (clip, caption) pairs on every rank, symmetric InfoNCE against the
global batch (:mod:`training.losses`), bf16 autocast on CUDA, AdamW with warmup + cosine
(:mod:`training.optim`), gradient clipping, temperature clamp. Periodic evaluation on the
held-out split (rank 0), checkpoints every ``train.checkpoint_every`` steps that resume
exactly (model, optimiser, scheduler, step, data position, every rank's RNG state).

Run directory ``train.out_dir/train.run_name``:
    config.yaml               resolved config of the latest start/resume
    checkpoints/step_N.pt     training checkpoints (loadable with encoders.checkpoint.load_model)
    checkpoints/last.pt       copy of the newest one (what resume: auto continues from)
    model.pt                  final model without optimiser state (for serving / evaluation)
    metrics.csv               train and eval metrics (rank 0); tensorboard/ if available
    summary.json              final step, first/last logged loss, eval results, and a
                              digest of every rank's weights (all equal if DDP stayed in sync)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, get_worker_info

from data.loader import BadSampleReport, VideoTextBatch, collate_video_text
from encoders.checkpoint import CheckpointError, read_checkpoint, save_model
from training.config import ConfigError, TrainConfig, resolve_config, save_config
from training.datasets import RetrievalEvalSet, build_eval_set, build_train_dataset, train_caption_bank
from training.distributed import (DistributedContext, all_gather_objects, all_reduce_mean, barrier,
                                  init_distributed, shutdown_distributed)
from encoders.dual_encoder import DualEncoder, create_dual_encoder
from training.losses import symmetric_infonce
from training.optim import build_optimizer, build_scheduler
from training.retrieval_eval import autocast_context, encode_eval_set, order_pair_accuracy, retrieval_results
from training.retrieval_metrics import RetrievalResults, format_results_table
from training.run_logging import MetricsLogger, configure_logging
from training.sampler import ResumableDistributedSampler, SeededItems
from training.train_state import TrainProgress, capture_rng_state, restore_rng_state, seed_everything

logger = logging.getLogger("training.contrastive")

# Config fields that may change between a checkpoint and its resumption.
_RESUMABLE_MODEL_CHANGES = ("grad_checkpointing", "video_pretrained")


def _init_loader_worker(worker_id: int) -> None:
    """One intra-op thread per worker and one decoder thread (workers are the parallelism)."""
    torch.set_num_threads(1)
    info = get_worker_info()
    inner = getattr(info.dataset, "inner", None) if info is not None else None
    decode = getattr(inner, "decode", None)
    if decode is not None and getattr(decode, "num_threads", None) == 0:
        inner.decode = replace(decode, num_threads=1)


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over every parameter and buffer (name, dtype, shape, bytes) in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def _results_to_metrics(results: dict[str, RetrievalResults]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for name, result in results.items():
        prefix = "" if name == "raw" else f"{name}_"
        for direction, short in ((result.text_to_video, "t2v"), (result.video_to_text, "v2t")):
            metrics[f"{prefix}{short}_r1"] = direction.r1
            metrics[f"{prefix}{short}_r5"] = direction.r5
            metrics[f"{prefix}{short}_r10"] = direction.r10
            metrics[f"{prefix}{short}_medr"] = direction.median_rank
            metrics[f"{prefix}{short}_meanr"] = direction.mean_rank
    return metrics


class ContrastiveTrainer:
    """One training run (one process of it). Build, then :meth:`run`."""

    def __init__(self, config: TrainConfig, context: DistributedContext) -> None:
        self.config = config
        self.context = context
        self.device = context.device
        precision = config.train.precision
        self.use_bf16 = precision == "bf16" or (precision == "auto" and self.device.type == "cuda")
        self.run_dir = Path(config.train.out_dir) / config.train.run_name
        self.checkpoint_dir = self.run_dir / "checkpoints"
        if context.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.run_dir / "config.yaml")
        barrier(context)

        # Identical initial weights on every rank, then per-rank training randomness.
        seed_everything(config.train.seed)
        self.model: DualEncoder = create_dual_encoder(config.model).to(self.device)
        seed_everything(config.train.seed + 1000 * context.rank)
        self.optimizer = build_optimizer(self.model, config.optim)
        self.scheduler = build_scheduler(self.optimizer, config.optim, config.train.steps)
        self.progress = TrainProgress()

        self.train_dataset = build_train_dataset(config.data, config.model)
        self.sampler = ResumableDistributedSampler(len(self.train_dataset), config.data.batch_size,
                                                   context.world_size, context.rank, seed=config.train.seed)
        workers = config.data.num_workers
        self.loader = DataLoader(
            SeededItems(self.train_dataset, config.train.seed), batch_size=config.data.batch_size,
            sampler=self.sampler, drop_last=True, num_workers=workers, collate_fn=collate_video_text,
            pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None, worker_init_fn=_init_loader_worker if workers > 0 else None,
            generator=torch.Generator().manual_seed(config.train.seed))
        self.bad_samples = BadSampleReport(max_bad_fraction=config.data.max_bad_fraction)
        logger.info("training data: %s, %d items, %d batches of %d x %d ranks per epoch",
                    config.data.dataset, len(self.train_dataset), self.sampler.batches_per_epoch,
                    config.data.batch_size, context.world_size)

        self.eval_set: Optional[RetrievalEvalSet] = None
        if context.is_main and (config.eval.every > 0 or config.eval.at_end):
            self.eval_set = build_eval_set(config.data, config.model, config.eval.max_videos)
            if self.eval_set is None:
                logger.info("no held-out split for dataset %r: evaluation is off", config.data.dataset)
            else:
                logger.info("evaluation set %s: %d videos, %d captions", self.eval_set.name,
                            len(self.eval_set.video_ids), len(self.eval_set.captions))
        self.metrics_log = MetricsLogger(self.run_dir, config.logging.csv, config.logging.tensorboard,
                                         enabled=context.is_main)
        self.last_eval: dict[str, Any] = {}
        self.loss_history: list[tuple[int, float]] = []

        self._resume()
        if context.is_distributed:
            self.ddp_model: nn.Module = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        else:
            self.ddp_model = self.model

    # ---------------------------------------------------------------- resume

    def _resume_path(self) -> Optional[Path]:
        choice = self.config.train.resume
        last = self.checkpoint_dir / "last.pt"
        if choice == "auto":
            return last if last.is_file() else None
        if choice == "none":
            if last.is_file():
                raise RuntimeError(f"{self.run_dir} already holds checkpoints; use train.resume auto, "
                                   "a checkpoint path, or another train.run_name")
            return None
        path = Path(choice)
        if not path.is_file():
            raise FileNotFoundError(f"train.resume: no checkpoint at {path}")
        return path

    def _resume(self) -> None:
        path = self._resume_path()
        if path is None:
            return
        payload = read_checkpoint(path)
        train_state = payload["extra"].get("train_state")
        if not isinstance(train_state, dict):
            raise CheckpointError(f"{path} holds a model but no training state; it cannot be resumed "
                                  "(start a new run with it as model.video_pretrained or evaluate it)")
        saved = {k: v for k, v in payload["config"].items() if k not in _RESUMABLE_MODEL_CHANGES}
        wanted = {k: v for k, v in self.config.model.to_dict().items() if k not in _RESUMABLE_MODEL_CHANGES}
        if saved != wanted:
            changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
            raise CheckpointError(f"cannot resume from {path}: model config differs in {', '.join(changed)}")
        self.model.load_state_dict(payload["state_dict"], strict=True)
        self.optimizer.load_state_dict(train_state["optimizer"])
        self.scheduler.load_state_dict(train_state["scheduler"])
        self.progress = TrainProgress.from_dict(train_state["progress"])
        self.last_eval = dict(train_state.get("last_eval", {}))
        self.loss_history = [tuple(x) for x in train_state.get("loss_history", [])]
        rng_states = train_state.get("rng", [])
        if train_state.get("world_size") == self.context.world_size and len(rng_states) == self.context.world_size:
            restore_rng_state(rng_states[self.context.rank])
        else:
            logger.warning("checkpoint was written by %s ranks, this job has %d: RNG streams are re-seeded, "
                           "so the continuation is not bit-identical", train_state.get("world_size"),
                           self.context.world_size)
            seed_everything(self.config.train.seed + 1000 * self.context.rank + self.progress.step)
        self.metrics_log.truncate_after(self.progress.step)
        logger.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.progress.step,
                    self.progress.epoch, self.progress.batch)

    # ----------------------------------------------------------------- saving

    def save_checkpoint(self) -> None:
        """Write ``step_N.pt`` and ``last.pt`` (rank 0) with every rank's RNG state."""
        rng_states = all_gather_objects(capture_rng_state(), self.context)
        if self.context.is_main:
            extra = {
                "train_state": {
                    "progress": self.progress.to_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "rng": rng_states,
                    "world_size": self.context.world_size,
                    "last_eval": self.last_eval,
                    "loss_history": [list(x) for x in self.loss_history],
                },
                "train_config": self.config.to_dict(),
            }
            path = save_model(self.model, self.checkpoint_dir / f"step_{self.progress.step:08d}.pt", extra)
            temporary = self.checkpoint_dir / ".last.pt.tmp"
            shutil.copyfile(path, temporary)
            os.replace(temporary, self.checkpoint_dir / "last.pt")
            keep = self.config.train.keep_checkpoints
            if keep > 0:
                for old in sorted(self.checkpoint_dir.glob("step_*.pt"))[:-keep]:
                    old.unlink()
        barrier(self.context)

    # ------------------------------------------------------------- evaluation

    def evaluate(self) -> None:
        """Retrieval metrics on the held-out split (rank 0; the other ranks wait)."""
        if self.context.is_main and self.eval_set is not None:
            started = time.perf_counter()
            encoded = encode_eval_set(self.model, self.eval_set, self.device, self.config.data.eval_batch_size,
                                      self.config.data.num_workers, self.use_bf16)
            postprocess = [self.config.eval.postprocess]
            bank = (train_caption_bank(self.config.data, self.config.model)
                    if self.config.eval.postprocess == "qbnorm" else None)
            results = retrieval_results(self.model, encoded, postprocess, bank, self.device, self.use_bf16)
            metrics = _results_to_metrics(results)
            order_accuracy = None
            if encoded.twin is not None:
                order_accuracy = order_pair_accuracy(DualEncoder.similarity(encoded.text_emb, encoded.video_emb),
                                                     encoded.text_to_video, encoded.twin)
                if order_accuracy is not None:
                    metrics["order_acc"] = order_accuracy
            self.metrics_log.log(self.progress.step, "eval", metrics)
            self.last_eval = {"step": self.progress.step, "dataset": self.eval_set.name,
                              "skipped_videos": len(encoded.skipped_videos), "order_pair_accuracy": order_accuracy,
                              "results": {k: v.to_dict() for k, v in results.items()}}
            logger.info("evaluation at step %d on %s (%.1f s):\n%s%s", self.progress.step, self.eval_set.name,
                        time.perf_counter() - started, format_results_table(results),
                        "" if order_accuracy is None else
                        f"\ncaptions that prefer their video over its time reversal: {order_accuracy:.1f}%")
        barrier(self.context)

    # ---------------------------------------------------------------- training

    def _batches(self) -> Iterator[VideoTextBatch]:
        """Batches from the saved data position on, epoch after epoch."""
        while True:
            self.sampler.set_position(self.progress.epoch, self.progress.batch)
            for batch in self.loader:
                yield batch
            self.progress.epoch += 1
            self.progress.batch = 0

    def _common_batch_size(self, local: int) -> int:
        """Smallest valid batch over ranks (items that failed to decode shrink a batch)."""
        if not self.context.is_distributed:
            return local
        count = torch.tensor([local], device=self.device)
        dist.all_reduce(count, op=dist.ReduceOp.MIN)
        return int(count.item())

    def train_step(self, batch: VideoTextBatch) -> dict[str, float]:
        """One optimiser step on ``batch``; returns this rank's loss terms and the grad norm."""
        video = batch.video.to(self.device, non_blocking=True)
        tokens = self.model.tokenize(batch.captions).to(self.device, non_blocking=True)
        with autocast_context(self.device, self.use_bf16):
            video_emb, text_emb = self.ddp_model(video, tokens)
        loss = symmetric_infonce(text_emb, video_emb, self.model.temperature(), self.context)
        if not torch.isfinite(loss.loss):
            raise FloatingPointError(f"non-finite loss {loss.loss.item()} at step {self.progress.step + 1}; "
                                     "lower optim.lr or check the input data")
        self.optimizer.zero_grad(set_to_none=True)
        loss.loss.backward()
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.config.optim.grad_clip
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, clip if clip > 0 else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.model.clamp_temperature_()
        return {"loss": loss.loss.detach(), "loss_t2v": loss.text_to_video, "loss_v2t": loss.video_to_text,
                "batch_acc": loss.accuracy, "grad_norm": grad_norm.detach()}

    def run(self) -> dict[str, Any]:
        """Train until ``train.steps`` (or ``train.stop_after_steps``); returns the summary."""
        cfg = self.config
        total = cfg.train.steps
        stop = min(total, cfg.train.stop_after_steps) if cfg.train.stop_after_steps else total
        self.model.train()
        progress_bar = None
        if self.context.is_main and cfg.logging.progress and self.progress.step < stop:
            from tqdm import tqdm
            progress_bar = tqdm(total=stop, initial=self.progress.step, desc="train", unit="step",
                                dynamic_ncols=True, file=sys.stderr)
        window: dict[str, list[torch.Tensor]] = {}
        window_clips, window_start, data_wait = 0, time.perf_counter(), 0.0
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        batches = self._batches()
        while self.progress.step < stop:
            waited = time.perf_counter()
            batch = next(batches)
            data_wait += time.perf_counter() - waited
            self.progress.batch += 1
            self.bad_samples.update(batch)
            count = self._common_batch_size(len(batch))
            if count < 2:
                logger.warning("skipping a batch: only %d readable item(s) on some rank", count)
                continue
            if len(batch) > count:
                batch = VideoTextBatch(batch.video[:count], batch.captions[:count], batch.video_ids[:count],
                                       batch.indices[:count], batch.skipped)
            values = self.train_step(batch)
            self.progress.step += 1
            window_clips += count * self.context.world_size
            for key, value in values.items():
                window.setdefault(key, []).append(value)
            step = self.progress.step
            if step % cfg.train.log_every == 0 or step == stop:
                means = {k: all_reduce_mean(torch.stack(v).float().mean(), self.context).item()
                         for k, v in window.items()}
                elapsed = time.perf_counter() - window_start
                means.update(lr=self.scheduler.get_last_lr()[0], temperature=self.model.temperature().item(),
                             clips_per_s=window_clips / max(elapsed, 1e-9), data_wait_frac=data_wait / max(elapsed, 1e-9),
                             epoch=self.progress.epoch)
                if self.device.type == "cuda":
                    means["gpu_mem_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
                self.loss_history.append((step, means["loss"]))
                self.metrics_log.log(step, "train", means)
                logger.info("step %d/%d loss %.4f acc %.3f lr %.3g temp %.4f %.1f clips/s", step, total,
                            means["loss"], means["batch_acc"], means["lr"], means["temperature"], means["clips_per_s"])
                if progress_bar is not None:
                    progress_bar.set_postfix(loss=f"{means['loss']:.4f}", refresh=False)
                window, window_clips, window_start, data_wait = {}, 0, time.perf_counter(), 0.0
            if progress_bar is not None:
                progress_bar.update(1)
            if cfg.eval.every > 0 and step % cfg.eval.every == 0 and step < total:
                self.evaluate()
            if (cfg.train.checkpoint_every > 0 and step % cfg.train.checkpoint_every == 0) or step == stop:
                if not (step == total and cfg.eval.at_end):  # the final checkpoint follows the final eval
                    self.save_checkpoint()
        if progress_bar is not None:
            progress_bar.close()
        finished = self.progress.step >= total
        if finished and cfg.eval.at_end:
            if self.last_eval.get("step") != total:
                self.evaluate()
            self.save_checkpoint()
        return self._finish(finished)

    def _finish(self, finished: bool) -> dict[str, Any]:
        digests = all_gather_objects(weights_digest(self.model), self.context)
        if len(set(digests)) > 1:
            logger.error("model replicas differ across ranks: %s", digests)
        summary = {
            "step": self.progress.step,
            "finished": finished,
            "world_size": self.context.world_size,
            "first_loss": self.loss_history[0][1] if self.loss_history else None,
            "last_loss": self.loss_history[-1][1] if self.loss_history else None,
            "loss_history": [list(x) for x in self.loss_history],
            "replica_digests": digests,
            "replicas_identical": len(set(digests)) == 1,
            "bad_samples": self.bad_samples.summary(),
            "eval": self.last_eval,
        }
        if self.context.is_main:
            if finished:
                save_model(self.model, self.run_dir / "model.pt",
                           {"step": self.progress.step, "eval": self.last_eval, "train_config": self.config.to_dict()})
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            logger.info("%s at step %d; %s; run directory %s", "finished" if finished else "stopped",
                        self.progress.step, self.bad_samples.summary(), self.run_dir)
        self.metrics_log.close()
        barrier(self.context)
        return summary


def train(config: TrainConfig) -> dict[str, Any]:
    """Run (or resume) the training described by ``config`` in this process; returns the summary."""
    context = init_distributed(config.train.device)
    try:
        configure_logging(config.logging.level, context.rank)
        trainer = ContrastiveTrainer(config, context)
        return trainer.run()
    finally:
        shutdown_distributed()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.contrastive",
        description="Contrastive video-text training. Any config field can be overridden as "
                    "--section.key VALUE (sections: model, data, optim, train, eval, logging).")
    parser.add_argument("--config", help="YAML config file (defaults are used for what it leaves out)")
    args, overrides = parser.parse_known_args(argv)
    try:
        config = resolve_config(args.config, overrides)
    except ConfigError as error:
        parser.error(str(error))
    summary = train(config)
    return 0 if summary.get("replicas_identical", True) else 1


if __name__ == "__main__":
    sys.exit(main())
