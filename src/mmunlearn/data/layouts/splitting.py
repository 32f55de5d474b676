"""Seeded splits for layouts whose files do not say which sample is in which split.

Splits are drawn over *units* (an image and all its captions, a clip), never over single rows, so the
captions of one image never straddle two splits. Every draw uses ``numpy.random.default_rng([seed, k])``
over the sorted units, so it depends only on the seed and the set of units, not on file order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ...errors import DataError
from ..builder import SPLITS
from .spec import Item

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
"""Shares of a seeded split when the files name no split at all."""
HELD_OUT_GROUPS = 0.2
"""Share of the identities held out for test when a seeded audio-visual split has identities."""


def _counts(n: int, shares: Sequence[float]) -> list[int]:
    """Split ``n`` units by ``shares`` (rounded), with at least one unit in each part when ``n`` allows."""
    counts = [round(n * s) for s in shares[1:]]
    if n >= len(shares):
        counts = [max(1, c) for c in counts]
    counts = [n - sum(counts), *counts]
    if counts[0] < 0:
        raise DataError(f"cannot split {n} units into {len(shares)} parts")
    return counts


def draw(units: Sequence[str], names: Sequence[str], shares: Sequence[float], seed: int, stream: int) -> dict[str, str]:
    """Assign each unit one of ``names`` at random, in proportions ``shares``."""
    ordered = sorted(set(units))
    perm = np.random.default_rng([seed, stream]).permutation(len(ordered))
    out: dict[str, str] = {}
    start = 0
    for name, count in zip(names, _counts(len(ordered), shares), strict=True):
        for i in perm[start : start + count]:
            out[ordered[i]] = name
        start += count
    return out


def by_groups(items: Sequence[Item], seed: int) -> dict[str, str]:
    """Unit -> split where test holds out ~20% of the identities and val is ~10% of the other units."""
    group_of = {it.unit: it.group or "" for it in items}
    held = draw(list(group_of.values()), ["keep", "test"], [1 - HELD_OUT_GROUPS, HELD_OUT_GROUPS], seed, 1)
    kept = [u for u, g in group_of.items() if held[g] == "keep"]
    out = draw(kept, ["train", "val"], [0.9, 0.1], seed, 2)
    out.update({u: "test" for u, g in group_of.items() if held[g] == "test"})
    return out


def assign_splits(items: list[Item], seed: int) -> tuple[list[Item], str]:
    """Give every item a split; returns the items and how the splits were made (for the provenance).

    - no item has a split: 80/10/10 by unit; with at least 3 identities (audio-visual ``group``) test
      holds out 20% of the identities instead and val is 10% of the rest;
    - every item has one: kept, and a split with no item is drawn from train (10% of its units each).

    Raises:
        DataError: some items have a split and others not, or there are fewer than 3 units.
    """
    given = [it.split is not None for it in items]
    if len({it.unit for it in items}) < len(SPLITS):
        raise DataError(f"the dataset has {len({it.unit for it in items})} images or clips; at least 3 are needed")
    if not any(given):
        groups = {it.group for it in items if it.group}
        if len(groups) >= 3:
            table, how = by_groups(items, seed), f"seeded: test holds out {HELD_OUT_GROUPS:.0%} of the identities"
        else:
            table, how = draw([it.unit for it in items], SPLITS, list(FRACTIONS.values()), seed, 0), "seeded 80/10/10"
        return [dataclasses.replace(it, split=table[it.unit]) for it in items], how
    if not all(given):
        raise DataError("some samples name a split and others do not")
    return _fill_missing(items, seed)


def _fill_missing(items: list[Item], seed: int) -> tuple[list[Item], str]:
    """Draw the splits the files lack from the train units."""
    present = {it.split for it in items}
    missing = [s for s in SPLITS if s not in present]
    if not missing:
        return items, "from the files"
    if "train" in missing:
        raise DataError(f"the files name no train sample (splits found: {', '.join(sorted(present))})")  # type: ignore[arg-type]
    train_units = [it.unit for it in items if it.split == "train"]
    shares = [1 - 0.1 * len(missing)] + [0.1] * len(missing)
    table = draw(train_units, ["train", *missing], shares, seed, 3)
    out = [dataclasses.replace(it, split=table[it.unit]) if it.split == "train" else it for it in items]
    return out, f"from the files; {' and '.join(missing)} drawn from train (10% of its units each, seeded)"
