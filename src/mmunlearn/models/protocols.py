"""What a method needs from a model, as `typing.Protocol` classes.

A method declares the protocols it can work with (``Unlearner.requires``, ``Protector.requires``); any
`torch.nn.Module` that has the listed members works, whether it comes from `mmunlearn.models` or from
the user (docs/own-model.md shows how to adapt one). `require` checks a model before any work and names
every missing member in one error.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from ..errors import ConfigError

Batch = dict[str, Tensor]
ADAPTER_DOCS = "docs/own-model.md"


class TorchModule(Protocol):
    """The part of `torch.nn.Module` the loops use (every `nn.Module` has it)."""

    training: bool

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...
    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, nn.Parameter]]: ...
    def modules(self) -> Iterator[nn.Module]: ...
    def train(self, mode: bool = True) -> Any: ...
    def eval(self) -> Any: ...
    def requires_grad_(self, requires_grad: bool = True) -> Any: ...
    def zero_grad(self, set_to_none: bool = True) -> None: ...
    def state_dict(self, *args: Any, **kwargs: Any) -> Any: ...
    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any: ...


@runtime_checkable
class Trainable(TorchModule, Protocol):
    """A module with its own training objective (what the training loop needs)."""

    def loss(self, batch: Batch) -> Tensor:
        """The model's own training objective on a batch (a scalar)."""
        ...


@runtime_checkable
class ShardedLoss(Protocol):
    """A model whose objective couples the samples of a batch (a contrastive loss: every other pair is a
    negative), so that under torchrun a rank's shard needs the other ranks' samples (what the training loop
    calls there instead of ``loss``)."""

    def sharded_loss(self, batch: Batch) -> Tensor:
        """This rank's part of the objective of the global batch whose shard ``batch`` is (collective): the
        ranks' values weighted by their shares of the global batch sum to ``loss`` of the global batch."""
        ...


@runtime_checkable
class Classifier(TorchModule, Protocol):
    """A multimodal classifier with one encoder per modality and a head over their features.

    ``batch`` is a dict: ``{modality: (B, ...) inputs, "present_<modality>": bool (B,), "label": (B,)}``.
    A missing modality (presence False) contributes nothing to the fused prediction.
    """

    modalities: tuple[str, ...]

    def __call__(self, batch: Batch) -> Tensor:
        """Fused logits (B, classes) over the present modalities."""
        ...

    def embed(self, batch: Batch, modality: str) -> Tensor:
        """(B, D) features of one modality, presence ignored."""
        ...

    def features(self, batch: Batch) -> dict[str, Tensor]:
        """Every modality's features, missing ones zeroed."""
        ...

    def logits_from_features(self, feats: dict[str, Tensor]) -> Tensor:
        """The head on the given modalities' features (absent modalities contribute nothing)."""
        ...

    def modality_logits(self, batch: Batch, modality: str) -> Tensor:
        """Unimodal logits: the head on one modality's features alone."""
        ...

    def loss(self, batch: Batch) -> Tensor:
        """The model's own training objective (a scalar)."""
        ...

    def loss_from_features(self, batch: Batch, raw: dict[str, Tensor]) -> Tensor:
        """`loss` on features already computed by `embed` (presence not applied)."""
        ...


@runtime_checkable
class DualEncoderModel(TorchModule, Protocol):
    """A CLIP-style image tower and text tower mapping into one normalised embedding space."""

    def encode_image(self, images: Tensor) -> Tensor:
        """(B, C, H, W) images in [0, 1] -> (B, D) L2-normalised embeddings."""
        ...

    def encode_text(self, ids: Tensor, token_embeddings: Tensor | None = None) -> Tensor:
        """(B, L) token ids (or their (B, L, E) token embeddings) -> (B, D) L2-normalised embeddings."""
        ...

    def token_embedding(self) -> nn.Embedding:
        """The text tower's token embedding table (HotFlip ranks replacement words with it)."""
        ...

    def logit_scale(self) -> Tensor:
        """The inverse temperature of the similarity logits (a scalar)."""
        ...

    def loss(self, batch: Batch) -> Tensor:
        """The contrastive training objective on a batch of matched pairs."""
        ...


@runtime_checkable
class CaptionerModel(TorchModule, Protocol):
    """A generative image captioner: an image encoder and a text decoder trained with token cross-entropy.

    Ids are those of the model's own decoder vocabulary (`mmunlearn.models.captioner.Captioner`: the
    dataset's word ids, BOS and EOS after them). ``batch`` holds ``"image"`` (B, C, H, W) in [0, 1] and
    ``"text"`` (B, L) caption id rows (0-padded). Decoding-time methods plug into `generate`.
    """

    def loss(self, batch: Batch) -> Tensor:
        """Teacher-forced token cross-entropy of the batch's captions (padding ignored; a scalar)."""
        ...

    def caption_logits(self, batch: Batch) -> Tensor:
        """(B, T, V) teacher-forced next-token logits of the captions given the images."""
        ...

    def caption_targets(self, batch: Batch) -> Tensor:
        """(B, T) the targets of `caption_logits` (caption tokens then EOS), -100 where ignored."""
        ...

    def image_features(self, images: Tensor) -> Tensor:
        """(B, C, H, W) images in [0, 1] -> (B, D) pooled image-encoder features (what a guard reads)."""
        ...

    def generate(
        self, images: Tensor, max_new_tokens: int | None = None, logits_processor: Any = None, **kwargs: Any
    ) -> Tensor:
        """(B, T) generated ids (greedy by default): no BOS, EOS where emitted, padding (0) after it.
        ``logits_processor`` (a ``transformers.LogitsProcessorList``) and ``kwargs`` reach HF ``generate()``."""
        ...

    def decode(self, ids: Tensor) -> list[str]:
        """Id rows -> caption strings, up to the first EOS, special tokens dropped."""
        ...


KINDS: dict[type, str] = {Classifier: "classifier", DualEncoderModel: "dual-encoder", CaptionerModel: "captioner"}
"""The model kind each protocol stands for (``mmunlearn list`` shows these per method)."""


def members(protocol: type) -> list[str]:
    """The members a model must have to satisfy ``protocol`` (those of `nn.Module` excluded)."""
    names: set[str] = set()
    for cls in inspect.getmro(protocol):
        if cls in (TorchModule, Protocol, object) or not getattr(cls, "_is_protocol", False):
            continue
        names |= {n for n in vars(cls) if not n.startswith("_")} | set(vars(cls).get("__annotations__", {}))
    return sorted(names)


def missing_members(model: object, protocol: type) -> list[str]:
    """The members of ``protocol`` that ``model`` lacks (a declared method that is not callable counts as missing)."""
    out = []
    for name in members(protocol):
        declared = inspect.getattr_static(protocol, name, None)
        value = getattr(model, name, None)
        if value is None or (inspect.isfunction(declared) and not callable(value)):
            out.append(name)
    return out


def require(model: object, protocols: tuple[type, ...], user: str) -> type:
    """The first of ``protocols`` that ``model`` satisfies; otherwise one `ConfigError` naming what is missing.

    Args:
        model: the model handed to a method.
        protocols: what ``user`` can work with, in order of preference.
        user: who asks (e.g. ``"unlearner 'ccu'"``), for the message.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{user} needs a torch.nn.Module, got {type(model).__name__}; see {ADAPTER_DOCS}")
    gaps = {p: missing_members(model, p) for p in protocols}
    for p, gap in gaps.items():
        if not gap:
            return p
    detail = "; ".join(f"as a {KINDS.get(p, p.__name__)} it lacks {', '.join(gap)}" for p, gap in gaps.items())
    raise ConfigError(f"{user} cannot use {type(model).__name__}: {detail}. Wrap the model as shown in {ADAPTER_DOCS}")


def kind_names(protocols: tuple[type, ...]) -> list[str]:
    """The model kinds of ``protocols`` (for ``mmunlearn list``)."""
    return [KINDS.get(p, p.__name__) for p in protocols]
