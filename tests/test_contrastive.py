"""Contrastive training on CPU: config resolution, loss, schedule, sampler, a tiny run,
and 2-process torchrun (gloo) jobs for replica consistency, exact resume and DDP
gradient equivalence."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from tests.training_fixtures import tiny_train_overrides
from training.config import (ConfigError, TrainConfig, apply_overrides, load_config_file, parse_override_args,
                             resolve_config, save_config)
from training.contrastive import main as contrastive_main
from training.contrastive import train
from training.distributed import DistributedContext
from encoders.dual_encoder import create_dual_encoder
from training.losses import symmetric_infonce
from training.optim import warmup_cosine_factor
from training.sampler import ResumableDistributedSampler, SeededItems

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "synthetic_tiny.yaml"
SINGLE = DistributedContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend=None)


# ------------------------------------------------------------------------ config


def test_yaml_overlay_and_dotted_overrides(tmp_path: Path) -> None:
    config = resolve_config(TINY_CONFIG, ["--optim.lr", "2e-4", "--model.text.width=128",
                                          "--model.video_overrides.drop_path_rate", "0.1",
                                          "--optim.betas", "0.9,0.95", "--train.stop_after_steps", "null",
                                          "--eval.max_videos", "10", "--logging.csv", "false"])
    assert config.optim.lr == 2e-4 and isinstance(config.optim.lr, float)
    assert config.model.text["width"] == 128 and config.model.text["layers"] == 2  # other keys kept
    assert config.model.video_overrides == {"depth": 2, "embed_dim": 32, "drop_path_rate": 0.1}
    assert config.optim.betas == (0.9, 0.95)
    assert config.train.stop_after_steps is None and config.eval.max_videos == 10
    assert config.logging.csv is False
    assert config.model.num_frames == 4 and config.data.batch_size == 8  # from the file
    assert config.optim.eps == TrainConfig().optim.eps  # default
    saved = save_config(config, tmp_path / "config.yaml")
    assert load_config_file(saved) == config


@pytest.mark.parametrize("argv,message", [
    (["--optim.lrr", "1"], "unknown key --optim.lrr: optim has no 'lrr'; valid: betas"),
    (["--nosection.lr", "1"], "config has no 'nosection'"),
    (["--optim.lr", "fast"], "optim.lr must be a number"),
    (["--train.steps", "1.5"], "train.steps must be an integer"),
    (["--logging.csv", "maybe"], "logging.csv must be true or false"),
    (["--optim.betas", "0.9"], "optim.betas must be a list of 2 values"),
    (["--model.pooling", "max"], "model: pooling must be one of"),
    (["--data.dataset", "kinetics"], "data.dataset must be one of"),
    (["--optim.lr"], "--optim.lr needs a value"),
    (["lr=3"], "expected --section.key VALUE"),
    (["--optim", "1"], "overrides name a section and a key"),
])
def test_bad_overrides_are_refused_clearly(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        resolve_config(TINY_CONFIG, argv)


def test_bad_yaml_key_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"optim": {"learning_rate": 1.0}}))
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key\(s\) config.optim.learning_rate"):
        load_config_file(path)


def test_cli_exits_with_usage_error_on_unknown_key(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        contrastive_main(["--config", str(TINY_CONFIG), "--optim.nope", "1"])
    assert excinfo.value.code == 2
    assert "optim has no 'nope'" in capsys.readouterr().err


def test_overrides_parse_equals_and_space_forms() -> None:
    assert parse_override_args(["--a.b", "1", "--c.d=x=y"]) == [("a.b", "1"), ("c.d", "x=y")]
    config = apply_overrides(TrainConfig(), [("train.run_name", "007")])
    assert config.train.run_name == "007"  # string fields keep the text as given


# ---------------------------------------------------------------- loss, schedule


def test_symmetric_infonce_matches_clip_loss_by_hand() -> None:
    torch.manual_seed(0)
    text = F.normalize(torch.randn(5, 8), dim=-1)
    video = F.normalize(torch.randn(5, 3, 8), dim=-1)  # per-frame
    temperature = torch.tensor(0.1)
    result = symmetric_infonce(text, video, temperature, SINGLE)
    scores = torch.einsum("td,vfd->tvf", text, video).mean(-1) / 0.1
    expected_t2v = -torch.log_softmax(scores, dim=1).diagonal().mean()
    expected_v2t = -torch.log_softmax(scores.t(), dim=1).diagonal().mean()
    torch.testing.assert_close(result.text_to_video, expected_t2v)
    torch.testing.assert_close(result.video_to_text, expected_v2t)
    torch.testing.assert_close(result.loss, (expected_t2v + expected_v2t) / 2)
    # Perfectly aligned pairs with a low temperature: loss near zero, accuracy 1.
    aligned = symmetric_infonce(text, text, torch.tensor(0.01), SINGLE)
    assert aligned.loss.item() < 1e-3 and aligned.accuracy.item() == 1.0


def test_warmup_then_cosine() -> None:
    total, warmup = 110, 10
    factors = [warmup_cosine_factor(s, total, warmup, 0.1) for s in range(total)]
    assert factors[0] == pytest.approx(1 / 11)
    assert factors[9] == pytest.approx(10 / 11)
    assert factors[10] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine_factor(total, total, warmup, 0.1) == pytest.approx(0.1)
    assert all(a <= b for a, b in zip(factors[:10], factors[1:11]))
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))


# ---------------------------------------------------------------------- sampler


def test_sampler_global_batches_do_not_depend_on_world_size() -> None:
    single = list(ResumableDistributedSampler(20, batch_size=4, world_size=1, seed=3))
    ranks = [list(ResumableDistributedSampler(20, batch_size=2, world_size=2, rank=r, seed=3)) for r in range(2)]
    assert len(single) == 20 and all(len(r) == 10 for r in ranks)
    for b in range(5):
        assert single[4 * b:4 * b + 4] == ranks[0][2 * b:2 * b + 2] + ranks[1][2 * b:2 * b + 2]
    assert sorted(index for _, index in single) == list(range(20))
    assert set(ranks[0]).isdisjoint(ranks[1])


def test_sampler_epochs_differ_and_resume_position_continues() -> None:
    sampler = ResumableDistributedSampler(12, batch_size=3, seed=0)
    sampler.set_position(epoch=0)
    epoch0 = list(sampler)
    sampler.set_position(epoch=1)
    epoch1 = list(sampler)
    assert [i for _, i in epoch0] != [i for _, i in epoch1]
    assert {e for e, _ in epoch1} == {1}
    sampler.set_position(epoch=1, start_batch=2)
    assert list(sampler) == epoch1[6:] and len(sampler) == 6
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ResumableDistributedSampler(5, batch_size=4, world_size=2)


def test_seeded_items_are_reproducible_and_leave_global_rng_alone() -> None:
    class RandomItems(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 10

        def __getitem__(self, index: int) -> torch.Tensor:
            return torch.rand(3)

    items = SeededItems(RandomItems(), seed=5)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = items[(0, 4)]
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(items[(0, 4)], first)
    assert not torch.equal(items[(1, 4)], first) and not torch.equal(items[(0, 5)], first)


# ------------------------------------------------------------------- tiny runs


def test_loss_falls_on_tiny_synthetic_run(tmp_path: Path) -> None:
    config = resolve_config(TINY_CONFIG, tiny_train_overrides(
        str(tmp_path), "falls", train__steps=20, train__log_every=5, eval__every=0, eval__at_end=True,
        train__checkpoint_every=0))
    summary = train(config)
    losses = [loss for _, loss in summary["loss_history"]]
    assert len(losses) == 4
    assert losses[-1] < 0.6 * losses[0], losses
    run_dir = tmp_path / "falls"
    assert (run_dir / "model.pt").is_file() and (run_dir / "checkpoints" / "last.pt").is_file()
    assert load_config_file(run_dir / "config.yaml") == config
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"step", "kind", "loss", "lr", "temperature", "t2v_r1", "v2t_r1", "order_acc"} <= set(header)
    assert summary["eval"]["step"] == 20 and "raw" in summary["eval"]["results"]


def test_resume_none_refuses_existing_run(tmp_path: Path) -> None:
    overrides = tiny_train_overrides(str(tmp_path), "once", train__steps=2, eval__every=0, eval__at_end=False,
                                     train__checkpoint_every=0, data__batch_size=8)
    train(resolve_config(TINY_CONFIG, overrides))
    with pytest.raises(RuntimeError, match="already holds checkpoints"):
        train(resolve_config(TINY_CONFIG, overrides + ["--train.resume", "none"]))


# --------------------------------------------------------------- torchrun (gloo)


def _torchrun(overrides: list[str], timeout: float = 150.0) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "training.contrastive", "--config", str(TINY_CONFIG), *overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"torchrun failed ({done.returncode}):\n{done.stderr[-4000:]}"


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 2-process jobs (batch 4 per rank, drop path on, so RNG state matters):
    "full" runs 10 steps; "resumed" stops after 3 steps (checkpoint) and is restarted."""
    out = tmp_path_factory.mktemp("ddp")
    common = dict(train__steps=10, data__batch_size=4, train__log_every=2, eval__every=4,
                  train__checkpoint_every=4, model__video_overrides__drop_path_rate=0.2)
    _torchrun(tiny_train_overrides(str(out), "full", **common))
    resumed = tiny_train_overrides(str(out), "resumed", **common)
    _torchrun(resumed + ["--train.stop_after_steps", "3"])
    _torchrun(resumed)
    return out


def test_ddp_ranks_end_with_identical_weights_and_loss_falls(ddp_runs: Path) -> None:
    summary = json.loads((ddp_runs / "full" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["finished"] and summary["step"] == 10
    digests = summary["replica_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    losses = [loss for _, loss in summary["loss_history"]]
    assert losses[-1] < losses[0], losses


def test_killed_and_resumed_ddp_run_matches_uninterrupted_exactly(ddp_runs: Path) -> None:
    stopped = json.loads((ddp_runs / "resumed" / "summary.json").read_text())
    assert stopped["finished"] and stopped["step"] == 10
    full, resumed = _weights(ddp_runs / "full" / "model.pt"), _weights(ddp_runs / "resumed" / "model.pt")
    assert full.keys() == resumed.keys()
    for name in full:
        assert torch.equal(full[name], resumed[name]), name
    # Also the optimiser moments: the last training checkpoints are byte-for-byte the same state.
    full_state = torch.load(ddp_runs / "full" / "checkpoints" / "last.pt", weights_only=True)["extra"]["train_state"]
    resumed_state = torch.load(ddp_runs / "resumed" / "checkpoints" / "last.pt", weights_only=True)["extra"]["train_state"]
    assert full_state["progress"] == resumed_state["progress"]
    for index, moments in full_state["optimizer"]["state"].items():
        for key, value in moments.items():
            assert torch.equal(value, resumed_state["optimizer"]["state"][index][key]), (index, key)


def test_ddp_gradient_equals_single_process_global_batch(tmp_path: Path) -> None:
    """2 ranks x 4 clips must train like 1 process x 8 clips (same global batches, and the
    gathered-feature loss gives the full-batch gradient); equal up to float rounding."""
    common = dict(train__steps=4, train__log_every=2, eval__every=0, eval__at_end=False, train__checkpoint_every=0)
    _torchrun(tiny_train_overrides(str(tmp_path), "ddp", data__batch_size=4, **common))
    train(resolve_config(TINY_CONFIG, tiny_train_overrides(str(tmp_path), "single", data__batch_size=8, **common)))
    ddp, single = _weights(tmp_path / "ddp" / "model.pt"), _weights(tmp_path / "single" / "model.pt")
    worst = max((ddp[k].float() - single[k].float()).abs().max().item() for k in ddp)
    assert worst < 1e-4, worst
    # ... and not because nothing trained: the weights moved far more than that from their init.
    torch.manual_seed(0)
    initial = create_dual_encoder(resolve_config(TINY_CONFIG, []).model).state_dict()
    assert (single["vision_proj.weight"] - initial["vision_proj.weight"]).abs().max().item() > 100 * worst


@pytest.fixture(scope="module")
def disk_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from data.synthetic import SyntheticConfig, write_synthetic_dataset

    root = tmp_path_factory.mktemp("disk")
    write_synthetic_dataset(root, SyntheticConfig(num_videos=16, seed=4, num_frames=4, height=32, width=32,
                                                  max_events=2), msrvtt_layout=True, test_fraction=0.25)
    return root


@pytest.mark.parametrize("dataset", ["pairs", "msrvtt"])
def test_training_on_files_decodes_trains_and_evaluates(disk_dataset: Path, tmp_path: Path, dataset: str) -> None:
    fields = dict(data__dataset=dataset, train__steps=3, train__log_every=1, eval__every=0, eval__at_end=True,
                  train__checkpoint_every=0, data__batch_size=4, data__num_workers=1)
    if dataset == "pairs":
        fields.update(data__train_file=str(disk_dataset / "captions.jsonl"),
                      data__eval_file=str(disk_dataset / "captions.jsonl"))
    else:
        fields.update(data__root=str(disk_dataset))
    summary = train(resolve_config(TINY_CONFIG, tiny_train_overrides(str(tmp_path), dataset, **fields)))
    assert summary["finished"] and summary["step"] == 3
    assert summary["bad_samples"].startswith("skipped 0 of 12 items")
    evaluation = summary["eval"]
    expected_videos = 16 if dataset == "pairs" else 4  # msrvtt: the 1k-A-style test split (2 of 8 pairs)
    assert evaluation["results"]["raw"]["num_videos"] == expected_videos


def test_resume_with_loader_workers_matches_uninterrupted_exactly(tmp_path: Path) -> None:
    """Decoding and random frame positions in 2 loader processes: a run stopped mid-epoch
    and resumed ends with the same losses and weights as one that never stopped (items are
    seeded by (seed, epoch, index), not by which worker process loaded them or when)."""
    from data.synthetic import SyntheticConfig, write_synthetic_dataset

    videos = tmp_path / "videos"
    # 16-frame files, 4 sampled per clip: the positions are a real random choice.
    write_synthetic_dataset(videos, SyntheticConfig(num_videos=12, seed=5, num_frames=16, height=32, width=32,
                                                    max_events=2))
    fields = dict(data__dataset="pairs", data__train_file=str(videos / "captions.jsonl"),
                  data__num_workers=2, data__batch_size=4, train__steps=5, train__checkpoint_every=2,
                  train__log_every=1, eval__every=0, eval__at_end=False,
                  model__video_overrides__drop_path_rate=0.2)
    full = train(resolve_config(TINY_CONFIG, tiny_train_overrides(str(tmp_path), "full", **fields)))
    resumed_args = tiny_train_overrides(str(tmp_path), "resumed", **fields)
    stopped = train(resolve_config(TINY_CONFIG, resumed_args + ["--train.stop_after_steps", "2"]))
    assert stopped["step"] == 2 and not stopped["finished"]  # batch 2 of the 3 in epoch 0
    resumed = train(resolve_config(TINY_CONFIG, resumed_args))
    assert full["finished"] and resumed["finished"] and resumed["step"] == 5
    assert resumed["loss_history"] == full["loss_history"]
    full_weights, resumed_weights = _weights(tmp_path / "full" / "model.pt"), _weights(tmp_path / "resumed" / "model.pt")
    for name in full_weights:
        assert torch.equal(full_weights[name], resumed_weights[name]), name
