"""The report's figures as PNG bytes (matplotlib's object API with the Agg canvas: no pyplot state).

Every panel has a legend; metric axes are zoomed around the values shown (they do not start at zero), so
small differences between methods stay visible.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from ..records.aggregate import Column, Stat, Table
from ..records.summary import by_gap, reference_label
from ..results import RunRecord
from .tables import percent

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 (points)
DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (0, 1), (-1, 0), (0, -1))
ROW_STYLE = {  # (marker, colour, legend label) of the rows every unlearning panel shows beside the methods
    "original": ("s", "#8c8c8c", "original (before unlearning)"),
    "retrain": ("D", "black", "retrain (the target)"),
}
METHOD_STYLE = ("o", "#4C72B0", "methods (mean ± std over seeds)")
MAX_WIDTH = 13.5  # inches: wider figures are shrunk to illegibility by a 1400-pixel page
LEGEND_ROOM = 0.3  # share of a metric panel's value range added on top, for its legend


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def around(stats: Sequence[Stat], pad: float = 0.15) -> tuple[float, float]:
    """Axis limits that hold every mean ± std with a margin: zoomed on the values, not from zero."""
    lo = min(s.mean - s.std for s in stats)
    hi = max(s.mean + s.std for s in stats)
    margin = (hi - lo) * pad if hi > lo else max(abs(hi) * 0.05, 0.01)
    return lo - margin, hi + margin


def _direction_note(table: Table, column: Column) -> str:
    better = table.higher_is_better.get(column)
    if better is None:
        return f"target = {reference_label(table.scenario)}"
    return "higher is better" if better else "lower is better"


def metric_panel(ax: Axes, table: Table, column: Column) -> None:
    """One metric: a point per row (original and retrain first), error bar = std, retrain's value dashed."""
    present = [r for r in table.rows if column in r.metrics]
    ax.set_title(f"{column[0]} ({column[1]}) · {_direction_note(table, column)}", fontsize=9)
    if not present:
        return
    seen: set[str] = set()
    for i, r in enumerate(present):
        marker, colour, label = ROW_STYLE.get(r.label, METHOD_STYLE)
        stat = r.metrics[column]
        ax.errorbar(i, stat.mean, yerr=stat.std, fmt=marker, color=colour, capsize=3, markersize=5,
                    label=None if label in seen else label)  # fmt: skip
        seen.add(label)
    ref = table.row(reference_label(table.scenario))
    if ref is not None and column in ref.metrics:
        ax.axhline(ref.metrics[column].mean, color="black", linestyle="--", linewidth=0.8, label="retrain's value")
    lo, hi = around([r.metrics[column] for r in present])
    ax.set_ylim(lo, hi + LEGEND_ROOM * (hi - lo))  # the legend sits in the free band at the top
    if (chance := table.chance.get(column)) is not None and ax.get_ylim()[0] <= chance <= ax.get_ylim()[1]:
        ax.axhline(chance, color="gray", linestyle=":", label="chance")
    ax.set_xticks(range(len(present)), [r.label for r in present], rotation=45, ha="right", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=6, loc="upper center", ncols=2, frameon=False)


def metric_bars(table: Table, columns: Sequence[Column]) -> bytes:
    """One panel per metric: the original and retrain beside every method, y axis zoomed on the values."""
    n = max(1, len(columns))
    width = max(4.4, 0.32 * len(table.rows) + 1.6)  # a panel widens with the rows it shows
    ncols = max(1, min(3, n, int(MAX_WIDTH // width)))
    fig = Figure(figsize=(width * ncols, 3.4 * math.ceil(n / ncols) + 0.6))
    for i, col in enumerate(columns):
        metric_panel(fig.add_subplot(math.ceil(n / ncols), ncols, i + 1), table, col)
    fig.suptitle(f"{table.title} · mean ± std over seeds (y axes do not start at 0)", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _overlap(a: Box, b: Box) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def place_labels(
    points: Sequence[tuple[float, float]], sizes: Sequence[tuple[float, float]], marker: float = 4.0, rings: int = 6
) -> list[tuple[float, float]]:
    """Offsets (label centre - point, in points) that keep labels off each other and off the markers.

    Greedy, in the given order: each label takes the first candidate (8 directions on rings of growing
    radius) that overlaps no placed label and no marker, or else the candidate that overlaps least.

    Args:
        points: the labelled points, in points (display units at 72 per inch).
        sizes: each label's (width, height) in points.
        marker: a marker's half-size in points.
        rings: how many rings of candidates to try.
    """
    markers = [(x - marker, y - marker, x + marker, y + marker) for x, y in points]
    step = max([max(w, h) for w, h in sizes] + [2 * marker]) + 2
    placed: list[Box] = []
    offsets = []
    for (x, y), (w, h) in zip(points, sizes, strict=True):
        best: tuple[float, tuple[float, float], Box] | None = None
        for ring in range(rings):
            for dx, dy in DIRECTIONS:
                ox, oy = dx * (marker + 1 + ring * step + w / 2), dy * (marker + 1 + ring * step + h / 2)
                box = (x + ox - w / 2, y + oy - h / 2, x + ox + w / 2, y + oy + h / 2)
                cost = sum(_overlap(box, other) for other in [*placed, *markers])
                if best is None or cost < best[0]:
                    best = (cost, (ox, oy), box)
            if best is not None and best[0] == 0:
                break
        assert best is not None
        placed.append(best[2])
        offsets.append(best[1])
    return offsets


def _pareto(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points nothing beats on both axes (cheaper and closer), by increasing cost."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points):
        if not front or y < front[-1][1]:
            front.append((x, y))
    return front


def _numbered_labels(fig: Figure, ax: Axes, xy: Sequence[tuple[float, float]], colours: Sequence[object]) -> None:
    """Number each point (1 = closest to retrain) next to it, the numbers kept apart by `place_labels`."""
    scale = 72 / fig.dpi
    pts = [(px * scale, py * scale) for px, py in ax.transData.transform(xy)]
    texts = [str(n) for n in range(1, len(xy) + 1)]
    offsets = place_labels(pts, [(0.62 * 8 * len(t) + 2, 10.0) for t in texts])
    for text, point, offset, colour in zip(texts, xy, offsets, colours, strict=True):
        far = math.hypot(*offset) > 16
        ax.annotate(text, point, xytext=offset, textcoords="offset points", ha="center", va="center", fontsize=8,
                    color=colour, fontweight="bold",
                    arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.5} if far else None)  # fmt: skip


def _log_ticks(limits: Callable[[], tuple[float, float]], show: Callable[[float], str]) -> FuncFormatter:
    """Plain tick labels on a log axis: each decade, and 2 and 5 within it (every tick on a short axis)."""

    def label(value: float, _pos: object = None) -> str:
        if value <= 0:
            return ""
        lo, hi = sorted(limits())
        mantissa = round(value / 10 ** math.floor(math.log10(value)), 6)
        short = lo > 0 and math.log10(hi / lo) < 0.6
        return show(value) if short or mantissa in (1, 2, 5) else ""

    return FuncFormatter(label)


def _log_axes(ax: Axes, percent_x: bool) -> None:
    """Log scales on both axes, labelled with plain numbers (percentages on x for a time share)."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    x_fmt = _log_ticks(ax.get_xlim, percent if percent_x else lambda v: f"{v:g}")
    y_fmt = _log_ticks(ax.get_ylim, lambda v: f"{v:g}")
    for axis, fmt in ((ax.xaxis, x_fmt), (ax.yaxis, y_fmt)):
        axis.set_major_formatter(fmt)
        axis.set_minor_formatter(fmt)


def time_vs_gap(table: Table, original_gap: float | None = None) -> bytes:
    """Cost vs gap: a numbered point per method (1 = closest to retrain), the numbers explained in the legend.

    x = seconds / retrain's seconds (or seconds, where a ratio is missing), y = gap to retrain; lower-left
    wins. The best trade-offs are joined; retrain's time and the original's gap are reference lines.
    """
    rows = by_gap(table)
    use_ratio = all(r.ratio is not None for r in rows)
    ref = reference_label(table.scenario)
    points = [(r, x, r.gap) for r in rows if (x := r.ratio if use_ratio else r.seconds) is not None and r.gap]
    fig = Figure(figsize=(10, max(4.4, 0.17 * len(points) + 1.6)))
    ax = fig.add_subplot()
    palette = colormaps["tab10" if len(points) <= 10 else "tab20"]
    colours = [palette(i % palette.N) for i in range(len(points))]
    for n, ((r, x, gap), colour) in enumerate(zip(points, colours, strict=True), 1):
        cost = percent(x.mean) if use_ratio else f"{x.mean:.3g} s"
        ax.errorbar(x.mean, gap.mean, xerr=x.std, yerr=gap.std, fmt="o", color=colour, capsize=2, markersize=5,
                    elinewidth=0.8, label=f"{n}  {r.label}  (gap {gap.mean:.3f}, {cost})")  # fmt: skip
    stats = [(x, gap) for _, x, gap in points]
    front = _pareto([(x.mean, g.mean) for x, g in stats])
    if len(front) > 1:
        ax.plot(*zip(*front, strict=True), color="gray", linewidth=1, alpha=0.6, zorder=0,
                label="best trade-offs (nothing cheaper is closer)")  # fmt: skip
    if use_ratio:
        ax.axvline(1.0, color="black", linestyle="--", linewidth=0.8, label=f"{ref}'s time")
    if original_gap is not None:
        ax.axhline(original_gap, color="gray", linestyle=":", label=f"original, no unlearning (gap {original_gap:.3f})")
    values = [v for x, g in stats for v in (x.mean, g.mean)] + ([original_gap] if original_gap is not None else [])
    if values and all(v > 0 for v in values):
        _log_axes(ax, use_ratio)  # methods differ by orders of magnitude in both; linear axes pile them up
    ax.set_xlabel(f"seconds / {ref}'s seconds (share of {ref}'s time)" if use_ratio else "seconds")
    ax.set_ylabel(f"gap to {ref} (mean |Δ| over headline metrics)")
    ax.set_title(f"cost vs gap to {ref} · {table.data_title} · {table.setting} · lower-left wins",
                 fontsize=10)  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), title=f"1 = closest to {ref}",
              title_fontsize=7, ncols=1 if len(stats) <= 24 else 2)  # fmt: skip
    fig.tight_layout()
    _numbered_labels(fig, ax, [(x.mean, g.mean) for x, g in stats], colours)
    return _png(fig)


def projection_panel(ax: Axes, record: RunRecord) -> None:
    """One record's 2-D PCA scatter, coloured by class, with a class legend beside it."""
    p = record.extras["projection"]
    labels = list(p["label"])
    classes = sorted(set(labels))
    cmap = colormaps["tab10"]
    if len(classes) <= 10:
        for c in classes:
            idx = [i for i, lab in enumerate(labels) if lab == c]
            ax.scatter([p["x"][i] for i in idx], [p["y"][i] for i in idx], color=cmap(int(c) % 10), s=6, label=str(c))
        ax.legend(title="class", fontsize=6, title_fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5),
                  markerscale=1.5, frameon=False, handletextpad=0.1, borderaxespad=0.2, labelspacing=0.3)  # fmt: skip
    else:
        ax.scatter(p["x"], p["y"], c=labels, cmap="tab20", s=6, label=f"{len(classes)} classes (colour = class)")
        ax.legend(fontsize=6, loc="upper right")
    row = str(record.extras.get("row", record.method))
    ax.set_title({"original": "original (before)", "retrain": "retrain (the target)"}.get(row, row), fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def projections(records: Sequence[RunRecord], title: str) -> bytes:
    """2-D PCA of the unlearn set's image features: the original, retrain, then each method (one seed)."""
    records = sorted(records, key=lambda r: (r.method != "original", r.method != "retrain"))
    n = len(records)
    ncols = min(4, n)
    fig = Figure(figsize=(3.9 * ncols, 3.0 * math.ceil(n / ncols) + 0.4))
    for i, r in enumerate(records):
        projection_panel(fig.add_subplot(math.ceil(n / ncols), ncols, i + 1), r)
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
    ax.set_ylabel(f"victim {column[0]} on clean {column[1]} pairs (lower = stronger protection)")
    ax.set_title(f"protection vs victim and defence · {tables[0].data_title}", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)
