"""Concepts in captions: which concepts a caption names, and the prompt that names one concept alone.

A concept is what a caption can mention and a request can ask to forget: a coloured shape of
shapes-captions (``"red circle"``, prompt ``"a red circle"``) or an emoji of emoji-captions (its CLDR
name, which is also its prompt). `CONCEPTS` maps a built-in caption dataset to its `ConceptSpace`; a
dataset without one can still be asked to forget a phrase, matched on word boundaries in its captions, and
`phrase_space` makes a concept space of the phrases a bench grid names (for the zero-shot metrics).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigError, DataError
from . import emoji_captions, scenes_captions, shapes_captions
from .core import MultimodalDataset


@dataclass(frozen=True)
class ConceptSpace:
    """How one dataset's captions name concepts.

    Attributes:
        parse: caption -> the concepts it names, in order.
        prompt: concept -> a caption naming that concept alone (for zero-shot recognition).
    """

    parse: Callable[[str], tuple[str, ...]]
    prompt: Callable[[str], str]


def _split_relation(caption: str, relations: tuple[str, ...]) -> list[str]:
    """The caption's parts around its relation (the whole caption when it has none)."""
    for rel in relations:
        head, sep, tail = caption.partition(f" {rel} ")
        if sep:
            return [head, tail]
    return [caption]


def _shapes(caption: str) -> tuple[str, ...]:
    """``"a red circle left of a blue square"`` -> ``("red circle", "blue square")``."""
    parts = _split_relation(caption, shapes_captions.RELATIONS)
    return tuple(p.split(" ", 1)[1] if p.startswith(("a ", "an ")) else p for p in parts)


def _scenes(caption: str) -> tuple[str, ...]:
    """``"a large dotted white triangle at the top and a small plain red star at the centre"`` ->
    ``("white triangle", "red star")``: each object's colour and shape (size, texture and place set aside)."""
    return tuple(" ".join(phrase.split()[3:5]) for phrase in caption.split(" and "))


def _article(concept: str) -> str:
    return f"{'an' if concept[:1] in 'aeiou' else 'a'} {concept}"


CONCEPTS: dict[str, ConceptSpace] = {
    shapes_captions.NAME: ConceptSpace(_shapes, _article),
    scenes_captions.NAME: ConceptSpace(_scenes, _article),
    emoji_captions.NAME: ConceptSpace(
        lambda c: tuple(_split_relation(c, emoji_captions.RELATIONS)), lambda concept: concept
    ),
}


def concept_space(dataset: MultimodalDataset) -> ConceptSpace | None:
    """The concept space of a built-in caption dataset (by the first part of its name), else None."""
    return CONCEPTS.get(dataset.name.split("/", 1)[0])


def caption_concepts(dataset: MultimodalDataset) -> list[tuple[str, ...]]:
    """The concepts each caption of ``dataset`` names.

    Raises:
        DataError: the dataset has no captions, or no concept space (see `concept_space`).
    """
    space = concept_space(dataset)
    if dataset.captions is None or space is None:
        raise DataError(f"{dataset.name!r} has no captions whose concepts are known")
    return [space.parse(c) for c in dataset.captions]


def normalise_phrase(phrase: str) -> str:
    """``phrase`` lower-cased, its runs of white space collapsed to one space (how phrases are compared)."""
    return " ".join(phrase.lower().split())


def names_phrase(caption: str, phrase: str) -> bool:
    """Whether ``caption`` names ``phrase``: case-insensitive, the phrase's runs of spaces collapsed, on word
    boundaries (how a concept is matched in a dataset without a concept space)."""
    wanted = normalise_phrase(phrase)
    return re.search(rf"(?<!\w){re.escape(wanted)}(?!\w)", caption.lower()) is not None


def phrase_space(phrases: tuple[str, ...] | list[str]) -> ConceptSpace:
    """The concept space of some phrases, for a caption set without a built-in one (a dataset on disk).

    A caption names the phrases it contains on word boundaries (`names_phrase`), normalised
    (`normalise_phrase`), in the order given (a repeat after normalising counts once); a phrase's prompt is
    the phrase itself, as emoji-captions' concept is its own prompt: no template is known for free text.

    Raises:
        ConfigError: a phrase is blank (it names no word).
    """
    wanted = tuple(dict.fromkeys(normalise_phrase(p) for p in phrases))
    if "" in wanted:
        raise ConfigError(f"phrases must be non-blank, got {list(phrases)!r}")

    def parse(caption: str) -> tuple[str, ...]:
        return tuple(p for p in wanted if names_phrase(caption, p))

    return ConceptSpace(parse, normalise_phrase)


def naming(dataset: MultimodalDataset, concept: str) -> list[int]:
    """Positions of the pairs whose caption names ``concept`` (a whole concept, or a whole-word phrase
    where the dataset has no concept space).

    Raises:
        DataError: the dataset has no captions, or no caption names the concept.
    """
    if dataset.captions is None:
        raise DataError(f"{dataset.name!r} has no captions: a concept request needs image-caption pairs")
    wanted = normalise_phrase(concept)
    if concept_space(dataset) is not None:
        hits = [i for i, cs in enumerate(caption_concepts(dataset)) if wanted in cs]
        known = sorted({c for cs in caption_concepts(dataset) for c in cs})
    else:
        hits = [i for i, c in enumerate(dataset.captions) if names_phrase(c, wanted)]
        known = []
    if not hits:
        hint = f"; concepts of this dataset include {', '.join(repr(k) for k in known[:8])} ..." if known else ""
        raise DataError(f"no caption of {dataset.name!r} names the concept {concept!r}{hint}")
    return hits
