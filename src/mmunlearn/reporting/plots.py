"""The report's figures as PNG bytes (matplotlib's object API with the Agg canvas: no pyplot state)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from matplotlib.figure import Figure

from ..records.aggregate import Column, Table
from ..results import RunRecord


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def metric_bars(table: Table, columns: Sequence[Column]) -> bytes:
    """One panel per metric: a bar per row (mean over seeds, error bar = std), the reference as a line."""
    rows = [r for r in table.rows if r.label not in ("original", "retrain")]
    ref = table.row("retrain")
    n = len(columns)
    ncols = min(3, n)
    fig = Figure(figsize=(4.2 * ncols, 3.0 * math.ceil(n / ncols) + 0.6))
    for i, col in enumerate(columns):
        ax = fig.add_subplot(math.ceil(n / ncols), ncols, i + 1)
        present = [r for r in rows if col in r.metrics]
        means = [r.metrics[col].mean for r in present]
        stds = [r.metrics[col].std for r in present]
        ax.bar(range(len(present)), means, yerr=stds, capsize=3, color="#4C72B0")
        ax.set_xticks(range(len(present)), [r.label for r in present], rotation=45, ha="right", fontsize=8)
        if ref is not None and col in ref.metrics:
            ax.axhline(ref.metrics[col].mean, label="retrain", color="black", linestyle="--", linewidth=1)
        if (chance := table.chance.get(col)) is not None:
            ax.axhline(chance, color="gray", linestyle=":", label="chance")
        ax.set_title(f"{col[0]} ({col[1]})", fontsize=9)
        if i == 0 and (ref is not None or table.chance.get(col) is not None):
            ax.legend(fontsize=7)
    fig.suptitle(table.title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def time_vs_gap(table: Table) -> bytes:
    """Scenario A: one point per method, x = seconds / retrain's seconds, y = gap to retrain (lower-left wins)."""
    fig = Figure(figsize=(6, 4.2))
    ax = fig.add_subplot()
    for r in table.rows:
        if r.gap is None or r.ratio is None or r.label == "retrain":
            continue
        ax.errorbar(r.ratio.mean, r.gap.mean, xerr=r.ratio.std, yerr=r.gap.std, fmt="o", capsize=3)
        ax.annotate(r.label, (r.ratio.mean, r.gap.mean), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if all(r.gap.mean > 0 and r.ratio.mean > 0 for r in table.rows if r.gap and r.ratio and r.label != "retrain"):
        ax.set_xscale("log")  # methods differ by orders of magnitude in both; linear axes pile them up
        ax.set_yscale("log")
    ax.set_xlabel("seconds / retrain's seconds")
    ax.set_ylabel("gap to retrain (mean |Δ| over headline metrics)")
    ax.set_title(f"cost vs forgetting quality · {table.dataset} ({table.size}) · {table.setting}", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def projections(records: Sequence[RunRecord], title: str) -> bytes:
    """2-D PCA of the unlearn set's image features: the original, retrain, then each method (one seed)."""
    records = sorted(records, key=lambda r: (r.method != "original", r.method != "retrain"))
    n = len(records)
    ncols = min(4, n)
    fig = Figure(figsize=(3.2 * ncols, 3.0 * math.ceil(n / ncols) + 0.4))
    for i, r in enumerate(records):
        ax = fig.add_subplot(math.ceil(n / ncols), ncols, i + 1)
        p = r.extras["projection"]
        ax.scatter(p["x"], p["y"], c=p["label"], cmap="tab10", s=6, vmin=0, vmax=9)
        ax.set_title(str(r.extras.get("row", r.method)), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def recall_vs_defence(tables: Sequence[Table], column: Column = ("i2t_r1", "test")) -> bytes:
    """Scenario B: victim recall per victim setting (tower, defence), one line per protector, chance dotted."""
    settings = [t.setting for t in tables]
    labels = list(dict.fromkeys(r.label for t in tables for r in t.rows))
    fig = Figure(figsize=(max(6.0, 1.1 * len(settings) + 3), 4.2))
    ax = fig.add_subplot()
    for label in labels:
        xs, ys, es = [], [], []
        for x, t in enumerate(tables):
            r = t.row(label)
            if r is not None and column in r.metrics:
                xs.append(x)
                ys.append(r.metrics[column].mean)
                es.append(r.metrics[column].std)
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
    chance = next((t.chance.get(column) for t in tables if t.chance.get(column) is not None), None)
    if chance is not None:
        ax.axhline(chance, color="gray", linestyle=":", label="chance")
    ax.set_xticks(range(len(settings)), settings, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"victim {column[0]} on clean {column[1]} pairs")
    ax.set_title(f"protection vs victim and defence · {tables[0].dataset} ({tables[0].size})", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)
