"""`DualEncoder`: a CLIP-style image tower and text tower trained with the symmetric InfoNCE loss."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import distributed
from ..configs import make_config
from ..data.tokenizer import WordTokenizer
from ..errors import ConfigError
from .base import MODELS, MultimodalModel
from .encoders import ConvEncoder, ResNetEncoder, TextEncoder


@dataclass(frozen=True)
class DualEncoderConfig:
    """Architecture knobs of `DualEncoder`.

    Attributes:
        image_shape: (C, H, W) of one image.
        vocab: the word-level vocabulary (saved with the model so it can encode raw text later).
        text_len: token row length.
        embed_dim: size of the shared embedding space.
        width: channels of the first conv block of the image tower.
        text_dim: width of the text transformer.
        text_layers: transformer layers.
        init_temperature: initial softmax temperature (CLIP: 0.07); it is learned, capped at 1/100.
        image_encoder: image tower architecture, one of `IMAGE_ENCODERS`: ``"cnn"`` (`ConvEncoder`, the
            default) or ``"resnet"`` (`ResNetEncoder`, for surrogate-to-victim transfer experiments).
    """

    image_shape: tuple[int, ...]
    vocab: tuple[str, ...]
    text_len: int
    embed_dim: int = 128
    width: int = 32
    text_dim: int = 128
    text_layers: int = 2
    init_temperature: float = 0.07
    image_encoder: str = "cnn"

    def __post_init__(self) -> None:
        if self.image_encoder not in IMAGE_ENCODERS:
            raise ConfigError(f"unknown image_encoder {self.image_encoder!r}; choose one of {sorted(IMAGE_ENCODERS)}")


IMAGE_ENCODERS = {"cnn": ConvEncoder, "resnet": ResNetEncoder}
"""Image tower architectures by config name (both take ``(in_shape, out_dim, width)``)."""


def clip_loss(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE over a batch of matched pairs (row i of each is a pair).

    Args:
        image_emb: (B, D) L2-normalised image embeddings.
        text_emb: (B, D) L2-normalised text embeddings.
        logit_scale: scalar, the inverse temperature (already exponentiated).

    Returns:
        Scalar: mean of the image-to-text and text-to-image cross-entropies.
    """
    logits = logit_scale * image_emb @ text_emb.T
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def sharded_clip_loss(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor) -> Tensor:
    """This rank's rows of `clip_loss` over the global batch, when the batch is sharded over ranks (torchrun).

    Each rank holds its shard's pairs; the negatives of a pair are every pair of the global batch
    (`mmunlearn.distributed.gather_rows`), as in one process. Returns the mean over this rank's rows of the
    two cross-entropies; the ranks' means weighted by their shares sum to the one-process `clip_loss`, and
    the gathered rows carry their gradients back to their ranks. Without a process group it is a plain
    (local) `clip_loss` computed another way (same value up to float rounding).
    """
    images, start = distributed.gather_rows(image_emb)
    texts, _ = distributed.gather_rows(text_emb)
    target = torch.arange(start, start + len(image_emb), device=image_emb.device)
    i2t = F.cross_entropy(logit_scale * image_emb @ texts.T, target)
    t2i = F.cross_entropy(logit_scale * text_emb @ images.T, target)
    return (i2t + t2i) / 2


@MODELS.register("dual-encoder")
class DualEncoder(MultimodalModel):
    """Image tower (conv net or small ResNet) and text tower (tiny transformer) projected to one normalised space."""

    kind = "dual-encoder"
    modalities = ("image", "text")

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self.config: DualEncoderConfig = make_config(DualEncoderConfig, config)
        c = self.config
        self.tokenizer = WordTokenizer(list(c.vocab), c.text_len)
        tower = IMAGE_ENCODERS[c.image_encoder]
        self.image_encoder = tower(tuple(c.image_shape), c.embed_dim, c.width)
        self.text_encoder = TextEncoder(len(c.vocab), c.text_len, c.embed_dim, c.text_dim, c.text_layers)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / c.init_temperature)))

    def logit_scale(self) -> Tensor:
        """The inverse temperature, capped at 100 as in CLIP so training stays stable."""
        return self.log_scale.clamp(max=math.log(100.0)).exp()

    def encode_image(self, images: Tensor) -> Tensor:
        """(B, C, H, W) images in [0, 1] -> (B, embed_dim) L2-normalised embeddings."""
        return F.normalize(self.image_encoder(images), dim=-1)

    def encode_text(self, ids: Tensor, token_embeddings: Tensor | None = None) -> Tensor:
        """(B, L) token ids -> (B, embed_dim) L2-normalised embeddings (see `TextEncoder.forward`)."""
        return F.normalize(self.text_encoder(ids, token_embeddings), dim=-1)

    def token_embedding(self) -> nn.Embedding:
        """The text tower's token embedding table."""
        return self.text_encoder.token

    def encode_captions(self, captions: list[str]) -> Tensor:
        """Raw captions -> (B, embed_dim) embeddings, through the tokenizer saved with the model."""
        return self.encode_text(self.tokenizer.encode(captions).to(self.log_scale.device))

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Similarity logits of the batch's images against its texts. Returns (B, B)."""
        return self.logit_scale() * self.encode_image(batch["image"]) @ self.encode_text(batch["text"]).T

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        """Symmetric InfoNCE on the batch's (image, text) pairs."""
        return clip_loss(self.encode_image(batch["image"]), self.encode_text(batch["text"]), self.logit_scale())

    def sharded_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """`loss` when ``batch`` is this rank's shard of a global batch (torchrun): InfoNCE over the global
        batch's pairs, this rank's rows (`sharded_clip_loss`; collective)."""
        return sharded_clip_loss(self.encode_image(batch["image"]), self.encode_text(batch["text"]), self.logit_scale())
