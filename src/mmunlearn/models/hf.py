"""`HFDualEncoder`: a Hugging Face ``CLIPModel``, ``SiglipModel`` or ``ClapModel`` as a `DualEncoderModel`.

``transformers`` (the ``hf`` extra) is imported only when such a model is built or loaded, so the rest of
the library neither needs it nor pays for its import.

How the protocol maps onto the three families:

* **Images** (CLIP, SigLIP): `HFDualEncoder.encode_image` takes our (B, C, H, W) images in [0, 1] (one
  channel is repeated to three), resizes them with ``torch.nn.functional.interpolate`` the way the model's
  image processor does (CLIP: shortest edge to the model's size, then a centre crop; SigLIP: straight to
  the model's size; the processor's ``resample`` picks bicubic/bilinear/nearest) and normalises them with
  the processor's mean and std, all as torch ops, so that protectors can optimise pixels through it. The
  values are read from the folder's ``preprocessor_config.json`` and stored in the model config.
* **Audio** (CLAP): the modality that plays the *image role* is set by ``image_role`` (``"audio"`` for
  CLAP, ``"image"`` for the others). `HFDualEncoder.encode_audio` takes our (B, n_mels, T) log-mel features,
  resamples them (bilinear) to CLAP's (time, mel bins) grid and runs the audio tower; `encode_image` is
  that encoder for an audio-role model, and `loss` reads ``batch["image"]`` (``batch["audio"]`` when there
  is no image in the batch). The library's dual-encoder metrics and methods read the ``image`` slot, so
  `text_for_model` moves an audio-text dataset's ``audio`` into that slot. Our log-mel features are not
  CLAP's own front end (48 kHz, its mel filters, dB scale): a pretrained CLAP sees shifted inputs until it
  is fine-tuned.
* **Text**: our datasets store left-aligned int64 rows, 0 = padding. For a Hugging Face model, rows hold
  the model's own token ids: ``text_for_model(dataset, model)`` re-encodes the captions with the model's
  tokenizer (`HFDualEncoder.retokenize`). Id 0 is given up as padding and ids are otherwise the model's own,
  unshifted, so that `token_embedding` is the model's embedding table itself (no copy, gradients flow) and
  HotFlip ranks replacement tokens over the model's own vocabulary. Token id 0 is, in the stock
  tokenizers, a punctuation mark or a special token (CLIP ``!``, SigLIP ``<pad>``, CLAP ``<s>``) and is
  dropped from captions. The vocabulary handed to the dataset stops before the trailing special tokens
  (CLIP's ``<|startoftext|>``/``<|endoftext|>``), so that trigger tokens never include them; its entries 0
  and 1 are labelled ``[PAD]`` and ``[UNK]`` as the library's word vocabularies are. `encode_text` adds the
  model's own framing around a row: CLIP ``<bos> row <eos>`` with an attention mask; SigLIP ``row <eos>``
  padded to the model's full text length with no mask (its pooler reads the last position); CLAP
  ``<s> row </s>`` with a mask.
* **Scale and loss**: `logit_scale` is the inverse temperature of the retrieval logits (CLIP, SigLIP:
  ``exp(logit_scale)``; CLAP: ``exp(logit_scale_a)``, the audio-to-text one). `loss` is the model's own
  objective, computed by the Hugging Face forward with ``return_loss=True``: CLIP's symmetric InfoNCE,
  CLAP's InfoNCE, SigLIP's pairwise sigmoid loss, which also uses SigLIP's learned bias (`logit_bias`).
  Methods that build their own InfoNCE from ``logit_scale()`` (MEM's PGD, CCU...) use the retrieval
  logits without the bias; the bias shifts every logit of a row equally and so cancels in a softmax.

A folder written by ``save_pretrained`` is read by `load_hf_model` (``config.json`` + safetensors weights,
never a pickle). `mmunlearn.checkpoint.save_checkpoint` stores an `HFDualEncoder` in the library's format:
the manifest's config is `HFDualEncoderConfig` (the Hugging Face config dict included) and the tokenizer's
files are attachments named ``hf-tokenizer-<file>``, so the checkpoint reloads with no hub access.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..configs import make_config
from ..data.builder import SPLITS
from ..data.core import MultimodalDataset
from ..data.store import DatasetSplits
from ..data.tokenizer import PAD, UNK
from ..errors import CheckpointError, ConfigError, DataError
from .base import MODELS, MultimodalModel

HF_CONFIG = "config.json"
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
OTHER_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
PREPROCESSOR = "preprocessor_config.json"
TOKENIZER_PREFIX = "hf-tokenizer-"
"""Checkpoint attachments holding the tokenizer's files (``hf-tokenizer-tokenizer.json`` ...)."""
INTERPOLATION = {0: "nearest", 2: "bilinear", 3: "bicubic"}
"""PIL resample codes of image processors -> `torch.nn.functional.interpolate` modes."""


@dataclass(frozen=True)
class Family:
    """What differs between the supported model families.

    Attributes:
        model_class: the ``transformers`` class.
        image_role: which modality pairs with text (``"image"`` or ``"audio"``).
        bos: a begin-of-text token is put before the row.
        fixed_length: rows are padded to the model's full text length (SigLIP's pooler reads the last one).
        attention_mask: the text tower is given an attention mask.
        position_offset: text positions used up before the first token (RoBERTa's ``pad_token_id + 1``).
    """

    model_class: str
    image_role: str
    bos: bool
    fixed_length: bool
    attention_mask: bool
    position_offset: bool = False


FAMILIES = {
    "clip": Family("CLIPModel", "image", bos=True, fixed_length=False, attention_mask=True),
    "siglip": Family("SiglipModel", "image", bos=False, fixed_length=True, attention_mask=False),
    "clap": Family("ClapModel", "audio", bos=True, fixed_length=False, attention_mask=True, position_offset=True),
}
"""The supported ``model_type`` values of ``config.json``."""

# Tokenizers of the models built in this process, by the SHA-256 of their files: a copy of a model
# (`copy.deepcopy`, `fresh_copy`) finds its tokenizer here, and the model itself stays picklable.
_TOKENIZERS: dict[str, Any] = {}
_VOCABS: dict[tuple[str | None, int], tuple[str, ...]] = {}


def _transformers() -> Any:
    """The ``transformers`` module, or a `ConfigError` saying how to install it."""
    try:
        return importlib.import_module("transformers")
    except ImportError as e:
        raise ConfigError("Hugging Face models need transformers: pip install 'mmunlearn[hf]'") from e


def _family(model_type: Any) -> Family:
    if model_type not in FAMILIES:
        raise ConfigError(
            f"unsupported Hugging Face model_type {model_type!r}; supported: {', '.join(sorted(FAMILIES))}"
        )
    return FAMILIES[model_type]


@dataclass(frozen=True)
class HFDualEncoderConfig:
    """What rebuilds an `HFDualEncoder` (weights aside).

    Attributes:
        hf_config: the Hugging Face config as a dict (``model_type`` is ``clip``, ``siglip`` or ``clap``).
        image_role: the modality paired with text: ``"image"`` (CLIP, SigLIP) or ``"audio"`` (CLAP).
        image_size: (height, width) the vision tower takes.
        resize: ``"shortest_edge"`` (scale the shortest edge to the smaller of ``image_size``, then centre
            crop) or ``"exact"`` (scale straight to ``image_size``).
        interpolation: ``"bicubic"``, ``"bilinear"`` or ``"nearest"``.
        image_mean: per-channel mean of the image processor's normalisation.
        image_std: per-channel std of the image processor's normalisation.
        bos_id: begin-of-text id (None: the family puts none).
        eos_id: end-of-text id.
        pad_id: the model's padding id (what id 0 of our rows becomes).
        vocab_size: ids a row may hold: 1 .. vocab_size - 1 (the trailing special tokens excluded).
        tokenizer_sha256: fingerprint of the tokenizer's files, or None for a model without a tokenizer.
    """

    hf_config: dict[str, Any]
    image_role: str
    vocab_size: int
    eos_id: int
    pad_id: int
    bos_id: int | None = None
    image_size: tuple[int, ...] = (224, 224)
    resize: str = "exact"
    interpolation: str = "bicubic"
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    tokenizer_sha256: str | None = None

    def __post_init__(self) -> None:
        family = _family(self.hf_config.get("model_type"))
        if self.image_role != family.image_role:
            raise ConfigError(f"a {self.hf_config['model_type']} model pairs text with {family.image_role}")
        if self.resize not in ("shortest_edge", "exact"):
            raise ConfigError(f"resize must be 'shortest_edge' or 'exact', got {self.resize!r}")
        if self.interpolation not in INTERPOLATION.values():
            raise ConfigError(f"interpolation must be one of {sorted(INTERPOLATION.values())}")
        if len(self.image_size) != 2 or len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ConfigError("image_size needs (height, width); image_mean and image_std need 3 values")
        if self.vocab_size < 3:
            raise ConfigError(f"vocab_size must be at least 3, got {self.vocab_size}")


@MODELS.register("hf-dual-encoder")
class HFDualEncoder(MultimodalModel):
    """A Hugging Face CLIP, SigLIP or CLAP model behind the `DualEncoderModel` protocol (see the module doc).

    Args:
        hf_model: an already built ``transformers`` model for ``config`` (used by `load_hf_model`); None
            builds one with freshly initialised weights (the global RNG decides them).
        **config: the `HFDualEncoderConfig` fields.
    """

    kind = "hf-dual-encoder"
    modalities = ("image", "text")
    image_mean: Tensor
    image_std: Tensor

    def __init__(self, hf_model: nn.Module | None = None, **config: Any) -> None:
        super().__init__()
        self.config: HFDualEncoderConfig = make_config(HFDualEncoderConfig, config)
        self.family = _family(self.config.hf_config["model_type"])
        self.hf: Any = hf_model if hf_model is not None else _build_hf(self.config.hf_config)
        c = self.config
        self.register_buffer("image_mean", torch.tensor(c.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(c.image_std).view(1, 3, 1, 1), persistent=False)

    # -- the protocol -----------------------------------------------------------------------------
    def logit_scale(self) -> Tensor:
        """The inverse temperature of the retrieval logits (a scalar; CLAP: the audio-to-text one)."""
        raw = self.hf.logit_scale_a if self.family.image_role == "audio" else self.hf.logit_scale
        return raw.exp().reshape(())

    def logit_bias(self) -> Tensor | None:
        """SigLIP's learned logit bias (used by its sigmoid `loss`); None for the other families."""
        bias = getattr(self.hf, "logit_bias", None)
        return bias.reshape(()) if isinstance(bias, Tensor) else None

    def encode_image(self, images: Tensor) -> Tensor:
        """Inputs of the image role -> (B, D) L2-normalised embeddings.

        Args:
            images: (B, C, H, W) images in [0, 1]; for an audio-role model (CLAP), (B, n_mels, T) log-mel.
        """
        if self.family.image_role == "audio":
            return self.encode_audio(images)
        out = self.hf.get_image_features(pixel_values=self.pixel_values(images))
        return F.normalize(out.pooler_output, dim=-1)

    def encode_audio(self, features: Tensor) -> Tensor:
        """(B, n_mels, T) log-mel features -> (B, D) L2-normalised embeddings (CLAP only)."""
        if self.family.image_role != "audio":
            raise ConfigError(f"a {self.config.hf_config['model_type']} model has no audio tower")
        input_features, is_longer = self.audio_features(features)
        out = self.hf.get_audio_features(input_features=input_features, is_longer=is_longer)
        return F.normalize(out.pooler_output, dim=-1)

    def encode_text(self, ids: Tensor, token_embeddings: Tensor | None = None) -> Tensor:
        """(B, L) rows of the model's token ids (0 = padding) -> (B, D) L2-normalised embeddings.

        Args:
            ids: int64 left-aligned rows, as `retokenize` makes them.
            token_embeddings: optional (B, L, E) replacement of ``token_embedding()(ids)`` (HotFlip's
                gradient flows through it); the model's framing tokens keep their own embeddings.
        """
        if token_embeddings is not None and tuple(token_embeddings.shape[:2]) != tuple(ids.shape):
            raise DataError(f"token_embeddings {tuple(token_embeddings.shape)} do not match the ids {tuple(ids.shape)}")
        input_ids, mask, body, offset = self.text_inputs(ids)
        with self._injected(token_embeddings, body, offset):
            out = self.hf.get_text_features(input_ids=input_ids, attention_mask=mask)
        return F.normalize(out.pooler_output, dim=-1)

    def token_embedding(self) -> nn.Embedding:
        """The Hugging Face text embedding table itself (rows are indexed by our ids, which are the model's)."""
        table = self.hf.text_model.get_input_embeddings()
        assert isinstance(table, nn.Embedding)
        return table

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, B) logits of the batch's image-role inputs against its texts (SigLIP: bias included)."""
        logits = self.logit_scale() * self.encode_image(self._role_input(batch)) @ self.encode_text(batch["text"]).T
        bias = self.logit_bias()
        return logits if bias is None else logits + bias

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The model's own objective (Hugging Face forward, ``return_loss=True``) on the batch's pairs."""
        input_ids, mask, _, _ = self.text_inputs(batch["text"])
        x = self._role_input(batch)
        if self.family.image_role == "audio":
            features, is_longer = self.audio_features(x)
            out = self.hf(
                input_ids=input_ids, attention_mask=mask, input_features=features, is_longer=is_longer, return_loss=True
            )
        else:
            out = self.hf(input_ids=input_ids, attention_mask=mask, pixel_values=self.pixel_values(x), return_loss=True)
        return out.loss

    # -- inputs -----------------------------------------------------------------------------------
    def pixel_values(self, images: Tensor) -> Tensor:
        """(B, C, H, W) images in [0, 1] -> the vision tower's normalised (B, 3, h, w) input (differentiable).

        Raises:
            DataError: not a batch of 1- or 3-channel images.
        """
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise DataError(f"{self.kind} needs (B, 1 or 3, H, W) images, got {tuple(images.shape)}")
        x = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        h, w = self.config.image_size
        if self.config.resize == "shortest_edge":
            scale = min(h, w) / min(x.shape[-2:])
            x = self._resized(x, (round(x.shape[-2] * scale), round(x.shape[-1] * scale)))
            top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
            x = x[..., top : top + h, left : left + w]
        else:
            x = self._resized(x, (h, w))
        return (x - self.image_mean) / self.image_std

    def _resized(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        if tuple(x.shape[-2:]) == size:
            return x
        mode = self.config.interpolation
        if mode == "nearest":
            return F.interpolate(x, size=size, mode=mode)
        shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=shrink)

    def audio_features(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """(B, n_mels, T) log-mel -> CLAP's (B, channels, time, mel bins) input and its ``is_longer`` flags.

        The features are resampled (bilinear) to the audio tower's full time span and mel bins; a fused
        CLAP gets the same view in its four channels and ``is_longer`` False (no fusion).
        """
        if features.dim() != 3:
            raise DataError(f"{self.kind} needs (B, n_mels, T) audio features, got {tuple(features.shape)}")
        audio = self.config.hf_config["audio_config"]
        spec, mels = int(audio["spec_size"]), int(audio["num_mel_bins"])
        frames = spec * (spec // mels)
        x = F.interpolate(features.transpose(1, 2).unsqueeze(1), size=(frames, mels), mode="bilinear")
        if audio.get("enable_fusion"):
            x = x.expand(-1, 4, -1, -1)
        return x, torch.zeros(len(x), 1, dtype=torch.bool, device=x.device)

    def _role_input(self, batch: Mapping[str, Tensor]) -> Tensor:
        if "image" not in batch and self.family.image_role == "audio" and "audio" in batch:
            return batch["audio"]
        return batch["image"]

    @property
    def max_text_len(self) -> int:
        """The longest row (tokens, framing excluded) the text tower takes."""
        text = self.config.hf_config["text_config"]
        positions = int(text["max_position_embeddings"])
        if self.family.position_offset:
            positions -= int(text.get("pad_token_id", 1)) + 1
        return positions - 1 - int(self.family.bos)

    def text_inputs(self, ids: Tensor) -> tuple[Tensor, Tensor | None, Tensor, int]:
        """Our rows -> the model's (B, S) input ids, attention mask (or None), body mask and body offset.

        Raises:
            DataError: not int64 (B, L) rows, an id outside ``1 .. vocab_size - 1``, or a row too long.
        """
        if ids.dim() != 2 or ids.dtype != torch.long:
            raise DataError(f"{self.kind} needs int64 (B, L) token rows, got {ids.dtype} {tuple(ids.shape)}")
        c = self.config
        body = ids != 0
        positions = torch.arange(1, ids.shape[1] + 1, device=ids.device)
        lengths = (positions * body).amax(1) if ids.numel() else torch.zeros(len(ids), dtype=torch.long)
        used = int(lengths.max()) if len(ids) else 0
        if used > self.max_text_len:
            raise DataError(f"a text row has {used} tokens; {self.kind} takes at most {self.max_text_len}")
        if used and (int(ids.max()) >= c.vocab_size or int(ids.min()) < 0):
            raise DataError(
                f"token ids must lie in 0..{c.vocab_size - 1} (the model's vocabulary); got {int(ids.min())}.."
                f"{int(ids.max())}: re-encode the dataset with mmunlearn.models.hf.text_for_model"
            )
        offset = int(self.family.bos)
        width = self.max_text_len + offset + 1 if self.family.fixed_length else offset + used + 1
        out = torch.full((len(ids), width), c.pad_id, dtype=torch.long, device=ids.device)
        if c.bos_id is not None and self.family.bos:
            out[:, 0] = c.bos_id
        out[:, offset : offset + used] = torch.where(body[:, :used], ids[:, :used], c.pad_id)
        out[torch.arange(len(ids), device=ids.device), offset + lengths] = c.eos_id
        positions = torch.arange(width, device=ids.device)
        mask = (positions <= (offset + lengths)[:, None]).long() if self.family.attention_mask else None
        body_mask = F.pad(body[:, :used], (offset, width - offset - used))
        return out, mask, body_mask, offset

    @contextlib.contextmanager
    def _injected(self, token_embeddings: Tensor | None, body: Tensor, offset: int) -> Iterator[None]:
        """Within the block, the text embedding table's output at the row positions is ``token_embeddings``."""
        if token_embeddings is None:
            yield
            return
        width = body.shape[1]
        used = min(token_embeddings.shape[1], width - offset)
        values = F.pad(token_embeddings[:, :used], (0, 0, offset, width - offset - used))

        def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> Tensor:
            return torch.where(body.unsqueeze(-1), values.to(output.dtype), output)

        handle = self.token_embedding().register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    # -- tokenizer --------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer, or None when it was built without one."""
        sha = self.config.tokenizer_sha256
        return _TOKENIZERS.get(sha) if sha is not None else None

    def _require_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise ConfigError(
                f"this {self.kind} has no tokenizer: load it from a save_pretrained folder with its tokenizer "
                "files, or from a checkpoint saved with them"
            )
        return self.tokenizer

    @property
    def vocab(self) -> list[str]:
        """The token strings of ids 0 .. vocab_size - 1 (0 and 1 labelled ``[PAD]`` and ``[UNK]``); a new list."""
        key = (self.config.tokenizer_sha256, self.config.vocab_size)
        if key not in _VOCABS:
            names = self._require_tokenizer().convert_ids_to_tokens(list(range(2, self.config.vocab_size)))
            _VOCABS[key] = (PAD, UNK, *(n if n is not None else f"[{i + 2}]" for i, n in enumerate(names)))
        return list(_VOCABS[key])

    def retokenize(self, captions: Sequence[str], length: int | None = None) -> Tensor:
        """Captions -> int64 (N, length) left-aligned rows of the model's own token ids, 0-padded.

        Id 0, ids past ``vocab_size`` and special tokens other than the unknown-token one are dropped (the
        framing is added by `encode_text`).

        Args:
            captions: raw captions.
            length: row length; default the longest caption's.

        Raises:
            DataError: a caption longer than ``length`` or than the text tower takes.
        """
        tok = self._require_tokenizer()
        drop = set(tok.all_special_ids) - {tok.unk_token_id}
        rows = [
            [i for i in r if 0 < i < self.config.vocab_size and i not in drop]
            for r in tok(list(captions), add_special_tokens=False)["input_ids"]
        ]
        longest = max((len(r) for r in rows), default=0)
        length = longest if length is None else length
        if longest > min(length, self.max_text_len):
            raise DataError(
                f"a caption has {longest} tokens; rows take {length} and the model at most {self.max_text_len}"
            )
        out = torch.zeros(len(rows), length, dtype=torch.long)
        for n, r in enumerate(rows):
            out[n, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out

    def tokenizer_files(self) -> dict[str, bytes]:
        """The tokenizer's files as checkpoint attachments (``hf-tokenizer-<file>``); {} without a tokenizer."""
        return {TOKENIZER_PREFIX + n: b for n, b in _saved_files(self.tokenizer).items()} if self.tokenizer else {}

    def attach_tokenizer(self, attachments: Mapping[str, bytes]) -> None:
        """Load the tokenizer from checkpoint attachments (those not named ``hf-tokenizer-*`` are ignored).

        Raises:
            CheckpointError: the files are not the ones the config's ``tokenizer_sha256`` names.
        """
        files = {n.removeprefix(TOKENIZER_PREFIX): b for n, b in attachments.items() if n.startswith(TOKENIZER_PREFIX)}
        sha = self.config.tokenizer_sha256
        if sha is None or sha in _TOKENIZERS:
            return
        if files_sha256(files) != sha:
            raise CheckpointError("the checkpoint's tokenizer files do not match the model config's tokenizer_sha256")
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            _TOKENIZERS[sha] = _transformers().AutoTokenizer.from_pretrained(tmp, local_files_only=True)


def is_tokenizer_file(name: str) -> bool:
    """Whether a checkpoint attachment holds a file of an `HFDualEncoder`'s tokenizer."""
    return name.startswith(TOKENIZER_PREFIX)


def files_sha256(files: Mapping[str, bytes]) -> str:
    """SHA-256 over the names and contents of a set of files (order-independent)."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}\n{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return h.hexdigest()


def _saved_files(tokenizer: Any) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def _build_hf(hf_config: Mapping[str, Any]) -> nn.Module:
    """A ``transformers`` model of ``hf_config`` with freshly initialised weights."""
    tf = _transformers()
    family = _family(hf_config.get("model_type"))
    cls = getattr(tf, family.model_class)
    model = cls(cls.config_class.from_dict(dict(hf_config)))
    assert isinstance(model, nn.Module)
    return model.float()


# -- loading a save_pretrained folder ----------------------------------------------------------------
def load_hf_model(folder: str | Path) -> HFDualEncoder:
    """Wrap the model of a ``save_pretrained`` folder (``config.json`` + safetensors weights), offline.

    The tokenizer (if the folder has one) is loaded with ``AutoTokenizer``; the image preprocessing comes
    from ``preprocessor_config.json`` (or the family's defaults when there is none).

    Raises:
        CheckpointError: no such folder or ``config.json``, pickle weights only, an unsupported
            ``model_type``, or weights that do not load.
    """
    folder = Path(folder)
    config_path = folder / HF_CONFIG
    if not config_path.is_file():
        raise CheckpointError(f"{folder} is not a Hugging Face model folder: it has no {HF_CONFIG}")
    try:
        model_type = json.loads(config_path.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError) as e:
        raise CheckpointError(f"cannot read {config_path}: {e}") from e
    if model_type not in FAMILIES:
        raise CheckpointError(
            f"{config_path} has model_type {model_type!r}; supported Hugging Face dual encoders: "
            f"{', '.join(sorted(FAMILIES))}"
        )
    if not any((folder / w).is_file() for w in HF_WEIGHTS):
        found = [w for w in OTHER_WEIGHTS if (folder / w).is_file()]
        what = f"it holds {', '.join(found)}" if found else "it has no model.safetensors"
        raise CheckpointError(
            f"{folder}: mmunlearn loads only safetensors weights (never pickles); {what}. Convert it with "
            "model.save_pretrained(folder, safe_serialization=True) where you trust the file"
        )
    tf = _transformers()
    family = FAMILIES[model_type]
    try:
        hf = getattr(tf, family.model_class).from_pretrained(
            str(folder), local_files_only=True, use_safetensors=True, dtype=torch.float32
        )
    except (OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot load the Hugging Face model in {folder}: {e}") from e
    tokenizer = _load_tokenizer(folder)
    config = {
        "hf_config": json.loads(hf.config.to_json_string(use_diff=False)),
        "image_role": family.image_role,
        **_text_settings(hf.config, tokenizer),
        **_image_settings(folder, hf.config, model_type),
    }
    if tokenizer is not None:
        sha = files_sha256(_saved_files(tokenizer))
        _TOKENIZERS.setdefault(sha, tokenizer)
        config["tokenizer_sha256"] = sha
    return HFDualEncoder(hf.eval(), **config)


def _load_tokenizer(folder: Path) -> Any:
    """The folder's tokenizer, or None when it has no tokenizer files."""
    names = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
    if not any((folder / n).is_file() for n in names):
        return None
    try:
        return _transformers().AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, ImportError) as e:
        raise CheckpointError(f"cannot load the tokenizer in {folder}: {e}") from e


def _text_settings(hf_config: Any, tokenizer: Any) -> dict[str, Any]:
    """Special ids (the tokenizer's, else the text config's) and the usable vocabulary size."""
    text = hf_config.text_config

    def pick(name: str) -> int | None:
        value = getattr(tokenizer, f"{name}_token_id", None) if tokenizer is not None else None
        value = value if value is not None else getattr(text, f"{name}_token_id", None)
        return int(value) if value is not None else None

    eos, pad = pick("eos"), pick("pad")
    if eos is None:
        raise CheckpointError("the model has no end-of-text token id (config.json text_config.eos_token_id)")
    specials = set(tokenizer.all_special_ids) if tokenizer is not None else {eos}
    size = int(text.vocab_size)
    while size - 1 in specials:
        size -= 1
    return {"eos_id": eos, "pad_id": pad if pad is not None else eos, "bos_id": pick("bos"), "vocab_size": size}


def _image_settings(folder: Path, hf_config: Any, model_type: str) -> dict[str, Any]:
    """Resize and normalisation of the folder's image processor (defaults: the family's)."""
    if model_type == "clap":
        return {}
    size = int(hf_config.vision_config.image_size)
    proc: dict[str, Any] = {}
    for name in (PREPROCESSOR, "processor_config.json"):
        if (folder / name).is_file():
            data = json.loads((folder / name).read_text())
            proc = data.get("image_processor", data) if isinstance(data, dict) else {}
            break
    sizes = proc.get("size") or {}
    crop = proc.get("crop_size") or {}
    shortest = "shortest_edge" in sizes and proc.get("do_center_crop", True)
    out_h = int(crop.get("height", size)) if shortest else int(sizes.get("height", size))
    out_w = int(crop.get("width", size)) if shortest else int(sizes.get("width", size))
    if (out_h, out_w) != (size, size):
        raise CheckpointError(f"{folder}: the image processor makes {out_h}x{out_w} images; the model takes {size}")
    clip_mean, clip_std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    default_mean, default_std = (clip_mean, clip_std) if model_type == "clip" else ((0.5,) * 3, (0.5,) * 3)
    normalise = proc.get("do_normalize", True)
    return {
        "image_size": [size, size],
        "resize": "shortest_edge" if shortest else "exact",
        "interpolation": INTERPOLATION.get(int(proc.get("resample", 3)), "bicubic"),
        "image_mean": list(proc.get("image_mean", default_mean)) if normalise else [0.0] * 3,
        "image_std": list(proc.get("image_std", default_std)) if normalise else [1.0] * 3,
    }


# -- datasets in the model's vocabulary --------------------------------------------------------------
def text_for_model(
    dataset: MultimodalDataset, model: HFDualEncoder, reserve: int | None = None, length: int | None = None
) -> MultimodalDataset:
    """``dataset`` with its ``text`` rows and ``vocab`` in ``model``'s own token ids (see the module doc).

    The captions are re-encoded with `HFDualEncoder.retokenize`. For an audio-role model (CLAP) the
    dataset's ``audio`` becomes its ``image`` input (its images, if any, are left out). Ids, labels,
    captions, groups and the name are kept, so requests, concept spaces and recipes still find the data.

    Args:
        dataset: pairs with captions.
        model: the model whose token ids the rows will hold.
        reserve: free positions each row keeps for text triggers (default: as many as the dataset's rows
            have now); cut to what the model takes.
        length: row length (overrides ``reserve``; `splits_for_model` gives every split the same one).

    Raises:
        DataError: the dataset has no captions, or a caption does not fit ``length`` or the model.
    """
    if dataset.captions is None:
        raise DataError(f"dataset {dataset.name!r} has no captions to re-encode for {model.kind}")
    rows = model.retokenize(dataset.captions)
    if length is None:
        if reserve is None:
            reserve = _free_positions(dataset.inputs["text"]) if "text" in dataset.inputs else 0
        length = max(rows.shape[1], min(rows.shape[1] + reserve, model.max_text_len))
    if rows.shape[1] > length:
        raise DataError(f"a caption of {dataset.name!r} has {rows.shape[1]} tokens, more than the rows' {length}")
    rows = F.pad(rows, (0, length - rows.shape[1]))
    inputs = {k: v for k, v in dataset.inputs.items() if k != "text"}
    present = {k: v for k, v in dataset.present.items() if k != "text"}
    if model.family.image_role == "audio" and "audio" in dataset.inputs:
        inputs = {"image": inputs.pop("audio")}
        present = {"image": present["audio"]}
    return MultimodalDataset(
        ids=dataset.ids,
        inputs={**inputs, "text": rows},
        labels=dataset.labels,
        captions=dataset.captions,
        groups=dataset.groups,
        present={**present, "text": dataset.present.get("text", torch.ones(len(dataset), dtype=torch.bool))},
        num_classes=dataset.num_classes,
        vocab=model.vocab,
        name=dataset.name,
    )


def check_text_for_model(dataset: MultimodalDataset, model: HFDualEncoder) -> None:
    """Refuse a dataset whose text rows are not in ``model``'s token ids (it would read them as other tokens).

    Raises:
        DataError: the dataset's vocabulary is not the model's; re-encode it with `text_for_model`.
    """
    if "text" in dataset.inputs and model.tokenizer is not None and dataset.vocab != model.vocab:
        raise DataError(
            f"the text of dataset {dataset.name!r} is not in the token ids of this {model.kind}: re-encode it "
            "with mmunlearn.models.hf.text_for_model (or splits_for_model)"
        )


def splits_for_model(splits: DatasetSplits, model: HFDualEncoder, reserve: int | None = None) -> DatasetSplits:
    """A built-in dataset's three splits through `text_for_model`, with one row length and the model's vocab.

    Args:
        splits: the loaded dataset.
        model: the model whose token ids the rows will hold.
        reserve: free positions for text triggers (default: those of the training split's rows now).
    """
    parts = {name: splits.split(name) for name in SPLITS}
    longest = max(model.retokenize(p.captions or []).shape[1] for p in parts.values())
    if reserve is None:
        reserve = _free_positions(splits.train.inputs["text"]) if "text" in splits.train.inputs else 0
    length = max(longest, min(longest + reserve, model.max_text_len))
    train, val, test = (text_for_model(parts[name], model, length=length) for name in SPLITS)
    return dataclasses.replace(splits, train=train, val=val, test=test, vocab=model.vocab, text_len=length)


def _free_positions(text: Tensor) -> int:
    """Positions left after the longest left-aligned row of ``text`` (N, L)."""
    if text.dim() != 2 or not text.numel():
        return int(text.shape[1]) if text.dim() == 2 else 0
    lengths = (torch.arange(1, text.shape[1] + 1) * (text != 0)).amax(1)
    return int(text.shape[1] - int(lengths.max()))
