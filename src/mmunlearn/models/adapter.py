"""`ClassifierAdapter`: the `Classifier` protocol over a user's own encoders and head."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, DataError

Batch = dict[str, Tensor]


class ClassifierAdapter(nn.Module):
    """Late fusion over a user's modules: each encoder's features, concatenated in ``modalities`` order
    (a missing modality contributes zeros), go through the user's head.

    The adapter owns no weights of its own: ``encoders`` and ``head`` are the user's modules (not
    copies). Pass the user's whole network as ``network`` to get it back from any copy the library
    makes: ``result.model.network`` is the edited network, its submodules shared with the adapter's
    ``encoders`` and ``head`` (it is not a registered submodule, so its weights are not listed twice).

    Args:
        encoders: modality -> module mapping that modality's (B, ...) input to (B, feature_dims[modality]).
        head: module mapping the (B, sum of feature dims) concatenation to (B, classes) logits.
        feature_dims: modality -> feature size of its encoder.
        unimodal_weight: weight of the unimodal cross-entropy terms added to the fused one in `loss`
            (each modality alone through the head), so that unimodal logits keep their meaning.
        network: the user's network that owns ``encoders`` and ``head`` (optional).
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        head: nn.Module,
        feature_dims: Mapping[str, int],
        unimodal_weight: float = 0.5,
        network: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if set(encoders) != set(feature_dims):
            raise ConfigError(f"feature_dims names {sorted(feature_dims)}, the encoders {sorted(encoders)}")
        self.modalities = tuple(encoders)
        self.encoders = nn.ModuleDict(dict(encoders))
        self.head = head
        self.feature_dims = dict(feature_dims)
        self.unimodal_weight = unimodal_weight
        self.__dict__["network"] = network  # not registered: deep copies still share its submodules

    def embed(self, batch: Batch, modality: str) -> Tensor:
        if modality not in self.encoders:
            raise DataError(f"this model has no {modality!r} encoder; it has {list(self.modalities)}")
        return self.encoders[modality](batch[modality])

    def features(self, batch: Batch) -> dict[str, Tensor]:
        return {m: _masked(self.embed(batch, m), batch.get(f"present_{m}")) for m in self.modalities}

    def logits_from_features(self, feats: dict[str, Tensor]) -> Tensor:
        n = len(next(iter(feats.values())))
        ref = next(iter(feats.values()))
        parts = [feats.get(m, ref.new_zeros(n, self.feature_dims[m])) for m in self.modalities]
        return self.head(torch.cat(parts, dim=1))

    def forward(self, batch: Batch) -> Tensor:
        return self.logits_from_features(self.features(batch))

    def modality_logits(self, batch: Batch, modality: str) -> Tensor:
        return self.logits_from_features({modality: self.embed(batch, modality)})

    def loss(self, batch: Batch) -> Tensor:
        return self.loss_from_features(batch, {m: self.embed(batch, m) for m in self.modalities})

    def loss_from_features(self, batch: Batch, raw: dict[str, Tensor]) -> Tensor:
        y = batch["label"]
        fused = {m: _masked(raw[m], batch.get(f"present_{m}")) for m in self.modalities}
        total = F.cross_entropy(self.logits_from_features(fused), y)
        if self.unimodal_weight > 0:
            for m in self.modalities:
                per = F.cross_entropy(self.logits_from_features({m: raw[m]}), y, reduction="none")
                present = batch.get(f"present_{m}")
                per = per if present is None else per[present]
                if per.numel():
                    total = total + self.unimodal_weight * per.mean() / len(self.modalities)
        return total


def _masked(features: Tensor, present: Tensor | None) -> Tensor:
    return features if present is None else features * present.to(features.dtype).unsqueeze(1)
