"""Aggregation of run records: mean ± std over seeds, gap to retrain, cost ratios and ranks.

Records are grouped into tables by (scenario, dataset, size, setting), where the setting is the
request (scenario A) or the victim (scenario B), and into rows by the bench row label. Each row is
compared with its table's reference row *seed by seed*: ``retrain`` in scenario A (the gap to
retrain, and seconds / retrain's seconds), ``clean`` in scenario B (protection seconds / one clean
victim training's seconds).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..results import RunRecord
from ..stages import stage_rank
from .scenarios import gap_to_retrain

Column = tuple[str, str]  # (metric name, split)
REFERENCE = {"unlearn": "retrain", "protect": "clean"}
NOT_RANKED = {"original", "retrain", "clean"}
TUNED = " (tuned)"
"""The mark of a bench row tuned by the tuning protocol: ``"<method> (tuned)"``."""


def is_tuned(label: str) -> bool:
    """Whether a row label is a tuned row's."""
    return label.endswith(TUNED)


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation over seeds (std 0 for one seed)."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def n(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Row:
    """One method (or protector) of a table.

    Attributes:
        label: the bench row (method, variant or protector).
        seeds: the seeds it has records for.
        metrics: per column, over seeds.
        seconds: unlearning (A) or victim training (B) seconds; the original's training seconds.
        gap: mean |difference to retrain| over the headline metrics, per seed (A only).
        ratio: seconds / retrain's (A), protection seconds / one clean victim training's (B).
        protect_seconds: the protection's seconds (B only).
        stage: the method's intervention stage (``mmunlearn.stages``), "" where the records name none.
    """

    label: str
    seeds: tuple[int, ...]
    metrics: dict[Column, Stat]
    seconds: Stat
    gap: Stat | None = None
    ratio: Stat | None = None
    protect_seconds: Stat | None = None
    stage: str = ""


@dataclass(frozen=True)
class Table:
    """The rows of one (scenario, dataset, size, setting), with chance levels, directions and ranks."""

    scenario: str
    dataset: str
    size: str
    setting: str
    rows: list[Row]
    columns: list[Column]
    chance: dict[Column, float | None]
    higher_is_better: dict[Column, bool | None]
    ranks: dict[str, dict[str, int]] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def data_title(self) -> str:
        """The dataset and its size (``av-digits (small)``), or a dataset on disk alone (``flickr8k [karpathy]``:
        its records carry no size)."""
        return f"{self.dataset} ({self.size})" if self.size else self.dataset

    @property
    def title(self) -> str:
        kind = "request" if self.scenario == "unlearn" else "victim"
        return f"{self.scenario} · {self.data_title} · {kind} {self.setting}"

    def row(self, label: str) -> Row | None:
        return next((r for r in self.rows if r.label == label), None)


def _stat(values: Iterable[float]) -> Stat | None:
    vals = tuple(v for v in values if v is not None and not math.isnan(v))
    return Stat(vals) if vals else None


def competition_ranks(scores: dict[str, float]) -> dict[str, int]:
    """Rank 1 for the lowest score; ties share a rank ("1224" ranking)."""
    ordered = sorted(scores.values())
    return {label: 1 + ordered.index(score) for label, score in scores.items()}


def _ranks(table: Table) -> dict[str, dict[str, int]]:
    """Per column (and ``gap``), the rank of every compared row (reference and original excluded)."""
    rows = [r for r in table.rows if r.label not in NOT_RANKED]
    ref = table.row(REFERENCE[table.scenario])
    out: dict[str, dict[str, int]] = {}
    for col in table.columns:
        scores = {}
        for r in rows:
            if col not in r.metrics:
                continue
            value, direction = r.metrics[col].mean, table.higher_is_better[col]
            if table.scenario == "protect":
                scores[r.label] = value  # a stronger protection leaves the victim a lower recall
            elif direction is None:
                if ref is None or col not in ref.metrics:
                    continue
                scores[r.label] = abs(value - ref.metrics[col].mean)  # a forget metric's target is retrain
            else:
                scores[r.label] = -value if direction else value
        if scores:
            out[f"{col[0]}/{col[1]}"] = competition_ranks(scores)
    gaps = {r.label: r.gap.mean for r in rows if r.gap is not None}
    if gaps:
        out["gap"] = competition_ranks(gaps)
    return out


def _row(label: str, by_seed: dict[int, RunRecord], ref: dict[int, RunRecord], scenario: str) -> Row:
    seeds = tuple(sorted(by_seed))
    metrics: dict[Column, list[float]] = defaultdict(list)
    for s in seeds:
        for m in by_seed[s].metrics:
            metrics[(m.name, m.split)].append(m.value)
    seconds = _stat(by_seed[s].seconds for s in seeds) or Stat((0.0,))
    paired = [s for s in seeds if s in ref]
    if scenario == "unlearn":
        gap = _stat(gap_to_retrain(by_seed[s].metrics, ref[s].metrics) for s in paired) if label != "original" else None
        # the original's seconds are its training, reused from a cache and measured in another run
        ratio = _stat(by_seed[s].seconds / ref[s].seconds for s in paired if ref[s].seconds > 0 and label != "original")
        stage = str(by_seed[seeds[0]].extras.get("stage", ""))
        return Row(label, seeds, {k: Stat(tuple(v)) for k, v in metrics.items()}, seconds, gap, ratio, stage=stage)
    protect = _stat(float(by_seed[s].extras.get("protect_seconds", math.nan)) for s in seeds)
    ratio = _stat(
        float(by_seed[s].extras.get("protect_seconds", math.nan)) / ref[s].seconds for s in paired if ref[s].seconds > 0
    )
    return Row(label, seeds, {k: Stat(tuple(v)) for k, v in metrics.items()}, seconds, None, ratio, protect)


def _group_key(r: RunRecord) -> tuple[str, str, str, str]:
    e = r.extras
    return (r.scenario, str(e.get("dataset")), str(e.get("size")), str(e.get("setting")))


def aggregate(records: Sequence[RunRecord]) -> list[Table]:
    """Tables of mean ± std over seeds from bench records (the newest record of each cell wins).

    Args:
        records: `RunRecord`s with bench extras (``cell``, ``row``, ``dataset``, ``size``, ``setting``,
            ``status``), in store order.

    Returns:
        One `Table` per (scenario, dataset, size, setting), in order of first appearance.
    """
    latest = {r.extras["cell"]: r for r in records if "cell" in r.extras}
    groups: dict[tuple[str, str, str, str], dict[str, dict[int, RunRecord]]] = defaultdict(lambda: defaultdict(dict))
    failed: dict[tuple[str, str, str, str], list[tuple[str, str]]] = defaultdict(list)
    for r in latest.values():
        if r.extras.get("status") == "failed":
            failed[_group_key(r)].append((r.extras["cell"], str(r.extras.get("error"))))
        else:
            groups[_group_key(r)][str(r.extras["row"])][r.seed] = r
    keys = list(dict.fromkeys(_group_key(r) for r in latest.values()))
    return [_table(k, groups.get(k, {}), failed.get(k, [])) for k in keys]


def _row_order(label: str, by_seed: dict[int, RunRecord]) -> tuple[bool, bool, int]:
    """The original first, then the reference (retrain or clean), then the methods stage by stage (in
    `STAGES` order; within a stage the store's order)."""
    stage = str(next(iter(by_seed.values())).extras.get("stage", ""))
    return label not in ("original", "retrain", "clean"), label != "original", stage_rank(stage)


def _table(
    key: tuple[str, str, str, str], rows: dict[str, dict[int, RunRecord]], failed: list[tuple[str, str]]
) -> Table:
    scenario = key[0]
    ref = rows.get(REFERENCE.get(scenario, ""), {})
    order = sorted(rows, key=lambda label: _row_order(label, rows[label]))
    metrics = [m for label in order for rec in rows[label].values() for m in rec.metrics]
    columns = list(dict.fromkeys((m.name, m.split) for m in metrics))
    table = Table(
        scenario, *key[1:],
        rows=[_row(label, rows[label], ref, scenario) for label in order],
        columns=columns,
        chance={(m.name, m.split): m.chance for m in metrics},
        higher_is_better={(m.name, m.split): m.higher_is_better for m in metrics},
        failed=failed,
    )  # fmt: skip
    return dataclasses.replace(table, ranks=_ranks(table))
