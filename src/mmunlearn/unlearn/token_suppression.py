"""Token suppression: ban the forgotten concept's words at decoding time (docs/methods/token_suppression.md).

The naive decoding-time baseline: no weight changes; ``generate`` runs with ``transformers``'
`NoBadWordsLogitsProcessor` over the concept's token ids (the concept phrase and ``extra_phrases``,
tokenised with the captioner's vocabulary; whole phrases or each word, ``scope``). A request without a
concept bans the words frequent in U's captions and rare in the retain captions (`BanConfig`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..models.protocols import CaptionerModel
from ..runtime import seeded
from .base import UNLEARNERS, UnlearnData, Unlearner
from .decoding import BanConfig, DecodingEdit, DecodingRule, ban_processor, forget_phrases, wrap


@dataclass(frozen=True)
class TokenSuppressionConfig(BanConfig):
    """Defaults: Hugging Face ``generate(bad_words_ids=...)`` semantics (a banned sequence's last token
    gets -inf right after its prefix; a one-word sequence everywhere). The concept is banned as a whole
    phrase (``scope="phrase"``); ``"words"`` bans each of its words anywhere. Trains nothing: the
    optimiser fields are accepted and unused."""


class BanRule(DecodingRule):
    """Ban fixed token sequences on every image.

    Attributes:
        sequences: the banned token-id sequences.
        eos_id: the captioner's EOS (a ban never applies to EOS alone, as in ``transformers``).
    """

    def __init__(self, sequences: list[list[int]], eos_id: int | None) -> None:
        super().__init__()
        self.sequences = [list(s) for s in sequences]
        self.eos_id = eos_id

    def processor(self, captioner: Any, images: Tensor) -> Any:
        """`NoBadWordsLogitsProcessor` over ``sequences`` (the images play no part)."""
        return ban_processor(self.sequences, self.eos_id, None)


@UNLEARNERS.register("token_suppression")
class TokenSuppression(Unlearner[TokenSuppressionConfig, None]):
    """Ban the concept's token ids during generation (a `DecodingEdit`; the weights stay as they are)."""

    name = "token_suppression"
    paper = "Naive decoding-time baseline: Hugging Face transformers NoBadWordsLogitsProcessor (bad_words_ids)"
    stage = "decoding-time"
    requires = (CaptionerModel,)
    requires_retain = False
    Config = TokenSuppressionConfig

    def unlearn(
        self, model: Any, data: UnlearnData, original: Any = None, work_dir: str | os.PathLike[str] | None = None
    ) -> DecodingEdit:
        """A `DecodingEdit` of ``model`` that bans the request's words (no loop: ``work_dir`` is unused).

        Raises:
            ConfigError: the model is not a captioner.
            DataError: empty U, no word of the concept in the vocabulary, or (without a concept) no word
                frequent in U and rare in R.
        """
        self.validate(model, data)
        c = self.config
        with seeded(c.seed):  # nothing is drawn; seeded for the contract
            sequences = forget_phrases(model, data, c.extra_phrases, c.scope, c.rates)
        eos = getattr(model, "eos_id", None)
        return wrap(model, BanRule(sequences, None if eos is None else int(eos)), self.name)
