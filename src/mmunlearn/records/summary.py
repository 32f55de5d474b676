"""Small pure summaries for reports: the compared rows of a table in order, and every per-seed value.

Nothing here is stored: each function reads aggregated `Table`s or `RunRecord`s and returns new values.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

from ..results import RunRecord
from .aggregate import NOT_RANKED, REFERENCE, Column, Row, Table
from .scenarios import gap_to_retrain

GroupKey = tuple[str, str, str, str]  # (scenario, dataset, size, setting): one table


@dataclass(frozen=True)
class SeedValue:
    """One number of one record (or derived from it and its reference record of the same seed).

    Attributes:
        scenario: ``unlearn``, ``protect``, ...
        dataset: the dataset name.
        size: the dataset size.
        request: the table's setting: the forget request (unlearning) or the victim (protection).
        method: the bench row label (a method, a variant, a protector, ``original``, ``retrain``, ``clean``).
        seed: the seed.
        metric: a metric name, or a cost: ``seconds``, ``protect_seconds``, ``seconds_ratio``,
            ``gap_to_retrain``.
        split: the split the metric was measured on (empty for costs and the gap).
        value: the figure.
    """

    scenario: str
    dataset: str
    size: str
    request: str
    method: str
    seed: int
    metric: str
    split: str
    value: float


SEED_FIELDS = tuple(f.name for f in fields(SeedValue))


def reference_label(scenario: str) -> str:
    """The row every other row of a table is compared with: ``clean`` (protection), else ``retrain``."""
    return REFERENCE.get(scenario, "retrain")


def group_key(record: RunRecord) -> GroupKey:
    """The table a bench record belongs to."""
    e = record.extras
    return (record.scenario, str(e.get("dataset")), str(e.get("size")), str(e.get("setting")))


def table_key(table: Table) -> GroupKey:
    """The same key for an aggregated table."""
    return (table.scenario, table.dataset, table.size, table.setting)


def ranked(table: Table, score: Callable[[Row], float | None]) -> list[Row]:
    """The compared rows (not original, retrain or clean) that have a score, lowest score first.

    Ties keep the table's order (the sort is stable).
    """
    scored = [(s, r) for r in table.rows if r.label not in NOT_RANKED and (s := score(r)) is not None]
    return [r for s, r in sorted(scored, key=lambda pair: pair[0]) if not math.isnan(s)]


def by_gap(table: Table) -> list[Row]:
    """Compared rows by their mean gap to retrain, closest first."""
    return ranked(table, lambda r: r.gap.mean if r.gap is not None else None)


def by_metric(table: Table, column: Column) -> list[Row]:
    """Compared rows by their mean value of ``column``, lowest first."""
    return ranked(table, lambda r: r.metrics[column].mean if column in r.metrics else None)


def _derived(record: RunRecord, ref: RunRecord | None) -> list[tuple[str, float]]:
    """The per-seed costs and gap of one record against its table's reference record of the same seed."""
    out = [("seconds", record.seconds)]
    protect = record.extras.get("protect_seconds")
    if protect is not None:
        out.append(("protect_seconds", float(protect)))
    if ref is None:
        return out
    if record.scenario == "protect":  # protection seconds / one clean victim training's
        if protect is not None and ref.seconds > 0:
            out.append(("seconds_ratio", float(protect) / ref.seconds))
        return out
    if record.extras.get("row") != "original" and ref.seconds > 0:  # the original's seconds are its training
        out.append(("seconds_ratio", record.seconds / ref.seconds))
    return out + _gap(record, ref)


def _gap(record: RunRecord, ref: RunRecord) -> list[tuple[str, float]]:
    try:
        return [("gap_to_retrain", gap_to_retrain(record.metrics, ref.metrics))]
    except ValueError:  # no headline metric in common (another scenario's metric names)
        return []


def per_seed_values(records: Sequence[RunRecord]) -> list[SeedValue]:
    """Every metric of every successful bench record, its seconds, and its per-seed gap and time share.

    The gap to retrain and ``seconds_ratio`` compare a record with its table's reference record of the
    same seed, as the aggregation does; the original gets a gap (how far doing nothing is) but no ratio.
    Records are taken in the given order; pass one record per cell (see `latest_by_cell`).
    """
    ok = [r for r in records if r.extras.get("status") != "failed" and "row" in r.extras]
    refs: dict[GroupKey, dict[int, RunRecord]] = defaultdict(dict)
    for r in ok:
        if r.extras["row"] == reference_label(r.scenario):
            refs[group_key(r)][r.seed] = r
    out = []
    for r in ok:
        head = (*group_key(r), str(r.extras["row"]), r.seed)
        out += [SeedValue(*head, m.name, m.split, m.value) for m in r.metrics]
        out += [SeedValue(*head, name, "", value) for name, value in _derived(r, refs[group_key(r)].get(r.seed))]
    return out


def values_of(values: Sequence[SeedValue], table: Table) -> list[SeedValue]:
    """The per-seed values that belong to one table."""
    key = table_key(table)
    return [v for v in values if (v.scenario, v.dataset, v.size, v.request) == key]


def mean_of(values: Sequence[SeedValue], method: str, metric: str) -> float | None:
    """The mean over seeds of one method's per-seed ``metric`` (e.g. the original's gap), or None."""
    found = [v.value for v in values if v.method == method and v.metric == metric and not math.isnan(v.value)]
    return sum(found) / len(found) if found else None
