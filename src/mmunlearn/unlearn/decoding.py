"""Shared machinery of the decoding-time methods: `DecodingEdit`, `DecodingRule`, and what to ban.

A decoding-time method changes no weight of the deployed captioner. It returns a `DecodingEdit`: an
`nn.Module` holding an untouched copy of the captioner and the method's `DecodingRule` (its decoding-time
parts: a forget expert, a detector, a list of token ids). The edit satisfies `CaptionerModel` by
delegation, so every captioning metric measures it unchanged:

* `DecodingEdit.generate` calls the captioner's ``generate`` with the rule's ``transformers``
  `LogitsProcessor` (bound to the images of that call) appended to the caller's ``logits_processor``;
* `DecodingEdit.caption_logits` returns the *edited* teacher-forced logits (the rule applied at every
  position to the prefix ``[BOS, w1 .. wt]``), so teacher-forced figures see what decoding sees;
* ``loss`` is the captioner's own loss (the objective of the weights, finite even where a rule sets a
  token to -inf): a relearning attack fine-tunes the deployed weights and the rule stays in place;
* ``caption_targets``, ``image_features`` and ``decode`` delegate unchanged.

A `DecodingEdit` is not a weight edit: it is not a registered `MultimodalModel`, and `config_dict`
raises a `CheckpointError`, so `mmunlearn.checkpoint.save_checkpoint` refuses it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..data.core import MultimodalDataset
from ..errors import CheckpointError, ConfigError, DataError
from .base import UnlearnConfig

log = logging.getLogger(__name__)

Batch = dict[str, Tensor]
PAD, UNK = 0, 1
"""Ids of ``[PAD]`` and ``[UNK]`` in every word vocabulary of the project."""


class DecodingRule(nn.Module):
    """A method's decoding-time part (subclass; its tensors are submodules or buffers, so they move with
    ``.to()`` and show in ``state_dict``)."""

    def processor(self, captioner: Any, images: Tensor) -> Any:
        """The ``transformers.LogitsProcessor`` of one ``generate`` call on ``images`` (B, C, H, W)."""
        raise NotImplementedError

    def edit_logits(self, captioner: Any, batch: Batch, logits: Tensor, prefix: Tensor) -> Tensor:
        """Teacher-forced edit: the processor applied at every position (exact for any processor).

        Args:
            captioner: the wrapped captioner.
            batch: the batch (``image``, ``text``).
            logits: (B, T, V) the captioner's teacher-forced logits.
            prefix: (B, T) decoder inputs ``[BOS, w1 .. w_{T-1}]``; position t predicts after ``prefix[:, :t+1]``.
        """
        proc = self.processor(captioner, batch["image"])
        steps = [proc(prefix[:, : t + 1], logits[:, t].clone()) for t in range(logits.shape[1])]
        return torch.stack(steps, dim=1)


class DecodingEdit(nn.Module):
    """A captioner plus a decoding-time rule; satisfies `CaptionerModel` by delegation (module docstring).

    Attributes:
        captioner: the untouched captioner (a copy of the method's input).
        rule: the method's `DecodingRule`.
        method: the name of the method that built it.
        weight_edit: False: the captioner's weights are those of the input; the edit lives in ``rule``.
    """

    kind: ClassVar[str] = "captioner"
    weight_edit: ClassVar[bool] = False

    def __init__(self, captioner: nn.Module, rule: DecodingRule, method: str) -> None:
        super().__init__()
        self.captioner = captioner
        self.rule = rule
        self.method = method
        self.modalities: tuple[str, ...] = tuple(getattr(captioner, "modalities", ("image", "text")))

    # -- ids of the wrapped captioner ------------------------------------------------------------
    @property
    def pad_id(self) -> int:
        """The captioner's padding id (0 where it declares none)."""
        return int(getattr(self.captioner, "pad_id", PAD))

    @property
    def eos_id(self) -> int | None:
        """The captioner's EOS id, if it declares one."""
        eos = getattr(self.captioner, "eos_id", None)
        return None if eos is None else int(eos)

    @property
    def bos_id(self) -> int:
        """The captioner's BOS id (the padding id where it declares none: only a placeholder in prefixes)."""
        return int(getattr(self.captioner, "bos_id", self.pad_id))

    # -- CaptionerModel ---------------------------------------------------------------------------
    def generate(
        self, images: Tensor, max_new_tokens: int | None = None, logits_processor: Any = None, **kwargs: Any
    ) -> Tensor:
        """The captioner's ``generate`` with the rule's processor after the caller's ``logits_processor``."""
        from transformers import LogitsProcessorList

        procs = LogitsProcessorList(list(logits_processor or []))
        with torch.no_grad():
            procs.append(self.rule.processor(self.captioner, images))
        return self.captioner.generate(images, max_new_tokens, logits_processor=procs, **kwargs)  # type: ignore[operator]

    def caption_logits(self, batch: Batch) -> Tensor:
        """(B, L + 1, V) teacher-forced logits with the rule applied (what greedy decoding would score)."""
        logits = self.captioner.caption_logits(batch)  # type: ignore[operator]
        return self.rule.edit_logits(self.captioner, batch, logits, self.prefix(batch["text"]))

    def forward(self, batch: Batch) -> Tensor:
        """Same as `caption_logits`."""
        return self.caption_logits(batch)

    def prefix(self, text: Tensor) -> Tensor:
        """(B, L + 1) decoder inputs of teacher forcing, ``[BOS, w1 .. wL]``."""
        return torch.cat([torch.full_like(text[:, :1], self.bos_id), text], dim=1)

    def caption_targets(self, batch: Batch) -> Tensor:
        """The captioner's targets (unchanged)."""
        return self.captioner.caption_targets(batch)  # type: ignore[operator]

    def loss(self, batch: Batch) -> Tensor:
        """The captioner's own loss: the objective of the deployed weights (see the module docstring)."""
        return self.captioner.loss(batch)  # type: ignore[operator]

    def image_features(self, images: Tensor) -> Tensor:
        """The captioner's pooled image features (unchanged)."""
        return self.captioner.image_features(images)  # type: ignore[operator]

    def decode(self, ids: Tensor) -> list[str]:
        """The captioner's decoding of id rows (unchanged)."""
        return self.captioner.decode(ids)  # type: ignore[operator]

    def config_dict(self) -> dict[str, Any]:
        """Refused: a decoding-time edit is not a set of weights (`save_checkpoint` calls this first).

        Raises:
            CheckpointError: always.
        """
        raise CheckpointError(
            f"{self.method!r} is a decoding-time edit: the captioner's weights are unchanged and the edit lives in "
            "its decoding rule, which the checkpoint format cannot hold; save the original captioner and "
            "re-apply the method (or keep the DecodingEdit object)"
        )


def wrap(model: nn.Module, rule: DecodingRule, method: str) -> DecodingEdit:
    """A `DecodingEdit` over a deep copy of ``model`` (weights bit-identical), in ``model``'s train/eval mode."""
    import copy

    edit = DecodingEdit(copy.deepcopy(model), rule, method).to(next(model.parameters()).device)
    return edit.train(model.training)


def rows_of(images: Tensor, rows: int) -> Tensor:
    """``images`` repeated to match ``rows`` decoder rows (beam search expands each image ``k`` times)."""
    if rows == len(images):
        return images
    if rows % len(images):
        raise ConfigError(f"cannot map {rows} decoder rows onto {len(images)} images")
    return images.repeat_interleave(rows // len(images), dim=0)


# -- what to ban -----------------------------------------------------------------------------------
SCOPES = ("phrase", "words")


@dataclass(frozen=True)
class BanConfig(UnlearnConfig):
    """What a decoding-time method bans (shared by token_suppression and concept_guard). The optimiser
    fields of `UnlearnConfig` are accepted and unused by methods that train nothing.

    Attributes:
        scope: ``"phrase"`` bans each concept phrase whole (its last word only right after the others:
            "red" and "circle" stay allowed elsewhere); ``"words"`` bans every word of it anywhere.
        extra_phrases: more surface forms to ban with the concept (plurals, synonyms), e.g.
            ``("red circles",)``; each is tokenised with the captioner's vocabulary.
        min_forget_rate: without a concept, a word is banned when at least this share of U's captions
            contain it ...
        max_retain_rate: ... and at most this share of the retain captions do ...
        max_words: ... keeping at most this many (largest rate gap first).
    """

    scope: str = "phrase"
    extra_phrases: tuple[str, ...] = ()
    min_forget_rate: float = 0.5
    max_retain_rate: float = 0.05
    max_words: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scope not in SCOPES:
            raise ConfigError(f"scope must be one of {list(SCOPES)}, got {self.scope!r}")
        if not 0 < self.min_forget_rate <= 1 or not 0 <= self.max_retain_rate < 1:
            raise ConfigError("min_forget_rate must be in (0, 1] and max_retain_rate in [0, 1)")
        if self.max_words < 1:
            raise ConfigError(f"max_words must be >= 1, got {self.max_words}")
        if any(not isinstance(p, str) or not p.split() for p in self.extra_phrases):
            raise ConfigError(f"extra_phrases must be non-empty strings, got {list(self.extra_phrases)}")

    @property
    def rates(self) -> tuple[float, float, int]:
        """(min_forget_rate, max_retain_rate, max_words) for `forget_phrases`."""
        return self.min_forget_rate, self.max_retain_rate, self.max_words


def word_ids(model: Any, vocab: Sequence[str] | None, phrase: str) -> list[int]:
    """The word ids of ``phrase`` in the captioner's vocabulary (UNK for an unknown word).

    Uses the captioner's ``encode_captions`` when it has one (`Captioner`), else the dataset's word
    vocabulary (the captioner's, by the project's convention: the datasets' ``text`` ids are its ids).
    """
    words = phrase.lower().split()
    if hasattr(model, "encode_captions") and len(words) <= int(getattr(getattr(model, "config", None), "text_len", 0)):
        row = model.encode_captions([" ".join(words)])[0].tolist()
        return [int(i) for i in row if i != PAD]
    if vocab is None:
        raise ConfigError("the captioner has no encode_captions and the data no vocabulary: cannot tokenise")
    index = {w: i for i, w in enumerate(vocab)}
    return [index.get(w, UNK) for w in words]


def phrase_ids(model: Any, vocab: Sequence[str] | None, phrases: Sequence[str]) -> list[list[int]]:
    """Token-id sequences of ``phrases``; a phrase with a word outside the vocabulary is dropped (warned).

    Raises:
        DataError: no phrase is left (the message names the unknown words).
    """
    out, unknown = [], []
    for phrase in phrases:
        ids = word_ids(model, vocab, phrase)
        if not ids or UNK in ids:
            unknown.append(phrase)
            continue
        if ids not in out:
            out.append(ids)
    if unknown and out:
        log.warning("decoding-time ban: %s not in the captioner's vocabulary; dropped", unknown)
    if not out:
        raise DataError(f"no word of {list(phrases)} is in the captioner's vocabulary: nothing to suppress")
    return out


def banned_sequences(phrases: list[list[int]], scope: str) -> list[list[int]]:
    """What to ban: each phrase whole (``"phrase"``) or each of its words alone (``"words"``)."""
    if scope == "phrase":
        return phrases
    if scope == "words":
        return [[w] for w in dict.fromkeys(w for p in phrases for w in p)]
    raise ConfigError(f"scope must be 'phrase' or 'words', got {scope!r}")


def ban_processor(sequences: list[list[int]], eos_id: int | None, penalty: float | None) -> Any:
    """``transformers``' ban of ``sequences``: `NoBadWordsLogitsProcessor` (-inf on the last token of a
    sequence whose prefix was just generated), or, with a finite ``penalty``, `SequenceBiasLogitsProcessor`
    with bias ``-penalty`` (a soft steer)."""
    from transformers import NoBadWordsLogitsProcessor, SequenceBiasLogitsProcessor

    if penalty is None:
        return NoBadWordsLogitsProcessor(sequences, eos_token_id=eos_id)
    return SequenceBiasLogitsProcessor([[list(s), -float(penalty)] for s in sequences])


def word_rates(data: MultimodalDataset) -> Tensor:
    """(V,) share of ``data``'s captions containing each word id (document frequency; PAD/UNK are 0)."""
    text = data.inputs["text"]
    size = int(text.max()) + 1 if text.numel() else 2
    hits = torch.zeros(len(text), max(size, len(data.vocab or ())), dtype=torch.bool)
    hits.scatter_(1, text, True)
    hits[:, PAD] = False
    hits[:, UNK] = False
    return hits.double().mean(0) if len(text) else hits.double().sum(0)


def frequent_forget_words(
    unlearn: MultimodalDataset, retain: MultimodalDataset, min_forget: float, max_retain: float, max_words: int
) -> list[list[int]]:
    """Words frequent in U's captions and rare in the retain captions (for a request without a concept).

    A word qualifies when at least ``min_forget`` of U's captions contain it and at most ``max_retain``
    of the retain captions do; the ``max_words`` with the largest gap (U rate - retain rate) are kept,
    ties broken by the smaller id.

    Raises:
        DataError: no word qualifies.
    """
    if len(retain) == 0:
        raise DataError("without a concept, the words to ban are chosen against the retain captions: R is empty")
    u, r = word_rates(unlearn), word_rates(retain)
    size = max(len(u), len(r))
    u, r = nn.functional.pad(u, (0, size - len(u))), nn.functional.pad(r, (0, size - len(r)))
    ok = (u >= min_forget) & (r <= max_retain) & (u > 0)
    gap = torch.where(ok, u - r, torch.full_like(u, -1.0))
    order = sorted(range(size), key=lambda i: (-float(gap[i]), i))
    chosen = [[i] for i in order[:max_words] if bool(ok[i])]
    if not chosen:
        raise DataError(
            f"no word is in at least {min_forget:g} of U's captions and at most {max_retain:g} of the retain "
            "captions: nothing to suppress (give a concept or loosen min_forget_rate / max_retain_rate)"
        )
    return chosen


def complete(data: MultimodalDataset) -> MultimodalDataset:
    """The samples of ``data`` with every modality present (image and caption both usable)."""
    keep = torch.ones(len(data), dtype=torch.bool)
    for present in data.present.values():
        keep &= present
    return data if bool(keep.all()) else data.take(keep.nonzero().flatten())


def keep_set(data: Any) -> MultimodalDataset:
    """The data to keep as complete pairs: R when the request carries it, else the gold-standard set."""
    return complete(data.retain if data.retain is not None else data.gold_standard)


def forget_phrases(
    model: Any,
    data: Any,
    extra: Sequence[str],
    scope: str,
    rates: tuple[float, float, int],
) -> list[list[int]]:
    """The token sequences a decoding-time method bans for a request.

    With a concept: the concept phrase plus ``extra`` phrases (plurals, synonyms), tokenised with the
    captioner's vocabulary, whole or word by word (``scope``). Without one: `frequent_forget_words`
    with ``rates`` = (min_forget, max_retain, max_words) (single words, ``scope`` is moot), plus ``extra``.
    """
    vocab = data.unlearn.vocab
    if data.concept:
        return banned_sequences(phrase_ids(model, vocab, [data.concept, *extra]), scope)
    words = frequent_forget_words(data.unlearn, keep_set(data), *rates)
    more = banned_sequences(phrase_ids(model, vocab, list(extra)), scope) if extra else []
    return words + [s for s in more if s not in words]
