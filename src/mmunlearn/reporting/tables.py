"""Markdown and CSV renderings of aggregated tables."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from ..records.aggregate import Column, Stat, Table
from ..records.scenarios import HEADLINE, VICTIM_METRICS
from ..textfmt import format_table

COST_HEADERS = {
    "unlearn": ["gap to retrain", "seconds", "seconds / retrain's"],
    "protect": ["protect s", "victim s", "protect s / clean victim s"],
}
RANK_NOTE = {
    "unlearn": "ranks (1 = best; utility higher, forget metrics closest to retrain, gap smallest)",
    "protect": "ranks (1 = strongest protection: lowest victim recall on clean test pairs)",
}


def pm(stat: Stat | None, digits: int = 3) -> str:
    """``"m ± s"``; ``"m"`` for one seed; ``"-"`` for none."""
    if stat is None:
        return "-"
    if stat.n == 1:
        return f"{stat.mean:.{digits}f}"
    return f"{stat.mean:.{digits}f} ± {stat.std:.{digits}f}"


def headline_columns(table: Table) -> list[Column]:
    """The columns a summary shows: scenario A's gap metrics, scenario B's recalls (test split)."""
    wanted = list(HEADLINE) if table.scenario == "unlearn" else [(m, "test") for m in VICTIM_METRICS]
    return [c for c in wanted if c in table.columns]


def table_rows(table: Table, columns: Sequence[Column]) -> tuple[list[str], list[list[object]]]:
    """Headers and rows of a table: mean ± std per column, then cost (and the gap in scenario A)."""
    headers = ["row", "seeds", *(f"{n} ({s})" for n, s in columns)]
    headers += COST_HEADERS[table.scenario]
    rows: list[list[object]] = []
    for r in table.rows:
        cells = [pm(r.metrics.get(c)) for c in columns]
        first = pm(r.gap) if table.scenario == "unlearn" else pm(r.protect_seconds, 1)
        rows.append([r.label, len(r.seeds), *cells, first, pm(r.seconds, 1), pm(r.ratio, 2)])
    if any(table.chance.get(c) is not None for c in columns):
        chance = [table.chance.get(c) for c in columns]
        rows.append(["chance", "", *(f"{c:.3f}" if c is not None else "-" for c in chance), "", "", ""])
    return headers, rows


def markdown_table(table: Table, columns: Sequence[Column] | None = None) -> str:
    """A Markdown pipe table (every column unless ``columns`` is given)."""
    headers, rows = table_rows(table, columns if columns is not None else table.columns)
    return format_table(headers, rows)


def rank_rows(table: Table) -> tuple[list[str], list[list[object]]]:
    """Headers and rows of the rank table: one row per compared method, one column per metric, mean rank."""
    keys = list(table.ranks)
    labels = list(dict.fromkeys(label for ranks in table.ranks.values() for label in ranks))
    rows: list[list[object]] = []
    for label in labels:
        ranks = [table.ranks[k].get(label) for k in keys]
        present = [r for r in ranks if r is not None]
        rows.append([label, *ranks, round(sum(present) / len(present), 2) if present else None])
    rows.sort(key=lambda r: (r[-1] is None, r[-1]))
    return ["row", *keys, "mean rank"], rows


def markdown_ranks(table: Table) -> str:
    """The rank table as Markdown."""
    headers, rows = rank_rows(table)
    return format_table(headers, rows, digits=2)


def csv_text(tables: Sequence[Table]) -> str:
    """Long-format CSV: one line per (table, row, metric) with mean, std, n and rank."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["scenario", "dataset", "size", "setting", "row", "metric", "split", "mean", "std", "n", "rank"])
    for t in tables:
        for r in t.rows:
            stats: list[tuple[str, str, Stat | None]] = [(n, s, st) for (n, s), st in r.metrics.items()]
            stats += [("gap_to_retrain", "", r.gap), ("seconds", "", r.seconds), ("seconds_ratio", "", r.ratio)]
            stats += [("protect_seconds", "", r.protect_seconds)]
            for name, split, st in stats:
                if st is None:
                    continue
                rank = t.ranks.get("gap" if name == "gap_to_retrain" else f"{name}/{split}", {})  # costs: none
                w.writerow([t.scenario, t.dataset, t.size, t.setting, r.label, name, split,
                            f"{st.mean:.6g}", f"{st.std:.6g}", st.n, rank.get(r.label, "")])  # fmt: skip
    return buf.getvalue()
