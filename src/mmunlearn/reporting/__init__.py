"""Reports from a results store: Markdown and CSV tables, PNG plots, one offline HTML page, a README section.

Reports read only `RunRecord`s (through `mmunlearn.benchmarking.read_records`); nothing is recomputed.
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
from ..results import RunRecord
from . import plots
from .html import Section, page
from .tables import RANK_NOTE, csv_text, headline_columns, markdown_ranks, markdown_table, rank_rows, table_rows

REPORT_FILES = ("report.md", "summary.csv", "index.html")
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


def figures(table: Table, records: Sequence[RunRecord]) -> list[tuple[str, bytes]]:
    """The figures of one scenario-A table: metric bars, cost vs gap, feature projections (first seed)."""
    out = [("headline metrics", plots.metric_bars(table, headline_columns(table)))]
    if table.row("retrain") is not None and any(r.gap for r in table.rows):
        out.append(("cost vs gap to retrain", plots.time_vs_gap(table)))
    mine = [
        r for r in records
        if r.scenario == "unlearn" and r.extras.get("setting") == table.setting and r.extras.get("dataset") == table.dataset
        and r.extras.get("size") == table.size and "projection" in r.extras
    ]  # fmt: skip
    if mine:
        seed = min(r.seed for r in mine)
        title = f"unlearn-set image features (2-D PCA), seed {seed}: original, retrain, each method"
        out.append(("feature projection", plots.projections([r for r in mine if r.seed == seed], title)))
    return out


def _table_section(table: Table, records: Sequence[RunRecord]) -> Section:
    s = Section(table.title)
    reference = "retrain" if table.scenario == "unlearn" else "clean"
    s.table(*table_rows(table, table.columns), reference=reference)
    if table.ranks:
        s.heading(RANK_NOTE[table.scenario])
        s.table(*rank_rows(table))
    if table.scenario == "unlearn":
        for alt, png in figures(table, records):
            s.image(png, f"{alt}: {table.title}")
    for cell, error in table.failed:
        s.text(f"failed cell {cell}: {error}", css="failed")
    return s


def _defence_sections(tables: Sequence[Table]) -> list[Section]:
    by_data: dict[tuple[str, str], list[Table]] = defaultdict(list)
    for t in tables:
        if t.scenario == "protect":
            by_data[t.dataset, t.size].append(t)
    sections = []
    for (dataset, size), group in by_data.items():
        s = Section(f"protect · {dataset} ({size}) · victim recall against victims and defences")
        s.image(plots.recall_vs_defence(group), f"recall vs defence on {dataset} {size}")
        sections.append(s)
    return sections


def markdown_report(tables: Sequence[Table], env: Sequence[tuple[str, str]]) -> str:
    """Every table (all columns) and its ranks, after the environment."""
    lines = [f"# {TITLE}", "", *(f"- **{k}**: {v}" for k, v in env), ""]
    for t in tables:
        lines += [f"## {t.title}", "", markdown_table(t), ""]
        if t.ranks:
            lines += [f"{RANK_NOTE[t.scenario].capitalize()}:", "", markdown_ranks(t), ""]
        lines += [f"Failed cell `{cell}`: {err}" for cell, err in t.failed]
    return "\n".join(lines) + "\n"


def readme_section(tables: Sequence[Table], command: str | None, report_dir: str) -> str:
    """The README's generated block: headline columns of every table, and where the full report is."""
    lines = [
        README_BEGIN,
        f"<!-- generated by `{command}`; do not edit by hand -->",
        "",
        f"Generated from the results store(s) by `{command}`; every column, the ranks and the plots are in "
        f"`{report_dir}/report.md` and `{report_dir}/index.html`.",
        "",
    ]
    for t in tables:
        lines += [f"**{t.title}**", "", markdown_table(t, headline_columns(t)), ""]
    lines.append(README_END)
    return "\n".join(lines)


_README_BLOCK = re.compile(re.escape(README_BEGIN) + r".*?" + re.escape(README_END), re.S)


def check_readme(readme: str | os.PathLike[str]) -> str:
    """The text of a README whose report block can be rewritten.

    Raises:
        ConfigError: a missing, unwritable or non-UTF-8 file, or one without the report markers.
    """
    text = read_text_file(check_file(readme, "--readme"), "--readme", ConfigError)
    if not _README_BLOCK.search(text):
        raise ConfigError(f"{readme} has no '{README_BEGIN}' ... '{README_END}' block to replace; add the two lines")
    return text


def update_readme(readme: Path, block: str) -> None:
    """Replace the text between the report markers of ``readme`` with ``block``.

    Raises:
        ConfigError: the markers are missing.
    """
    text = readme.read_text()
    pattern = re.compile(re.escape(README_BEGIN) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        raise ConfigError(f"{readme} has no '{README_BEGIN}' ... '{README_END}' block to replace; add the two lines")
    atomic_write_bytes(readme, pattern.sub(lambda _: block, text).encode())


def check_report_args(stores: Sequence[Path], out_dir: Path, readme: str | os.PathLike[str] | None) -> None:
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
        check_readme(readme)


def write_report(
    results: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    command: str | None = None,
    readme: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, ``summary.csv``, one PNG per figure and ``index.html`` into ``out_dir``.

    Args:
        results: a results store written by ``mmunlearn bench``, or several (their records are pooled;
            a cell present in two stores counts once, the later store's record winning).
        out_dir: the report folder (created).
        command: the command that made the report (printed in it).
        readme: a Markdown file whose report block is rewritten with the headline tables.

    Returns:
        Kind -> written path (``markdown``, ``csv``, ``html``, ``figures`` folder, ``readme``).

    Raises:
        FileNotFoundError: a missing results store.
        ConfigError: a store without any bench record, an output folder that is a file or not writable,
            or a README that is missing or lacks the report markers (all checked before writing).
    """
    stores = [Path(results)] if isinstance(results, str | os.PathLike) else [Path(r) for r in results]
    check_report_args(stores, Path(out_dir), readme)
    pooled = [r for store in stores for r in read_records(store, repair=False) if "cell" in r.extras]
    records = list(latest_by_cell(pooled).values())  # a re-run cell counts once, its newest record
    if not records:
        raise ConfigError(f"{', '.join(map(str, stores))} hold(s) no bench records")
    out = Path(out_dir)
    tables = aggregate(records)
    env = environment(records, stores, command)
    sections = [Section("environment")]
    sections[0].table(["what", "value"], env, css="kv")
    sections += [_table_section(t, records) for t in tables]
    sections += _defence_sections(tables)
    contents = {
        REPORT_FILES[0]: markdown_report(tables, env).encode(),
        REPORT_FILES[1]: csv_text(tables).encode(),
        REPORT_FILES[2]: page(TITLE, sections).encode(),
        **_figure_files(sections),
    }
    write_report_folder(out, contents)
    files = {"markdown": out / "report.md", "csv": out / "summary.csv", "html": out / "index.html"}
    files["figures"] = out / FIGURES
    if readme is not None:
        update_readme(Path(readme), readme_section(tables, command, str(out)))
        files["readme"] = Path(readme)
    return files


def _figure_files(sections: Sequence[Section]) -> dict[str, bytes]:
    """Each figure of the page also as a PNG file, ``figures/NN-slug.png``, numbered in page order."""
    out = {}
    for n, (alt, png) in enumerate((img for s in sections for img in s.images), 1):
        slug = re.sub(r"[^a-z0-9]+", "-", alt.lower()).strip("-")[:80]
        out[f"{FIGURES}/{n:02d}-{slug}.png"] = png
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
