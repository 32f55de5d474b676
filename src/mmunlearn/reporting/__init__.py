"""Reports from a results store: Markdown and CSV tables, PNG plots, one offline HTML page, a README section.

Reports read only `RunRecord`s (through `mmunlearn.benchmarking.read_records`); nothing is recomputed
beyond the aggregation. Every table opens with a one-sentence headline, then its key columns (gap to
retrain and costs, or the key victim metric and costs); a glossary and the per-seed values follow it.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ConfigError
from ..fileio import atomic_write_bytes, replace_folder, sha256_file, staging_folder
from ..outputs import check_file, check_folder, describe_found, inspect_folder, read_text_file
from ..records.aggregate import Table, aggregate
from ..records.store import latest_by_cell, read_records
from ..records.summary import SeedValue, mean_of, per_seed_values, reference_label, values_of
from ..results import RunRecord
from . import plots
from .html import Section, link_html, page, slug, table_html
from .tables import (
    csv_text,
    glossary_rows,
    headline,
    headline_columns,
    is_protect,
    key_column,
    key_count,
    markdown_glossary,
    markdown_ranks,
    markdown_table,
    name_columns,
    rank_note,
    rank_rows,
    seed_csv_text,
    seed_rows,
    table_rows,
)

REPORT_FILES = ("report.md", "summary.csv", "index.html", "per_seed.csv")
PER_SEED = REPORT_FILES[3]
FIGURES = "figures"
README_BEGIN = "<!-- mmunlearn-report:begin -->"
README_END = "<!-- mmunlearn-report:end -->"
TITLE = "mmunlearn benchmark report"


def environment(records: Sequence[RunRecord], stores: Sequence[Path], command: str | None) -> list[tuple[str, str]]:
    """What made the numbers: software versions, machines, seeds, bench commands, the store and this command."""
    versions: dict[str, set[str]] = defaultdict(set)
    for r in records:
        for k, v in r.versions.items():
            versions[k].add(str(v))
    machines = sorted({
        f"{m.get('cpu')}, {m.get('cores')} cores, {m.get('torch_threads')} torch threads, {m.get('platform')}"
        for r in records if isinstance(m := r.extras.get("machine"), dict)
    })  # fmt: skip
    commands = sorted({str(r.extras["command"]) for r in records if r.extras.get("command")})
    return [
        ("software", "; ".join(f"{k} {', '.join(sorted(v))}" for k, v in sorted(versions.items()))),
        ("machine", " | ".join(machines) or "not recorded"),
        ("seeds", ", ".join(str(s) for s in sorted({r.seed for r in records}))),
        ("records", f"{len(records)} from " + ", ".join(f"{s} (sha256 {sha256_file(s)[:16]}…)" for s in stores)),
        ("bench command", " | ".join(commands) or "not recorded"),
        ("report command", command or "not recorded"),
        ("generated", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]


def original_gap(table: Table, values: Sequence[SeedValue]) -> float | None:
    """The original's mean gap to retrain in ``table`` (how far doing nothing is), from the per-seed values."""
    return mean_of(values_of(values, table), "original", "gap_to_retrain")


def figures(table: Table, records: Sequence[RunRecord], values: Sequence[SeedValue] = ()) -> list[tuple[str, bytes]]:
    """The figures of one unlearning table: metric panels, cost vs gap, feature projections (first seed)."""
    out = [("headline metrics", plots.metric_bars(table, headline_columns(table)))]
    if table.row(reference_label(table.scenario)) is not None and any(r.gap for r in table.rows):
        out.append(("cost vs gap to retrain", plots.time_vs_gap(table, original_gap(table, values))))
    mine = [
        r for r in records
        if r.scenario == table.scenario and r.extras.get("setting") == table.setting
        and r.extras.get("dataset") == table.dataset and r.extras.get("size") == table.size and "projection" in r.extras
    ]  # fmt: skip
    if mine:
        seed = min(r.seed for r in mine)
        title = f"unlearn-set image features (2-D PCA), seed {seed}: original, retrain, each method"
        out.append(("feature projection", plots.projections([r for r in mine if r.seed == seed], title)))
    return out


def anchor(n: int, table: Table) -> str:
    """The page anchor of the ``n``-th table."""
    return f"t{n}-{slug(table.title)}"


def _glossary_html(table: Table) -> str:
    headers, rows = glossary_rows(table, table.columns)
    return table_html(headers, rows, css="glossary")


def _per_seed_html(table: Table, values: Sequence[SeedValue]) -> str:
    headers, rows = seed_rows(table, values)
    note = f"<p>Every value of every record, with the other tables', is in {link_html(PER_SEED, PER_SEED)}.</p>"
    return note + table_html(
        headers,
        rows,
        reference=reference_label(table.scenario),
        key=key_count(table, table.columns) - name_columns(table) + 2,
    )


def _table_section(table: Table, records: Sequence[RunRecord], values: Sequence[SeedValue], n: int = 1) -> Section:
    s = Section(table.title, anchor(n, table))
    s.text(headline(table, original_gap(table, values)), css="headline")
    headers, rows = table_rows(table, table.columns)
    meanings = [e[1] for e in glossary_rows(table, table.columns)[1]]
    s.table(headers, rows, reference=reference_label(table.scenario), css="results",
            key=key_count(table, table.columns), titles=[*[""] * name_columns(table), *map(str, meanings)])  # fmt: skip
    s.details(f"Glossary: what each of the {len(headers) - name_columns(table)} columns means, which way is better, and its target",
              _glossary_html(table))  # fmt: skip
    s.details(f"Per-seed values ({len(seed_rows(table, values)[1])} rows; also in {PER_SEED})",
              _per_seed_html(table, values))  # fmt: skip
    if table.ranks:
        s.heading(rank_note(table))
        s.table(*rank_rows(table))
    if not is_protect(table):
        for alt, png in figures(table, records, values):
            s.image(png, f"{alt}: {table.title}")
    for cell, error in table.failed:
        s.text(f"failed cell {cell}: {error}", css="failed")
    return s


def _defence_sections(tables: Sequence[Table]) -> list[Section]:
    by_data: dict[tuple[str, str], list[Table]] = defaultdict(list)
    for t in tables:
        if is_protect(t):
            by_data[t.dataset, t.size].append(t)
    sections = []
    for (dataset, size), group in by_data.items():
        column = key_column(group[0]) or ("i2t_r1", "test")
        s = Section(
            f"protect · {dataset} ({size}) · victim recall against victims and defences",
            slug(f"defence {dataset} {size}"),
        )
        s.image(plots.recall_vs_defence(group, column), f"recall vs defence on {dataset} {size}")
        sections.append(s)
    return sections


def _overview(tables: Sequence[Table], values: Sequence[SeedValue]) -> Section:
    """The page's first section: every table's headline, linked to the table, and where the rest is."""
    s = Section("at a glance", "at-a-glance")
    s.text(
        "One sentence per table; click a title for the table. In every table the first columns are the ones to "
        "read: the gap to retrain (0 = behaves like retraining from scratch; lower is better), the seconds and the "
        "share of retrain's time (protection tables: the victim's key recall and the protection's cost). Hover a "
        "column header, or open a table's glossary, for what it means."
    )
    s.links([(t.title, f"#{anchor(n, t)}", f": {headline(t, original_gap(t, values))}")
             for n, t in enumerate(tables, 1)], css="glance")  # fmt: skip
    s.link("Per-seed values of every record: ", PER_SEED, PER_SEED, " (one row per record and metric).")
    s.link("How the numbers were made (software, machine, seeds, commands): ", "environment", "#environment")
    return s


def markdown_report(
    tables: Sequence[Table], env: Sequence[tuple[str, str]], gaps: dict[str, float | None] | None = None
) -> str:
    """Every table (headline, all columns, glossary) and its ranks, after the environment.

    ``gaps``: table title -> the original's gap to retrain, for the headlines.
    """
    gaps = gaps or {}
    lines = [f"# {TITLE}", "", *(f"- **{k}**: {v}" for k, v in env), ""]
    lines += [f"Per-seed values of every record: `{PER_SEED}`.", ""]
    for t in tables:
        lines += [f"## {t.title}", "", f"**{headline(t, gaps.get(t.title))}**", "", markdown_table(t), ""]
        lines += ["Glossary:", "", markdown_glossary(t), ""]
        if t.ranks:
            lines += [f"{rank_note(t).capitalize()}:", "", markdown_ranks(t), ""]
        lines += [f"Failed cell `{cell}`: {err}" for cell, err in t.failed]
    return "\n".join(lines) + "\n"


def readme_markers(block: str = "") -> tuple[str, str]:
    """The begin and end lines of a README's generated block (``block`` names one of several)."""
    if not block:
        return README_BEGIN, README_END
    if not re.fullmatch(r"[A-Za-z0-9_-]+", block):
        raise ConfigError(f"--readme-block must be letters, digits, '-' or '_', got {block!r}")
    return README_BEGIN.replace("begin", f"begin {block}"), README_END.replace("end", f"end {block}")


def _block_pattern(block: str) -> re.Pattern[str]:
    begin, end = readme_markers(block)
    return re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)


def readme_section(
    tables: Sequence[Table],
    command: str | None,
    report_dir: str,
    gaps: dict[str, float | None] | None = None,
    block: str = "",
) -> str:
    """The README's generated block: every table's headline and headline columns, and where the rest is."""
    gaps = gaps or {}
    begin, end = readme_markers(block)
    lines = [
        begin,
        f"<!-- generated by `{command}`; do not edit by hand -->",
        "",
        f"Generated from the results store(s) by `{command}`; every column, the ranks and the plots are in "
        f"`{report_dir}/report.md` and `{report_dir}/index.html`; the per-seed values in `{report_dir}/{PER_SEED}`.",
        "",
    ]
    for t in tables:
        lines += [f"**{t.title}**", "", headline(t, gaps.get(t.title)), "", markdown_table(t, headline_columns(t)), ""]
    lines.append(end)
    return "\n".join(lines)


def check_readme(readme: str | os.PathLike[str], block: str = "") -> str:
    """The text of a README whose report block (named ``block``, or the unnamed one) can be rewritten.

    Raises:
        ConfigError: a missing, unwritable or non-UTF-8 file, or one without the report markers.
    """
    text = read_text_file(check_file(readme, "--readme"), "--readme", ConfigError)
    if not _block_pattern(block).search(text):
        begin, end = readme_markers(block)
        raise ConfigError(f"{readme} has no '{begin}' ... '{end}' block to replace; add the two lines")
    return text


def update_readme(readme: Path, section: str, block: str = "") -> None:
    """Replace the text between the report markers named ``block`` of ``readme`` with ``section``.

    Raises:
        ConfigError: the markers are missing.
    """
    text = check_readme(readme, block)
    atomic_write_bytes(readme, _block_pattern(block).sub(lambda _: section, text).encode())


def check_report_args(
    stores: Sequence[Path], out_dir: Path, readme: str | os.PathLike[str] | None, block: str = ""
) -> None:
    """Every argument of `write_report`, checked before anything is written.

    Raises:
        FileNotFoundError: a missing results store.
        ConfigError: a store that is a folder, an output that is a file, unwritable or holds an
            mmunlearn artefact, or a README that cannot be updated.
    """
    for store in stores:
        if store.is_dir():
            raise ConfigError(f"results store {store} is a folder, not a results file (results.jsonl)")
        if not store.is_file():
            raise FileNotFoundError(f"no results store at {store}; run `mmunlearn bench CONFIG.yaml` first")
    check_folder(out_dir, "--out")
    found = inspect_folder(out_dir)
    if found.format is not None:
        raise ConfigError(f"--out {describe_found(out_dir, found)}; choose another folder for the report")
    if readme is not None:
        check_readme(readme, block)


def write_report(
    results: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    command: str | None = None,
    readme: str | os.PathLike[str] | None = None,
    readme_block: str = "",
) -> dict[str, Path]:
    """Write ``report.md``, ``summary.csv``, ``per_seed.csv``, one PNG per figure and ``index.html`` into ``out_dir``.

    Args:
        results: a results store written by ``mmunlearn bench``, or several (their records are pooled;
            a cell present in two stores counts once, the later store's record winning).
        out_dir: the report folder (created).
        command: the command that made the report (printed in it).
        readme: a Markdown file whose report block is rewritten with the headline tables.
        readme_block: which block of ``readme`` (its markers carry the name; "" the unnamed one), so
            that reports of separate stores keep separate blocks.

    Returns:
        Kind -> written path (``markdown``, ``csv``, ``html``, ``figures`` folder, ``readme``); the per-seed
        CSV is `PER_SEED` next to the page.

    Raises:
        FileNotFoundError: a missing results store.
        ConfigError: a store without any bench record, an output folder that is a file or not writable,
            or a README that is missing or lacks the report markers (all checked before writing).
    """
    stores = [Path(results)] if isinstance(results, str | os.PathLike) else [Path(r) for r in results]
    check_report_args(stores, Path(out_dir), readme, readme_block)
    pooled = [r for store in stores for r in read_records(store, repair=False) if "cell" in r.extras]
    records = list(latest_by_cell(pooled).values())  # a re-run cell counts once, its newest record
    if not records:
        raise ConfigError(f"{', '.join(map(str, stores))} hold(s) no bench records")
    out = Path(out_dir)
    tables = aggregate(records)
    values = per_seed_values(records)
    gaps = {t.title: original_gap(t, values) for t in tables}
    env = environment(records, stores, command)
    sections = [_overview(tables, values)]
    sections += [_table_section(t, records, values, n) for n, t in enumerate(tables, 1)]
    sections += _defence_sections(tables)
    sections.append(Section("environment", "environment"))
    sections[-1].table(["what", "value"], env, css="kv")
    contents = {
        REPORT_FILES[0]: markdown_report(tables, env, gaps).encode(),
        REPORT_FILES[1]: csv_text(tables).encode(),
        REPORT_FILES[2]: page(TITLE, sections).encode(),
        PER_SEED: seed_csv_text(values).encode(),
        **_figure_files(sections),
    }
    write_report_folder(out, contents)
    files = {"markdown": out / "report.md", "csv": out / "summary.csv", "html": out / "index.html"}
    files["figures"] = out / FIGURES
    if readme is not None:
        update_readme(Path(readme), readme_section(tables, command, str(out), gaps, readme_block), readme_block)
        files["readme"] = Path(readme)
    return files


def _figure_files(sections: Sequence[Section]) -> dict[str, bytes]:
    """Each figure of the page also as a PNG file, ``figures/NN-slug.png``, numbered in page order."""
    out = {}
    for n, (alt, png) in enumerate((img for s in sections for img in s.images), 1):
        out[f"{FIGURES}/{n:02d}-{slug(alt)[:80]}.png"] = png
    return out


def write_report_folder(out: Path, contents: dict[str, bytes]) -> None:
    """Write a report's files (relative path -> bytes) so that an interrupt leaves the old report or the new.

    The files go into a staging sibling folder that then replaces ``out`` in one step. A folder that also
    holds files a report does not write is updated file by file instead (each file atomically, the old
    figures removed), so those files are never touched.
    """
    if not _holds_only_a_report(out):
        for old in (out / FIGURES).glob("*.png"):
            old.unlink()
        for rel, data in contents.items():
            atomic_write_bytes(out / rel, data)
        return
    staging = staging_folder(out)
    try:
        for rel, data in contents.items():
            atomic_write_bytes(staging / rel, data)
        replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _holds_only_a_report(out: Path) -> bool:
    """Whether ``out`` is absent, or a folder of nothing but a report's files and PNG figures."""
    if not out.exists():
        return True
    if not out.is_dir():
        return False
    for entry in out.iterdir():
        if entry.name == FIGURES and entry.is_dir():
            if not all(f.suffix == ".png" and f.is_file() for f in entry.iterdir()):
                return False
        elif entry.name not in REPORT_FILES or not entry.is_file():
            return False
    return True
