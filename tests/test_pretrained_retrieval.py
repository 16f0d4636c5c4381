"""OpenGVLab VideoMamba retrieval checkpoints (UMT layout) as dual encoders: tiny
synthetic files with their exact key pattern, the full-size key list on the meta device,
round trips through our checkpoint format, error messages, and the offline hub message."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import pytest
import torch

from encoders.opengvlab import PretrainedUnavailable, StateDictMismatch, resolve_checkpoint
from encoders.text import BertTextTower, TextEncoderConfig, bert_vocab_file, clean_caption
from tests.test_pretrained_classification import synthesize, videomamba_shapes
from encoders import convert as convert_opengvlab
from encoders.checkpoint import load_model, read_checkpoint
from encoders.convert import check_retrieval_keys, convert, load_opengvlab_retrieval, load_retrieval_state_dict

VOCAB = 30522
CAPTIONS = ["A man is cooking pasta in a kitchen.", "two dogs-play/fight on the grass!", "a red car"]


def bert_shapes(width: int, layers: int, fusion: int, video_width: int, intermediate: int,
                positions: int = 512, prefix: str = "text_encoder.bert.", mlm_head: bool = True) -> dict[str, tuple[int, ...]]:
    """UMT's BertForMaskedLM keys: standard BERT names, cross-attention (keys/values from the
    video width) in layers >= ``fusion``, the ``position_ids`` buffer and the MLM head."""
    shapes: dict[str, tuple[int, ...]] = {
        prefix + "embeddings.word_embeddings.weight": (VOCAB, width),
        prefix + "embeddings.position_embeddings.weight": (positions, width),
        prefix + "embeddings.token_type_embeddings.weight": (2, width),
        prefix + "embeddings.LayerNorm.weight": (width,),
        prefix + "embeddings.LayerNorm.bias": (width,),
    }

    def attention(name: str, kv_width: int) -> None:
        shapes[name + ".self.query.weight"] = (width, width)
        shapes[name + ".self.query.bias"] = (width,)
        for proj in ("key", "value"):
            shapes[name + f".self.{proj}.weight"] = (width, kv_width)
            shapes[name + f".self.{proj}.bias"] = (width,)
        shapes[name + ".output.dense.weight"] = (width, width)
        shapes[name + ".output.dense.bias"] = (width,)
        shapes[name + ".output.LayerNorm.weight"] = (width,)
        shapes[name + ".output.LayerNorm.bias"] = (width,)

    for i in range(layers):
        layer = f"{prefix}encoder.layer.{i}"
        attention(layer + ".attention", width)
        if i >= fusion:
            attention(layer + ".crossattention", video_width)
        shapes[layer + ".intermediate.dense.weight"] = (intermediate, width)
        shapes[layer + ".intermediate.dense.bias"] = (intermediate,)
        shapes[layer + ".output.dense.weight"] = (width, intermediate)
        shapes[layer + ".output.dense.bias"] = (width,)
        shapes[layer + ".output.LayerNorm.weight"] = (width,)
        shapes[layer + ".output.LayerNorm.bias"] = (width,)
    if mlm_head:
        shapes.update({
            "text_encoder.cls.predictions.bias": (VOCAB,),
            "text_encoder.cls.predictions.transform.dense.weight": (width, width),
            "text_encoder.cls.predictions.transform.dense.bias": (width,),
            "text_encoder.cls.predictions.transform.LayerNorm.weight": (width,),
            "text_encoder.cls.predictions.transform.LayerNorm.bias": (width,),
            "text_encoder.cls.predictions.decoder.weight": (VOCAB, width),
            "text_encoder.cls.predictions.decoder.bias": (VOCAB,),
        })
    return shapes


def retrieval_checkpoint(video_width: int = 32, depth: int = 2, grid: int = 2, frames: int = 4,
                         text_width: int = 32, text_layers: int = 4, fusion: int = 3, embed: int = 16,
                         device: str = "cpu", seed: int = 0, prefix: str = "text_encoder.bert.") -> dict[str, torch.Tensor]:
    """A VideoMamba retrieval state dict in OpenGVLab's layout (defaults: tiny sizes)."""
    shapes = {f"vision_encoder.{k}": v for k, v in
              videomamba_shapes(video_width, depth, grid=grid, frames=frames, final_norm="norm").items()}
    shapes.update({
        "vision_encoder.pool_norm.weight": (video_width,),
        "vision_encoder.pool_norm.bias": (video_width,),
        "vision_encoder.clip_decoder.0.head.weight": (512, video_width),
        "vision_encoder.clip_decoder.0.head.bias": (512,),
        "vision_encoder.clip_decoder.0.norm.weight": (512,),
        "vision_encoder.clip_decoder.0.norm.bias": (512,),
        "clip_teacher.class_embedding": (1024,),
        "clip_teacher.conv1.weight": (1024, 3, 1, 14, 14),
        "clip_teacher.transformer.resblocks.0.attn.in_proj_weight": (3072, 1024),
        "vision_proj.weight": (embed, video_width),
        "vision_proj.bias": (embed,),
        "text_proj.weight": (embed, text_width),
        "text_proj.bias": (embed,),
        "itm_head.weight": (2, text_width),
        "itm_head.bias": (2,),
        "temp": (),
    })
    shapes.update(bert_shapes(text_width, text_layers, fusion, video_width, 4 * text_width, prefix=prefix,
                              mlm_head=prefix == "text_encoder.bert."))
    state = synthesize(shapes, seed=seed, device=device)
    if device != "meta":
        state["temp"] = torch.tensor(0.05)
    state[prefix + "embeddings.position_ids"] = torch.arange(512, device=device).unsqueeze(0)
    return state


TINY = dict(text_heads=2)


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("zoo") / "videomamba_m16_5M_f8_res224.pth"
    torch.save({"model": retrieval_checkpoint()}, path)
    return path


@pytest.fixture(scope="module")
def tiny_model(tiny_file: Path):
    return load_opengvlab_retrieval(tiny_file, download=False, **TINY)


def encode(model, frames: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        video = model.encode_video(torch.randn(2, 3, frames, 32, 32, generator=generator))
        text = model.encode_text(model.tokenize(CAPTIONS))
    return video, text


def test_tiny_checkpoint_loads_every_tensor(tiny_file: Path, tiny_model) -> None:
    source = torch.load(tiny_file, weights_only=True)["model"]
    model = tiny_model
    config = model.config
    assert (config.pooling, config.resize, config.num_frames, config.img_size, config.embed_dim) == (
        "per_frame", "square", 4, 32, 16)
    text_cfg = TextEncoderConfig.from_dict(config.text)
    assert (text_cfg.kind, text_cfg.layers, text_cfg.width, text_cfg.context_length) == ("bert", 3, 32, 32)
    assert torch.equal(model.video.norm_f.weight, source["vision_encoder.norm.weight"])
    assert torch.equal(model.video.layers[1].mixer.A_b_log, source["vision_encoder.layers.1.mixer.A_b_log"])
    assert torch.equal(model.pool_norm.bias, source["vision_encoder.pool_norm.bias"])
    bert = model.text.tower.bert
    assert len(bert.encoder.layer) == 3
    assert torch.equal(bert.encoder.layer[2].output.dense.weight,
                       source["text_encoder.bert.encoder.layer.2.output.dense.weight"])
    assert torch.equal(bert.embeddings.word_embeddings.weight, source["text_encoder.bert.embeddings.word_embeddings.weight"])
    assert torch.equal(model.text_proj.weight, source["text_proj.weight"])
    assert float(model.temp.detach()) == pytest.approx(0.05)
    video, text = encode(model)
    assert video.shape == (2, 4, 16) and text.shape == (3, 16)
    assert torch.isfinite(video).all() and torch.isfinite(text).all()
    assert torch.allclose(video.norm(dim=-1), torch.ones(2, 4), atol=1e-5)
    scores = model.similarity(text, video)
    assert scores.shape == (3, 2) and torch.isfinite(scores).all()


def test_per_frame_feature_is_their_pooling(tiny_model) -> None:
    """pool_norm(cls + mean of each frame's tokens) -> vision_proj -> normalise, per frame;
    a text's score is the mean over frames of its cosine similarities."""
    model = tiny_model
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        tokens, _ = model.video.forward_features(clip)
        cls, body = tokens[:, :1], tokens[:, 1:].reshape(1, 4, 4, -1)
        expected = torch.nn.functional.normalize(model.vision_proj(model.pool_norm(cls + body.mean(2))), dim=-1)
        assert torch.allclose(model.encode_video(clip), expected, atol=1e-5)
        text = model.encode_text(model.tokenize(CAPTIONS[:1]))
        assert torch.allclose(model.similarity(text, expected), (expected[0] @ text[0]).mean().reshape(1, 1), atol=1e-5)


def test_text_feature_is_bert_cls_of_cleaned_caption(tiny_model, tiny_file: Path) -> None:
    from transformers import BertConfig, BertModel

    model = tiny_model
    tokens = model.tokenize(["Two dogs-play/fight!"])
    vocab = {line.rstrip("\n"): i for i, line in enumerate(bert_vocab_file().read_text(encoding="utf-8").splitlines())}
    words = ["[CLS]", "two", "dogs", "play", "fight", "[SEP]"]
    assert tokens[0, :6].tolist() == [vocab[w] for w in words]
    assert tokens[0, :2].tolist() == [101, 2048]  # bert-base-uncased ids
    assert tokens[0, 6:].eq(0).all() and tokens.shape == (1, 32)
    assert clean_caption("A man's <person>, (cooking)  pasta.") == "a mans person cooking pasta"
    # An independent BertModel with layers 0-2 of the checkpoint gives the same [CLS] state.
    source = torch.load(tiny_file, weights_only=True)["model"]
    reference = BertModel(BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                     intermediate_size=128), add_pooling_layer=False).eval()
    prefix = "text_encoder.bert."
    reference.load_state_dict({k[len(prefix):]: v for k, v in source.items() if k.startswith(prefix)
                               and "position_ids" not in k and ".layer.3." not in k}, strict=True)
    with torch.no_grad():
        expected = reference(input_ids=tokens, attention_mask=(tokens != 0).long()).last_hidden_state[:, 0]
        assert torch.allclose(model.text(tokens), expected, atol=1e-5)


def test_round_trip_through_our_format(tiny_file: Path, tiny_model, tmp_path: Path) -> None:
    out = convert(tiny_file, tmp_path / "converted.pt", download=False, **TINY)
    payload = read_checkpoint(out)
    assert payload["extra"]["embedding_only"] is True
    assert payload["extra"]["published_msrvtt_zero_shot"]["t2v_r1_r5_r10"] == [32.0, 53.1, 63.6]
    assert payload["config"]["resize"] == "square"
    reloaded = load_model(out)
    for (a, b) in zip(encode(tiny_model), encode(reloaded)):
        assert torch.equal(a, b)
    transform = reloaded.config.transform_config()
    assert (transform.size, transform.resize, transform.center_crop) == (32, "square", False)


def test_unwrapped_state_and_fine_tuned_prefix(tiny_model) -> None:
    model = load_retrieval_state_dict(retrieval_checkpoint(), "plain", **TINY)  # same tensors, not under "model"
    for a, b in zip(encode(tiny_model), encode(model)):
        assert torch.equal(a, b)
    # Fine-tuned layout: BertModel directly under text_encoder.
    fine_tuned = retrieval_checkpoint(prefix="text_encoder.")
    model = load_retrieval_state_dict(fine_tuned, "finetuned", **TINY)
    assert len(model.text.tower.bert.encoder.layer) == 3


def test_read_state_dict_unwraps_module_prefix(tmp_path: Path, tiny_model) -> None:
    path = tmp_path / "ddp.pth"
    torch.save({"module": {f"module.{k}": v for k, v in retrieval_checkpoint().items()}}, path)
    model = load_opengvlab_retrieval(path, download=False, **TINY)
    for a, b in zip(encode(tiny_model), encode(model)):
        assert torch.equal(a, b)


def test_other_frame_count_interpolates_positions(tiny_file: Path) -> None:
    model = load_opengvlab_retrieval(tiny_file, download=False, num_frames=8, img_size=64, **TINY)
    assert model.video.temporal_pos_embedding.shape == (1, 8, 32)
    assert model.video.pos_embed.shape == (1, 1 + 16, 32)
    with torch.no_grad():
        video = model.encode_video(torch.randn(1, 3, 8, 64, 64))
    assert video.shape == (1, 8, 16) and torch.isfinite(video).all()


def test_missing_tensor_wrong_shape_and_unknown_key_are_named() -> None:
    state = retrieval_checkpoint()
    del state["text_encoder.bert.encoder.layer.1.attention.self.key.weight"]
    del state["vision_encoder.layers.0.mixer.D_b"]
    state["vision_proj.weight"] = torch.zeros(16, 33)
    state["vision_encoder.layers.1.mixer.x_proj.weight"] = torch.zeros(5, 64)
    with pytest.raises(StateDictMismatch) as caught:
        load_retrieval_state_dict(state, "broken.pth", **TINY)
    message = str(caught.value)
    assert "broken.pth" in message
    assert "text.tower.bert.encoder.layer.1.attention.self.key.weight " \
           "(checkpoint: text_encoder.bert.encoder.layer.1.attention.self.key.weight)" in message
    assert "video.layers.0.mixer.D_b (checkpoint: vision_encoder.layers.0.mixer.D_b)" in message
    assert "vision_proj.weight (16, 33)" in message
    assert "vision_encoder.layers.1.mixer.x_proj.weight) (5, 64)" in message

    state = retrieval_checkpoint()
    state["vision_encoder.extra_token"] = torch.zeros(1, 1, 32)
    state["text_decoder.bert.embeddings.word_embeddings.weight"] = torch.zeros(2, 2)
    with pytest.raises(StateDictMismatch, match="unexpected \\(2\\): text_decoder.bert.embeddings.word_embeddings.weight, "
                                                "video.extra_token"):
        load_retrieval_state_dict(state, "extra.pth", **TINY)
    model = load_retrieval_state_dict(state, "extra.pth", strict=False, **TINY)
    assert torch.isfinite(encode(model)[0]).all()


def test_classification_file_is_refused_with_a_pointer() -> None:
    state = synthesize(videomamba_shapes(32, 2, grid=2, frames=4))
    with pytest.raises(ValueError, match="video_pretrained"):
        load_retrieval_state_dict(state, "cls.pth")


def test_full_size_key_list_without_allocating() -> None:
    """VideoMamba-M (576 x 32, 224 px, 8 frames) + BERT-base with cross-attention in
    layers 9-11: every key maps, and the config is the published one."""
    state = retrieval_checkpoint(video_width=576, depth=32, grid=14, frames=8, text_width=768, text_layers=12,
                                 fusion=9, embed=512, device="meta")
    config = check_retrieval_keys(state, "videomamba_m16_25M_f8_res224.pth")
    text = TextEncoderConfig.from_dict(config.text)
    assert (config.video_encoder, config.video_overrides, config.num_frames, config.img_size) == (
        "videomamba_middle", {}, 8, 224)
    assert (text.kind, text.layers, text.width, text.heads, text.vocab_size, text.mlp_ratio) == (
        "bert", 9, 768, 12, VOCAB, 4.0)
    assert config.embed_dim == 512 and config.pooling == "per_frame" and config.resize == "square"
    del state["text_encoder.bert.encoder.layer.8.output.LayerNorm.bias"]
    with pytest.raises(StateDictMismatch, match=r"missing \(1\): text.tower.bert.encoder.layer.8.output.LayerNorm.bias"):
        check_retrieval_keys(state, "videomamba_m16_25M_f8_res224.pth")


def test_offline_hub_name_gives_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAMBASEARCH_WEIGHTS", str(tmp_path / "weights"))
    import huggingface_hub

    def no_download(*args, **kwargs):
        raise AssertionError("a test tried to download")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    with pytest.raises(PretrainedUnavailable) as caught:
        resolve_checkpoint("videomamba_m16_25M_f8_res224", download=True, cache_dir=tmp_path / "hf")
    message = str(caught.value)
    assert "HF_HUB_OFFLINE" in message
    assert "https://huggingface.co/OpenGVLab/VideoMamba/resolve/main/videomamba_m16_25M_f8_res224.pth" in message
    assert str(tmp_path / "weights" / "videomamba_m16_25M_f8_res224.pth") in message
    with pytest.raises(PretrainedUnavailable, match="downloads are disabled"):
        resolve_checkpoint("videomamba_t16_k400_f8_res224.pth", download=False, cache_dir=tmp_path / "hf")
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_checkpoint(str(tmp_path / "nowhere" / "videomamba_m16_5M_f8_res224.pth"))
    # A file put where the message says is found by name.
    (tmp_path / "weights").mkdir()
    placed = tmp_path / "weights" / "videomamba_m16_25M_f8_res224.pth"
    placed.write_bytes(b"x")
    assert resolve_checkpoint("videomamba_m16_25M_f8_res224", cache_dir=tmp_path / "hf") == placed


def test_failed_download_is_reported_as_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAMBASEARCH_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(PretrainedUnavailable, match="ConnectionError: Name or service not known"):
        resolve_checkpoint("videomamba_m16_5M_f8_res224", cache_dir=tmp_path / "hf")


def test_cli_converts_and_refuses_offline(tiny_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "m.pt"
    assert convert_opengvlab.main([str(tiny_file), "--out", str(out), "--no-download", "--text-heads", "2",
                                   "--float16"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert load_model(out).config.text["kind"] == "bert"
    monkeypatch.setenv("MAMBASEARCH_WEIGHTS", str(tmp_path / "empty"))
    assert convert_opengvlab.main(["videomamba_m16_17M_f8_res224", "--out", str(tmp_path / "x.pt"),
                                   "--no-download"]) == 2
    assert "videomamba_m16_17M_f8_res224.pth is not available" in caplog.text
    assert not (tmp_path / "x.pt").exists()


def test_bert_tower_refuses_inconsistent_configs() -> None:
    from encoders.text import bert_text_config, create_text_encoder

    with pytest.raises(ValueError, match="output_dim"):
        create_text_encoder(bert_text_config(width=32, heads=2, layers=1, output_dim=16))
    with pytest.raises(ValueError, match="differs from the vocabulary"):
        create_text_encoder(bert_text_config(width=32, heads=2, layers=1, vocab_size=100))
    with pytest.raises(FileNotFoundError, match="BERT vocabulary"):
        create_text_encoder(bert_text_config(width=32, heads=2, layers=1, vocab_path="/nonexistent/vocab.txt"))
    encoder = create_text_encoder(bert_text_config(width=32, heads=2, layers=1, context_length=8))
    assert isinstance(encoder.tower, BertTextTower)
    features = encoder(encoder.tokenize(CAPTIONS))
    assert features.shape == (3, 32) and torch.isfinite(features).all()
