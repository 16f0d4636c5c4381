"""OpenGVLab classification checkpoints: synthetic files with their exact key names and
full VideoMamba-Ti shapes load into our encoder (CPU, no network)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import math
from pathlib import Path

import pytest
import torch

from encoders import create_video_encoder
from encoders.opengvlab import (
    CLASSIFICATION_NAME,
    StateDictMismatch,
    create_pretrained_video_encoder,
    infer_video_config,
    load_video_backbone,
    read_state_dict,
)
from encoders.text import TextEncoderConfig
from encoders.dual_encoder import DualEncoder, DualEncoderConfig

TI_WIDTH, TI_DEPTH = 192, 24


def videomamba_shapes(width: int, depth: int, grid: int = 14, frames: int = 8, patch: int = 16,
                      num_classes: int = 0, image: bool = False, final_norm: str = "norm_f",
                      d_state: int = 16, expand: int = 2, d_conv: int = 4) -> dict[str, tuple[int, ...]]:
    """Names and shapes of OpenGVLab's VideoMamba state dict (REFERENCE.md section 1),
    written out from the published layout, independently of our model code."""
    d_inner = expand * width
    dt_rank = math.ceil(width / 16)
    shapes: dict[str, tuple[int, ...]] = {
        "patch_embed.proj.weight": (width, 3, patch, patch) if image else (width, 3, 1, patch, patch),
        "patch_embed.proj.bias": (width,),
        "cls_token": (1, 1, width),
        "pos_embed": (1, 1 + grid * grid, width),
    }
    if not image:
        shapes["temporal_pos_embedding"] = (1, frames, width)
    for i in range(depth):
        shapes[f"layers.{i}.norm.weight"] = (width,)
        mixer = f"layers.{i}.mixer."
        shapes[mixer + "in_proj.weight"] = (2 * d_inner, width)
        for suffix in ("", "_b"):
            shapes[mixer + f"conv1d{suffix}.weight"] = (d_inner, 1, d_conv)
            shapes[mixer + f"conv1d{suffix}.bias"] = (d_inner,)
            shapes[mixer + f"x_proj{suffix}.weight"] = (dt_rank + 2 * d_state, d_inner)
            shapes[mixer + f"dt_proj{suffix}.weight"] = (d_inner, dt_rank)
            shapes[mixer + f"dt_proj{suffix}.bias"] = (d_inner,)
        shapes[mixer + "A_log"] = (d_inner, d_state)
        shapes[mixer + "A_b_log"] = (d_inner, d_state)
        shapes[mixer + "D"] = (d_inner,)
        shapes[mixer + "D_b"] = (d_inner,)
        shapes[mixer + "out_proj.weight"] = (width, d_inner)
    shapes[f"{final_norm}.weight"] = (width,)
    if num_classes:
        shapes["head.weight"] = (num_classes, width)
        shapes["head.bias"] = (num_classes,)
    return shapes


def synthesize(shapes: dict[str, tuple[int, ...]], seed: int = 0, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Random tensors of ``shapes``: small weights, S4D-real ``A_log``, unit norms."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        if device == "meta":
            state[name] = torch.empty(shape, device="meta")
        elif name.endswith(("A_log", "A_b_log")):
            state[name] = torch.log(torch.arange(1, shape[-1] + 1, dtype=torch.float32)).expand(shape).clone()
        elif name.endswith(("norm.weight", "norm_f.weight", "LayerNorm.weight")) or name.endswith((".D", ".D_b")):
            state[name] = 1.0 + 0.1 * torch.randn(shape, generator=generator)
        else:
            state[name] = 0.02 * torch.randn(shape, generator=generator)
    return state


@pytest.fixture(scope="module")
def ti_k400(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full-size VideoMamba-Ti K400 checkpoint (8 frames, 224 px, 400 classes), wrapped
    under "model" as some released files are."""
    path = tmp_path_factory.mktemp("zoo") / "videomamba_t16_k400_f8_res224.pth"
    torch.save({"model": synthesize(videomamba_shapes(TI_WIDTH, TI_DEPTH, num_classes=400))}, path)
    return path


@pytest.fixture(scope="module")
def ti_in1k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full-size VideoMamba-Ti ImageNet checkpoint: 2-D patch kernel, no temporal positions."""
    path = tmp_path_factory.mktemp("zoo") / "videomamba_t16_in1k_res224.pth"
    torch.save(synthesize(videomamba_shapes(TI_WIDTH, TI_DEPTH, num_classes=1000, image=True), seed=1), path)
    return path


def test_zoo_names_are_recognised() -> None:
    for name in ("videomamba_t16_in1k_res224", "videomamba_s16_k400_f8_res224", "videomamba_m16_ssv2_f16_res224to288",
                 "videomamba_m16_k400_mask_ft_f64_res224to384", "videomamba_t16_in1k_res224to448to576"):
        assert CLASSIFICATION_NAME.match(name), name
    assert not CLASSIFICATION_NAME.match("videomamba_m16_25M_f8_res224")


def test_ti_k400_loads_with_head_every_tensor_equal(ti_k400: Path) -> None:
    source = read_state_dict(ti_k400)
    assert infer_video_config(source) == dict(embed_dim=192, depth=24, patch_size=16, tubelet_size=1, img_size=224,
                                              num_frames=8, d_state=16, d_conv=4, expand=2, num_classes=400)
    model = create_pretrained_video_encoder(ti_k400).eval()
    assert (model.cfg.embed_dim, model.cfg.depth, model.cfg.num_frames, model.cfg.img_size) == (192, 24, 8, 224)
    loaded = model.state_dict()
    assert set(loaded) == set(source)
    for name, tensor in source.items():
        assert torch.equal(loaded[name], tensor), name
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 2, 32, 32))  # positions resized on the fly
    assert logits.shape == (2, 400) and torch.isfinite(logits).all()


def test_ti_k400_other_frames_and_resolution_without_head(ti_k400: Path) -> None:
    model = create_pretrained_video_encoder(ti_k400, num_frames=16, img_size=112, keep_head=False).eval()
    assert model.pos_embed.shape == (1, 1 + 7 * 7, 192)
    assert model.temporal_pos_embedding.shape == (1, 16, 192)
    assert isinstance(model.head, torch.nn.Identity)
    source = read_state_dict(ti_k400)
    # Linear interpolation in time keeps the end points.
    assert torch.allclose(model.temporal_pos_embedding[0, 0], source["temporal_pos_embedding"][0, 0], atol=1e-6)
    assert torch.equal(model.layers[7].mixer.x_proj_b.weight, source["layers.7.mixer.x_proj_b.weight"])


def test_image_checkpoint_inflates_to_video(ti_in1k: Path) -> None:
    model = create_pretrained_video_encoder(ti_in1k, keep_head=False).eval()
    source = read_state_dict(ti_in1k)
    assert model.cfg.num_frames == 8
    assert torch.equal(model.patch_embed.proj.weight[:, :, 0], source["patch_embed.proj.weight"])
    assert torch.count_nonzero(model.temporal_pos_embedding) == 0


@pytest.mark.parametrize("fixture", ["ti_k400", "ti_in1k"])
def test_video_pretrained_initialises_the_dual_encoder_tower(fixture: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(fixture)
    config = DualEncoderConfig(
        video_encoder="videomamba_tiny", num_frames=4, img_size=32, video_pretrained=str(path),
        text=TextEncoderConfig(kind="clip", width=32, layers=1, heads=2, context_length=8).to_dict(), embed_dim=16)
    model = DualEncoder(config).eval()
    source = read_state_dict(path)
    assert "head.weight" not in model.video.state_dict()  # num_classes=0: the head is dropped
    assert torch.equal(model.video.layers[23].mixer.A_b_log, source["layers.23.mixer.A_b_log"])
    assert torch.equal(model.video.norm_f.weight, source["norm_f.weight"])
    with torch.no_grad():
        video = model.encode_video(torch.randn(1, 3, 2, 32, 32))
    assert video.shape == (1, 2, 16) and torch.isfinite(video).all()


def test_wrong_shape_and_missing_tensor_are_named(tmp_path: Path, ti_k400: Path) -> None:
    state = read_state_dict(ti_k400)
    state["layers.3.mixer.in_proj.weight"] = torch.zeros(10, 192)
    del state["layers.5.mixer.A_b_log"]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    model = create_video_encoder("videomamba_tiny")
    with pytest.raises(StateDictMismatch) as caught:
        load_video_backbone(model, path)
    message = str(caught.value)
    assert "layers.5.mixer.A_b_log" in message and "missing" in message
    assert "layers.3.mixer.in_proj.weight (10, 192)" in message
    assert caught.value.missing == ["layers.5.mixer.A_b_log"]
    with pytest.raises(StateDictMismatch, match="layers.5.mixer.A_b_log"):
        create_pretrained_video_encoder(path)


def test_unexpected_key_is_named_unless_not_strict(tmp_path: Path) -> None:
    state = synthesize(videomamba_shapes(32, 2, grid=2, frames=2, patch=16))
    state["layers.0.mixer.extra_scale"] = torch.ones(3)
    path = tmp_path / "extra.pth"
    torch.save(state, path)
    model = create_video_encoder("videomamba_tiny", embed_dim=32, depth=2, img_size=32, num_frames=2)
    with pytest.raises(StateDictMismatch, match=r"unexpected \(1\): layers.0.mixer.extra_scale"):
        load_video_backbone(model, path)
    load_video_backbone(model, path, strict=False)
    assert torch.equal(model.layers[1].mixer.D, state["layers.1.mixer.D"])
