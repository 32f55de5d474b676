"""`Captioner`: a generative image-captioning model (ViT encoder + GPT-2 decoder with cross-attention).

Built from Hugging Face ``transformers`` classes: a `VisionEncoderDecoderModel` over a small `ViTConfig`
and a small `GPT2Config` decoder, randomly initialised from the build seed. The decoder's vocabulary is the
dataset's word vocabulary (`WordTokenizer`: id 0 ``[PAD]``, id 1 ``[UNK]``) plus two tokens appended after
it, BOS (``len(vocab)``) and EOS (``len(vocab) + 1``). The dataset's ``text`` id rows are used as they are:

* teacher forcing feeds ``[BOS, w1 .. wn]`` and predicts ``[w1 .. wn, EOS]`` (`caption_targets`; padding
  positions are `IGNORE`), so a row needs no spare room for the special tokens;
* `generate` returns the generated ids after BOS, in the same id space (EOS kept where it was emitted,
  ``[PAD]`` = 0 after it); `decode` turns them back into words.

Decoding-time methods plug into `generate` through ``logits_processor`` (a
``transformers.LogitsProcessorList``) or any other ``generate()`` keyword (``bad_words_ids``,
``sequence_bias``, ``suppress_tokens``...); they read the image through `image_features`.

A captioner is saved in the project's checkpoint format (its config holds the vocabulary and, for a model
loaded from a ``save_pretrained`` folder, the Hugging Face config). `Captioner.save_pretrained` writes a
Hugging Face folder plus `VOCAB_FILE`, which `load_captioner` reads back.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..configs import make_config
from ..data.tokenizer import SPECIALS, WordTokenizer
from ..errors import CheckpointError, ConfigError
from .base import MODELS, MultimodalModel

IGNORE = -100
"""Target id of positions the caption loss ignores (padding); `torch.nn.functional.cross_entropy`'s default."""
VOCAB_FILE = "mmunlearn_vocab.json"
"""The word vocabulary saved beside a ``save_pretrained`` folder (`Captioner.save_pretrained`)."""


@dataclass(frozen=True)
class CaptionerConfig:
    """Architecture knobs of `Captioner`.

    Attributes:
        image_shape: (C, H, W) of one image (square images: H == W).
        vocab: the dataset's word vocabulary (``[PAD]``, ``[UNK]``, words); BOS and EOS are appended.
        text_len: caption row length of the dataset (generation stops after ``text_len + 1`` tokens).
        patch: ViT patch size.
        enc_dim: ViT hidden size.
        enc_layers: ViT layers.
        dec_dim: GPT-2 width (``n_embd``).
        dec_layers: GPT-2 layers.
        heads: attention heads of both (must divide ``enc_dim`` and ``dec_dim``).
        image_mean: per-image normalisation, ``(x - mean) / std`` with ``x`` in [0, 1].
        image_std: see ``image_mean``.
        hf_config: a full `VisionEncoderDecoderConfig` as a dict (set by `load_captioner`); when given, the
            size fields above are ignored and the network is built from it.
    """

    image_shape: tuple[int, ...]
    vocab: tuple[str, ...]
    text_len: int
    patch: int = 8
    enc_dim: int = 64
    enc_layers: int = 2
    dec_dim: int = 64
    dec_layers: int = 2
    heads: int = 4
    image_mean: float = 0.5
    image_std: float = 0.5
    hf_config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if len(self.image_shape) != 3 or self.image_shape[1] != self.image_shape[2]:
            raise ConfigError(f"a captioner needs square (C, H, W) images, got image_shape {list(self.image_shape)}")
        if tuple(self.vocab[:2]) != SPECIALS:
            raise ConfigError(f"the captioner's vocabulary must start with {SPECIALS}")
        if self.hf_config is None and (self.enc_dim % self.heads or self.dec_dim % self.heads):
            raise ConfigError(f"heads ({self.heads}) must divide enc_dim ({self.enc_dim}) and dec_dim ({self.dec_dim})")
        if self.hf_config is None and self.image_shape[1] % self.patch:
            raise ConfigError(f"patch ({self.patch}) must divide the image size ({self.image_shape[1]})")
        if self.text_len < 1 or self.image_std <= 0:
            raise ConfigError("text_len must be >= 1 and image_std > 0")


def hf_network_config(c: CaptionerConfig) -> Any:
    """The `VisionEncoderDecoderConfig` of ``c``: a small ViT and a GPT-2 decoder with cross-attention."""
    from transformers import GPT2Config, VisionEncoderDecoderConfig, ViTConfig

    if c.hf_config is not None:
        return VisionEncoderDecoderConfig.from_dict(dict(c.hf_config))
    bos, eos = len(c.vocab), len(c.vocab) + 1
    encoder = ViTConfig(
        image_size=c.image_shape[1], patch_size=c.patch, num_channels=c.image_shape[0], hidden_size=c.enc_dim,
        num_hidden_layers=c.enc_layers, num_attention_heads=c.heads, intermediate_size=4 * c.enc_dim,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    decoder = GPT2Config(
        vocab_size=len(c.vocab) + 2, n_positions=c.text_len + 2, n_embd=c.dec_dim, n_layer=c.dec_layers,
        n_head=c.heads, add_cross_attention=True, bos_token_id=bos, eos_token_id=eos, pad_token_id=0,
        tie_word_embeddings=False, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    decoder.is_decoder = True
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = bos, 0, eos
    config.tie_word_embeddings = False
    return config


@MODELS.register("captioner")
class Captioner(MultimodalModel):
    """Image -> caption, trained with teacher-forced token cross-entropy (see the module docstring)."""

    kind: ClassVar[str] = "captioner"
    modalities = ("image", "text")

    def __init__(self, **config: Any) -> None:
        super().__init__()
        from transformers import VisionEncoderDecoderModel

        self.config: CaptionerConfig = make_config(CaptionerConfig, config)
        self.net = VisionEncoderDecoderModel(config=hf_network_config(self.config))
        self.tokenizer = WordTokenizer(list(self.config.vocab), self.config.text_len)
        net = self.net.config
        self.bos_id, self.eos_id, self.pad_id = int(net.decoder_start_token_id), int(net.eos_token_id), 0
        if getattr(net.decoder, "vocab_size", 0) <= max(self.bos_id, self.eos_id, len(self.config.vocab) - 1):
            raise ConfigError("the decoder vocabulary is smaller than the word vocabulary plus BOS and EOS")

    # -- inputs -----------------------------------------------------------------------------------
    def pixels(self, images: Tensor) -> Tensor:
        """Images in [0, 1] -> the encoder's normalised input."""
        return (images.float() - self.config.image_mean) / self.config.image_std

    def decoder_inputs(self, text: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher-forcing inputs of (B, L) caption rows: ``[BOS, w1 .. wn, PAD ..]`` (B, L + 1) and its mask."""
        ids = torch.cat([torch.full_like(text[:, :1], self.bos_id), text], dim=1)
        mask = torch.cat([torch.ones_like(text[:, :1]), (text != self.pad_id).long()], dim=1)
        return ids, mask

    def caption_targets(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, L + 1) targets aligned with `caption_logits`: ``[w1 .. wn, EOS, IGNORE ..]``."""
        text = batch["text"]
        n = (text != self.pad_id).sum(1, keepdim=True)
        padded = torch.cat([text, torch.zeros_like(text[:, :1])], dim=1)
        pos = torch.arange(padded.shape[1], device=text.device).unsqueeze(0)
        out = torch.where(pos == n, torch.full_like(padded, self.eos_id), padded)
        return out.masked_fill(pos > n, IGNORE)

    # -- outputs ----------------------------------------------------------------------------------
    def caption_logits(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, L + 1, V) teacher-forced next-token logits of the batch's captions given its images."""
        ids, mask = self.decoder_inputs(batch["text"])
        out = self.net(pixel_values=self.pixels(batch["image"]), decoder_input_ids=ids, decoder_attention_mask=mask)
        return out.logits

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Same as `caption_logits`."""
        return self.caption_logits(batch)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        """Token cross-entropy of the captions (mean over non-padding target tokens, EOS included)."""
        logits = self.caption_logits(batch)
        return F.cross_entropy(logits.flatten(0, 1), self.caption_targets(batch).flatten(), ignore_index=IGNORE)

    def image_features(self, images: Tensor) -> Tensor:
        """(B, D) mean of the encoder's last hidden states over its tokens (what a guard reads)."""
        return self.net.encoder(pixel_values=self.pixels(images)).last_hidden_state.mean(dim=1)

    def generate(
        self, images: Tensor, max_new_tokens: int | None = None, logits_processor: Any = None, **kwargs: Any
    ) -> Tensor:
        """Captions of ``images`` as (B, T) ids (greedy unless ``kwargs`` say otherwise; no gradient).

        Args:
            images: (B, C, H, W) in [0, 1].
            max_new_tokens: at most this many generated tokens (default ``text_len + 1``: a caption and EOS).
            logits_processor: a ``transformers.LogitsProcessorList`` applied at every step.
            kwargs: further ``generate()`` keywords (``num_beams``, ``bad_words_ids``, ``sequence_bias``...);
                PAD and BOS are always added to ``suppress_tokens``.

        Returns:
            int64 (B, T), T <= max_new_tokens: the generated ids without BOS; EOS where it was emitted and
            ``[PAD]`` (0) after it.
        """
        from transformers import GenerationConfig

        calls = {"stopping_criteria", "prefix_allowed_tokens_fn"}  # generate() arguments, not generation config
        settings = {"do_sample": False, "num_beams": 1, **{k: v for k, v in kwargs.items() if k not in calls}}
        # PAD and BOS are never generated, so that PAD in an output row means "after EOS"
        settings["suppress_tokens"] = sorted({self.pad_id, self.bos_id, *(settings.get("suppress_tokens") or ())})
        gen = GenerationConfig(
            max_new_tokens=max_new_tokens or self.config.text_len + 1, decoder_start_token_id=self.bos_id,
            bos_token_id=self.bos_id, eos_token_id=self.eos_id, pad_token_id=self.pad_id, **settings,
        )  # fmt: skip
        with torch.no_grad():
            out = self.net.generate(
                pixel_values=self.pixels(images), generation_config=gen, logits_processor=logits_processor,
                **{k: v for k, v in kwargs.items() if k in calls},
            )  # fmt: skip
        return self.after_eos(out[:, 1:])

    def after_eos(self, ids: Tensor) -> Tensor:
        """``ids`` with every position after the first EOS of its row set to ``[PAD]``."""
        seen = (ids == self.eos_id).long().cumsum(1)
        after = (seen - (ids == self.eos_id).long()) > 0
        return ids.masked_fill(after, self.pad_id)

    def decode(self, ids: Tensor) -> list[str]:
        """Captions of (B, T) id rows: words up to the first EOS, special tokens (PAD, BOS, EOS) dropped."""
        out = []
        for row in ids.tolist():
            words = []
            for i in row:
                if i == self.eos_id:
                    break
                if i not in (self.pad_id, self.bos_id) and 0 <= i < len(self.config.vocab):
                    words.append(self.config.vocab[i])
            out.append(" ".join(words))
        return out

    def encode_captions(self, captions: list[str]) -> Tensor:
        """Raw captions -> (B, text_len) word id rows (the dataset's ``text`` format)."""
        return self.tokenizer.encode(captions)

    # -- Hugging Face folders ---------------------------------------------------------------------
    def save_pretrained(self, folder: str | os.PathLike[str]) -> None:
        """Write a Hugging Face folder (`VisionEncoderDecoderModel.save_pretrained`) plus `VOCAB_FILE`."""
        path = Path(folder)
        self.net.save_pretrained(path)
        meta = {
            "vocab": list(self.config.vocab),
            "text_len": self.config.text_len,
            "image_shape": list(self.config.image_shape),
            "image_mean": self.config.image_mean,
            "image_std": self.config.image_std,
        }
        (path / VOCAB_FILE).write_text(json.dumps(meta, indent=1))


def load_captioner(folder: str | os.PathLike[str]) -> Captioner:
    """A `Captioner` from a `VisionEncoderDecoderModel.save_pretrained` folder with `VOCAB_FILE` beside it.

    The vocabulary file gives the decoder's word vocabulary (``[PAD]``, ``[UNK]``, words), the caption
    row length and the image shape; the decoder's BOS/EOS ids are those of the saved config
    (``decoder_start_token_id``, ``eos_token_id``). The result is a registered model: it saves, loads and
    re-initialises like any other.

    Raises:
        CheckpointError: missing files, or a config that is not a vision encoder-decoder.
    """
    from transformers import VisionEncoderDecoderConfig, VisionEncoderDecoderModel

    path = Path(folder)
    if not (path / "config.json").is_file() or not (path / VOCAB_FILE).is_file():
        raise CheckpointError(f"{path} needs config.json (save_pretrained) and {VOCAB_FILE}")
    meta = json.loads((path / VOCAB_FILE).read_text())
    try:
        hf = VisionEncoderDecoderConfig.from_pretrained(path)
        pretrained = VisionEncoderDecoderModel.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot load a vision encoder-decoder from {path}: {e}") from e
    if hf.decoder_start_token_id is None or hf.eos_token_id is None:
        raise CheckpointError(f"{path}/config.json sets no decoder_start_token_id / eos_token_id")
    model = Captioner(
        image_shape=meta["image_shape"], vocab=meta["vocab"], text_len=meta["text_len"],
        image_mean=meta.get("image_mean", 0.5), image_std=meta.get("image_std", 0.5), hf_config=hf.to_dict(),
    )  # fmt: skip
    model.net.load_state_dict(pretrained.state_dict())
    return model
