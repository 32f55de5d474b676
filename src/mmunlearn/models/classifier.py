"""`MultimodalClassifier`: one encoder per modality, concatenation fusion, a linear head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..configs import make_config
from ..errors import ConfigError, DataError
from .base import MODELS, MultimodalModel
from .encoders import VIDEO_POOLINGS, ConvEncoder, VideoEncoder


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture and training-objective knobs of `MultimodalClassifier`.

    Attributes:
        input_shapes: modality -> shape of one input, e.g. ``{"image": [1, 32, 32], "audio": [40, 64]}``; a
            video is ``[T, C, H, W]`` (e.g. ``{"video": [8, 1, 32, 32], "audio": [40, 64]}``).
        num_classes: number of classes.
        feat_dim: feature size of each modality encoder.
        width: channels of the first conv block.
        modality_dropout: probability that a training sample loses one of its modalities (never all),
            so that each modality alone must predict and the unimodal logits mean something.
        unimodal_weight: weight of the unimodal cross-entropy terms added to the fused one.
        video_pooling: how the video encoder pools its per-frame features over time: ``"mean"`` or a learned
            ``"attention"`` (see `VideoEncoder`); unused without video.
    """

    input_shapes: dict[str, Any]
    num_classes: int
    feat_dim: int = 64
    width: int = 32
    modality_dropout: float = 0.3
    unimodal_weight: float = 0.5
    video_pooling: str = "mean"

    def __post_init__(self) -> None:
        if self.video_pooling not in VIDEO_POOLINGS:
            raise ConfigError(
                f"unknown video_pooling {self.video_pooling!r}; choose one of {', '.join(VIDEO_POOLINGS)}"
            )
        video = self.input_shapes.get("video")
        if video is not None and len(video) != 4:
            raise ConfigError(f"input_shapes['video'] must be [T, C, H, W], got {list(video)}")


@MODELS.register("multimodal-classifier")
class MultimodalClassifier(MultimodalModel):
    """Late-fusion classifier: ``logits = b + sum_m W_m f_m(x_m)`` over present modalities.

    The unimodal logits of modality m are ``b + W_m f_m(x_m)``: the head's weight block of that modality
    applied to its features with the others absent, so that image-only and audio-only accuracy are
    defined for every model. A missing modality (presence mask False) contributes zero features.
    """

    kind = "multimodal-classifier"

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self.config: ClassifierConfig = make_config(ClassifierConfig, config)
        c = self.config
        self.modalities = tuple(m for m in ("image", "audio", "text", "video") if m in c.input_shapes)
        self.encoders = nn.ModuleDict({m: self._encoder(m, tuple(c.input_shapes[m])) for m in self.modalities})
        self.head = nn.Linear(c.feat_dim * len(self.modalities), c.num_classes)

    def _encoder(self, modality: str, shape: tuple[int, ...]) -> nn.Module:
        """The encoder of one modality: per-frame conv + temporal pooling for video, a conv net otherwise."""
        c = self.config
        if modality == "video":
            return VideoEncoder(shape, c.feat_dim, c.width, c.video_pooling)  # type: ignore[arg-type]
        in_shape = shape if len(shape) == 3 else (1, *shape)
        return ConvEncoder(in_shape, c.feat_dim, c.width, standardize=modality == "audio")  # type: ignore[arg-type]

    def embed(self, batch: dict[str, Tensor], modality: str) -> Tensor:
        """Features of one modality, ignoring its presence mask.

        Returns:
            (B, feat_dim) features.
        """
        if modality not in self.encoders:
            raise DataError(f"this model has no {modality!r} encoder; it has {list(self.modalities)}")
        return self.encoders[modality](batch[modality])

    def features(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Features of every modality with missing ones zeroed.

        Returns:
            modality -> (B, feat_dim).
        """
        out = {}
        for m in self.modalities:
            f = self.embed(batch, m)
            present = batch.get(f"present_{m}")
            out[m] = f if present is None else f * present.to(f.dtype).unsqueeze(1)
        return out

    def _block(self, modality: str) -> Tensor:
        i = self.modalities.index(modality)
        d = self.config.feat_dim
        return self.head.weight[:, i * d : (i + 1) * d]

    def logits_from_features(self, feats: dict[str, Tensor]) -> Tensor:
        """Head applied to the given modality features (absent modalities contribute nothing).

        Returns:
            (B, num_classes) logits.
        """
        out: Tensor = self.head.bias
        for m, f in feats.items():
            out = out + f @ self._block(m).T
        return out

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Fused logits over the present modalities. Returns (B, num_classes)."""
        return self.logits_from_features(self.features(batch))

    def modality_logits(self, batch: dict[str, Tensor], modality: str) -> Tensor:
        """Unimodal logits: the head's block for ``modality`` on its features alone. Returns (B, num_classes)."""
        return self.logits_from_features({modality: self.embed(batch, modality)})

    def _dropout_masks(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Presence masks after modality dropout: a dropped sample loses one random present modality."""
        masks = {
            m: batch.get(f"present_{m}", torch.ones(len(batch[m]), dtype=torch.bool)).clone() for m in self.modalities
        }
        if self.config.modality_dropout <= 0 or len(self.modalities) < 2:
            return masks
        n = len(batch[self.modalities[0]])
        stacked = torch.stack([masks[m] for m in self.modalities], 1)
        drop = (torch.rand(n) < self.config.modality_dropout) & (stacked.sum(1) > 1)
        which = torch.multinomial(stacked.float() + 1e-9, 1).squeeze(1)
        for i, m in enumerate(self.modalities):
            masks[m] &= ~(drop & (which == i))
        return masks

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The recipe's objective: fused CE under modality dropout + ``unimodal_weight`` x mean unimodal CE.

        Unimodal terms are averaged over the samples in which that modality is present.
        """
        return self.loss_from_features(batch, {m: self.embed(batch, m) for m in self.modalities})

    def loss_from_features(self, batch: dict[str, Tensor], raw: dict[str, Tensor]) -> Tensor:
        """`loss` on features already computed by `embed` (so a caller that needs them too runs the encoders once).

        Args:
            batch: the batch (labels, presence masks).
            raw: modality -> (B, feat_dim) features from `embed`, presence masks not applied.
        """
        y = batch["label"]
        masks = self._dropout_masks(batch)
        fused = self.logits_from_features({m: raw[m] * masks[m].to(raw[m].dtype).unsqueeze(1) for m in self.modalities})
        total = F.cross_entropy(fused, y)
        if self.config.unimodal_weight > 0:
            for m in self.modalities:
                present = batch.get(f"present_{m}")
                per = F.cross_entropy(self.logits_from_features({m: raw[m]}), y, reduction="none")
                if present is not None:
                    per = per[present]
                if per.numel():
                    total = total + self.config.unimodal_weight * per.mean() / len(self.modalities)
        return total
