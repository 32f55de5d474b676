"""Text renderings of aggregated tables: headline sentences, table rows, glossaries, Markdown and CSV.

Every table leads with what a reader needs first: the row's name, then the gap to retrain and the costs
(unlearning), or the key victim metric and the costs (protection), then the seeds and the other metrics.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence

from ..records.aggregate import Column, Row, Stat, Table, is_tuned
from ..records.scenarios import HEADLINES, VICTIM_METRICS
from ..records.summary import SEED_FIELDS, SeedValue, by_gap, by_metric, reference_label, values_of
from ..textfmt import format_table
from . import glossary

KEY_METRIC = ("mean_recall", "test")  # a protection table's key metric, where the table has it
RANK_NOTE = {
    "unlearn": "ranks (1 = best; utility higher, forget metrics closest to retrain, gap smallest)",
    "protect": "ranks (1 = strongest protection: lowest victim recall on clean test pairs)",
}


def is_protect(table: Table) -> bool:
    """Whether a table compares protectors (scenario B); every other table compares unlearning methods."""
    return table.scenario == "protect"


def rank_note(table: Table) -> str:
    """What the rank table of ``table`` ranks by."""
    return RANK_NOTE["protect" if is_protect(table) else "unlearn"]


def pm(stat: Stat | None, digits: int = 3) -> str:
    """``"m ± s"``; ``"m"`` for one seed; ``"-"`` for none."""
    if stat is None:
        return "-"
    if stat.n == 1:
        return f"{stat.mean:.{digits}f}"
    return f"{stat.mean:.{digits}f} ± {stat.std:.{digits}f}"


def seconds(stat: Stat | None) -> str:
    """Seconds with as many decimals as their size needs (``12.3``, ``1.23``, ``0.123``)."""
    if stat is None:
        return "-"
    return pm(stat, 1 if stat.mean >= 10 else 2 if stat.mean >= 1 else 3)


def percent(value: float) -> str:
    """``0.27`` -> ``"27%"``; one decimal under 10% (``"4.2%"``)."""
    return f"{100 * value:.{0 if abs(value) >= 0.1 else 1}f}%"


def share(stat: Stat | None, as_percent: bool = True) -> str:
    """A time ratio as ``"27% ± 3%"`` (or ``"0.27× ± 0.03"``); ``"-"`` for none."""
    if stat is None:
        return "-"
    if not as_percent:
        return pm(stat, 2).replace(" ±", "× ±", 1) if stat.n > 1 else f"{stat.mean:.2f}×"
    spread = percent(stat.std) if stat.std > 0 else "0%"
    return percent(stat.mean) if stat.n == 1 else f"{percent(stat.mean)} ± {spread}"


def key_column(table: Table) -> Column | None:
    """The metric a protection table is judged by: the victim's mean test recall, else its first recall."""
    wanted = [KEY_METRIC, *((m, "test") for m in VICTIM_METRICS), *table.columns]
    return next((c for c in wanted if c in table.columns), None)


def headline_columns(table: Table) -> list[Column]:
    """The columns a summary shows: the gap's headline metrics (scenario A's or C's, whichever the table
    has), the protection tables' test recalls.

    Another scenario (one without its headline listed here) shows every column, as does a table that has
    none of its headline columns.
    """
    wanted = {"unlearn": list(HEADLINES), "protect": [(m, "test") for m in VICTIM_METRICS]}.get(table.scenario, [])
    return [c for c in wanted if c in table.columns] or list(table.columns)


def cost_headers(table: Table) -> list[str]:
    """The headers of the cost (and gap) columns that follow the row name."""
    if is_protect(table):
        return ["protect s", "victim s", "protection time / clean victim's"]
    return ["gap to retrain", "seconds", f"share of {reference_label(table.scenario)}'s time"]


def _cost_cells(table: Table, r: Row) -> list[object]:
    if is_protect(table):
        return [seconds(r.protect_seconds), seconds(r.seconds), share(r.ratio, as_percent=False)]
    return [pm(r.gap), seconds(r.seconds), share(r.ratio)]


def split_columns(table: Table, columns: Sequence[Column]) -> tuple[list[Column], list[Column]]:
    """The metric columns shown before the costs (a protection table's key metric) and those after."""
    key = key_column(table)
    if is_protect(table) and key is not None and key in columns:
        return [key], [c for c in columns if c != key]
    return [], list(columns)


def key_count(table: Table, columns: Sequence[Column]) -> int:
    """How many leading columns of `table_rows` are the key ones (name, stage, key metric, gap and costs)."""
    return name_columns(table) + len(split_columns(table, columns)[0]) + len(cost_headers(table))


def name_columns(table: Table) -> int:
    """The leading columns that name a row: the method (or protector), and its stage where rows have one."""
    return 2 if any(r.stage for r in table.rows) else 1


def _header(column: Column) -> str:
    return f"{column[0]} ({column[1]})"


def table_rows(table: Table, columns: Sequence[Column]) -> tuple[list[str], list[list[object]]]:
    """Headers and rows: name, [key metric,] gap and costs, seeds, then the other columns (mean ± std)."""
    lead, rest = split_columns(table, columns)
    staged = name_columns(table) == 2
    name = ["protector" if is_protect(table) else "method", *(["stage"] if staged else [])]
    headers = [*name, *map(_header, lead), *cost_headers(table), "seeds", *map(_header, rest)]
    rows: list[list[object]] = []
    for r in table.rows:
        label = [r.label, *([r.stage or "-"] if staged else [])]
        cells = [pm(r.metrics.get(c)) for c in rest]
        rows.append([*label, *(pm(r.metrics.get(c)) for c in lead), *_cost_cells(table, r), len(r.seeds), *cells])
    if any(table.chance.get(c) is not None for c in columns):
        chance = lambda c: f"{v:.3f}" if (v := table.chance.get(c)) is not None else "-"  # noqa: E731
        blanks = [""] * (len(cost_headers(table)) + 1)
        rows.append(["chance", *([""] if staged else []), *map(chance, lead), *blanks, *map(chance, rest)])
    return headers, rows


def _num(value: float) -> str:
    return f"{value:.3f}" if value == 0 or abs(value) >= 0.001 else f"{value:.1e}"


def _gap_margin(best: Row, nxt: Row) -> str:
    """How far the closest method is ahead of the next (a tie; a margin inside the seeds' spread)."""
    assert best.gap is not None and nxt.gap is not None
    margin = nxt.gap.mean - best.gap.mean
    if margin <= 0:
        return f"; it ties with {nxt.label}"
    noise = ", less than the spread over seeds" if margin < max(best.gap.std, nxt.gap.std) else ""
    return f"; it beats the next, {nxt.label} ({_num(nxt.gap.mean)}), by {_num(margin)}{noise}"


def _tuning_cost(row: Row) -> str:
    """``" plus N s of tuning"`` for a tuned row with a recorded study cost, else ``""``."""
    stat = next((v for (name, _), v in row.metrics.items() if name == "tuning_seconds"), None)
    return f" plus {stat.mean:.3g} s of tuning" if stat is not None else ""


def unlearn_headline(table: Table, original_gap: float | None = None) -> str:
    """Which method is closest to retrain, at what share of retrain's time, and by how much it beats the next.

    Args:
        table: an unlearning table (any scenario whose reference row is ``retrain``).
        original_gap: the original's mean gap to retrain (how far doing nothing is), if known.
    """
    ref = reference_label(table.scenario)
    ranked_rows = by_gap(table)
    if not ranked_rows:
        return f"No method has a gap to {ref} in this table (no {ref} row, or no method besides it)."
    tuned = [r for r in ranked_rows if is_tuned(r.label)]
    rows = tuned or ranked_rows  # with tuned rows the race is among them: every contender tuned alike
    best = rows[0]
    assert best.gap is not None
    took = f"{best.seconds.mean:.3g} s"
    cost = f"{percent(best.ratio.mean)} of {ref}'s time ({took})" if best.ratio else took
    lead = "Tuned by the same protocol, " if tuned else ""
    text = f"{lead}{best.label} is closest to {ref}: gap {_num(best.gap.mean)}, at {cost}"
    text += _tuning_cost(best)
    text += (_gap_margin(best, rows[1]) if len(rows) > 1 else "; it is the only method") + "."
    if tuned:
        default = next((r for r in ranked_rows if not is_tuned(r.label)), None)
        if default is not None and default.gap is not None:
            text += f" At published defaults the closest is {default.label} (gap {_num(default.gap.mean)})."
    if original_gap is not None:
        closer = ", no farther than any method" if original_gap <= best.gap.mean else ""
        text += f" The original (no unlearning) is {_num(original_gap)} from {ref}{closer}."
    return text


def _protection_effect(label: str, name: str, value: float, base: float | None, chance: float | None) -> str:
    """What the strongest protector does to the victim's key metric, against the clean victim and chance."""
    if base is None:
        return f"{label} leaves the lowest {name}: {value:.3f}"
    if value >= base:
        return f"No protector lowers the {name} below the clean victim's {base:.3f}; the lowest, {label}, leaves {value:.3f}"
    text = f"{label} lowers the {name} the most: {value:.3f} against {base:.3f} for the clean victim"
    if chance is not None and base > chance:
        text += f", {percent(min(1.0, (base - value) / (base - chance)))} of the way to chance ({chance:.3f})"
    return text


def protect_headline(table: Table) -> str:
    """Which protector lowers the victim's key metric the most, how close to chance it gets, at what cost."""
    key = key_column(table)
    rows = by_metric(table, key) if key is not None else []
    if key is None or not rows:
        return "No protector to compare in this table."
    best, clean = rows[0], table.row("clean")
    base = clean.metrics[key].mean if clean is not None and key in clean.metrics else None
    text = _protection_effect(
        best.label, f"victim's {_header(key)}", best.metrics[key].mean, base, table.chance.get(key)
    )
    if best.ratio is not None:
        text += f", at {best.ratio.mean:.2f}× one clean victim training"
    if len(rows) > 1:
        text += f"; next: {rows[1].label} ({rows[1].metrics[key].mean:.3f})"
    return text + "."


def headline(table: Table, original_gap: float | None = None) -> str:
    """The table's one-sentence summary (see `unlearn_headline` and `protect_headline`)."""
    return protect_headline(table) if is_protect(table) else unlearn_headline(table, original_gap)


def glossary_rows(table: Table, columns: Sequence[Column]) -> tuple[list[str], list[list[object]]]:
    """The glossary of a table's columns, in the order `table_rows` shows them."""
    lead, rest = split_columns(table, columns)
    rows: list[list[object]] = [[e.column, e.meaning, e.direction, e.target]
                                for e in glossary.entries(table, [*lead, *rest], len(lead))]  # fmt: skip
    return ["column", "meaning", "direction", "target"], rows


def _seed_cell(name: str, value: float | None, table: Table) -> str:
    if value is None:
        return "-"
    if name == "seconds_ratio":
        return f"{value:.2f}×" if is_protect(table) else percent(value)
    return f"{value:.{2 if name in ('seconds', 'protect_seconds') else 3}f}"


def seed_rows(table: Table, values: Sequence[SeedValue]) -> tuple[list[str], list[list[object]]]:
    """One row per (row, seed) of a table from the per-seed values, columns in `table_rows` order."""
    lead, rest = split_columns(table, table.columns)
    costs = (
        ["protect_seconds", "seconds", "seconds_ratio"]
        if is_protect(table)
        else ["gap_to_retrain", "seconds", "seconds_ratio"]
    )
    names: list[tuple[str, str]] = [*lead, *((c, "") for c in costs), *rest]
    cells: dict[tuple[str, int], dict[tuple[str, str], float]] = defaultdict(dict)
    for v in values_of(values, table):
        cells[v.method, v.seed][v.metric, v.split] = v.value
    order = {r.label: i for i, r in enumerate(table.rows)}
    keys = sorted(cells, key=lambda k: (order.get(k[0], len(order)), k[0], k[1]))
    headers, _ = table_rows(table, table.columns)
    rows: list[list[object]] = [
        [m, s, *(_seed_cell(n, cells[m, s].get((n, sp)), table) for n, sp in names)] for m, s in keys
    ]
    start = name_columns(table)
    return [headers[0], "seed", *headers[start : start + len(lead) + len(costs)], *map(_header, rest)], rows


def markdown_table(table: Table, columns: Sequence[Column] | None = None) -> str:
    """A Markdown pipe table (every column unless ``columns`` is given)."""
    headers, rows = table_rows(table, columns if columns is not None else table.columns)
    return format_table(headers, rows)


def markdown_glossary(table: Table, columns: Sequence[Column] | None = None) -> str:
    """The glossary of a table as Markdown."""
    headers, rows = glossary_rows(table, columns if columns is not None else table.columns)
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


def seed_csv_text(values: Sequence[SeedValue]) -> str:
    """Per-seed CSV: one line per (record, metric), plus each record's seconds, gap and time share."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SEED_FIELDS)
    for v in values:
        w.writerow([v.scenario, v.dataset, v.size, v.request, v.method, v.seed, v.metric, v.split, f"{v.value:.6g}"])
    return buf.getvalue()
