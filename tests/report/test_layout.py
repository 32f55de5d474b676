"""What a reader sees first: headlines, key columns first, a glossary of every column, readable plots.

Fast: synthetic records and hand-built tables, no training.
"""

import io

import pytest
from matplotlib.figure import Figure
from synthetic_store import METHODS, protect_records, unlearn_records

from mmunlearn.records import SCENARIO_A_METRICS, SCENARIO_C_METRICS, VICTIM_METRICS, aggregate
from mmunlearn.records.aggregate import Row, Stat, Table
from mmunlearn.reporting import glossary, plots
from mmunlearn.reporting.glossary import METRIC_MEANINGS, UNKNOWN
from mmunlearn.reporting.tables import glossary_rows, headline, headline_columns, key_count, table_rows

UNLEARN_KEYS = ["method", "gap to retrain", "seconds", "share of retrain's time"]
PROTECT_KEYS = ["protector", "mean_recall (test)", "protect s", "victim s", "protection time / clean victim's"]


def stat(*values: float) -> Stat:
    return Stat(tuple(values))


def row(label: str, gap: tuple[float, ...] | None, ratio: float | None = 0.5, value: float = 0.5) -> Row:
    metrics = {("sim_forget", "unlearn"): stat(value), ("sim_retain", "test"): stat(value)}
    return Row(label, (0,), metrics, stat(10.0), stat(*gap) if gap else None, stat(ratio) if ratio else None)


def unlearn_table(*rows: Row, scenario: str = "unlearn") -> Table:
    """A hand-built unlearning table (``scenario`` may be a new one, e.g. scenario C's) with retrain first."""
    columns = [("sim_forget", "unlearn"), ("sim_retain", "test")]
    return Table(scenario, "toy", "small", "random", [row("retrain", (0.0,), 1.0, 0.4), *rows], columns,
                 dict.fromkeys(columns), {columns[0]: None, columns[1]: True})  # fmt: skip


@pytest.fixture(scope="module")
def tables() -> list[Table]:
    return aggregate(unlearn_records(METHODS) + protect_records())


def test_every_known_metric_has_a_one_line_meaning():
    names = [
        *SCENARIO_A_METRICS,
        *SCENARIO_C_METRICS,
        *VICTIM_METRICS,
        "gap_to_retrain",
        "seconds",
        "protect_seconds",
        "seconds_ratio",
    ]
    missing = [n for n in names if n not in METRIC_MEANINGS]
    assert not missing, f"add a line to METRIC_MEANINGS for {missing}"
    for name in names:
        text = METRIC_MEANINGS[name]
        assert text.strip() and "\n" not in text and "|" not in text  # one line, safe in a Markdown table


def test_an_unknown_metric_is_listed_by_name_with_its_records_direction(tables, monkeypatch):
    unlearn = tables[0]
    (entry,) = [e for e in glossary.entries(unlearn) if e.column == "zz_new_metric (test)"]
    assert entry.meaning.startswith(UNKNOWN) and entry.direction == "lower is better"  # higher_is_better=False
    assert entry.target.startswith("as low as possible (retrain: ")
    monkeypatch.setitem(METRIC_MEANINGS, "zz_new_metric", "a metric added later")  # one line extends it
    (entry,) = [e for e in glossary.entries(unlearn) if e.column == "zz_new_metric (test)"]
    assert entry.meaning.startswith("a metric added later; on the held-out test split")


def test_the_glossary_lists_every_column_shown_in_order_with_direction_and_target(tables):
    for t in tables:
        headers, _ = table_rows(t, t.columns)
        g_headers, lines = glossary_rows(t, t.columns)
        assert g_headers == ["column", "meaning", "direction", "target"]
        assert [line[0] for line in lines] == headers[1:]
        assert all(line[1] and line[2] and line[3] for line in lines)
    unlearn, protect = tables[0], tables[1]
    by_column = {line[0]: line for line in glossary_rows(unlearn, unlearn.columns)[1]}
    retrain = unlearn.row("retrain")
    assert retrain is not None
    forget = by_column["acc_image (unlearn)"]
    assert forget[2] == "target = retrain's value"
    assert forget[3] == f"retrain's value, {retrain.metrics['acc_image', 'unlearn'].mean:.3f}"
    assert by_column["acc_fused (test)"][2] == "higher is better"
    assert by_column["gap to retrain"][2:] == ["lower is better", "0 (= retrain)"]
    recall = {line[0]: line for line in glossary_rows(protect, protect.columns)[1]}["mean_recall (test)"]
    assert recall[2].startswith("lower is better for the protector") and recall[3].startswith("chance, 0.005")


def test_key_columns_come_right_after_the_name(tables):
    unlearn, protect = tables[0], tables[1]
    headers, rows = table_rows(unlearn, unlearn.columns)
    assert headers[:4] == UNLEARN_KEYS and headers[4] == "seeds" and key_count(unlearn, unlearn.columns) == 4
    ccu = next(r for r in rows if r[0] == "ccu")
    assert ccu[3].endswith("%") and " ± " in ccu[1]  # the share of retrain's time as a percentage
    headers, rows = table_rows(protect, protect.columns)
    assert headers[:5] == PROTECT_KEYS and key_count(protect, protect.columns) == 5
    assert headers.count("mean_recall (test)") == 1
    chance = rows[-1]
    assert chance[0] == "chance" and chance[1] == "0.005" and chance[2:6] == ["", "", "", ""]


def test_unlearning_headline_names_the_closest_its_time_share_and_its_margin(tables):
    unlearn = tables[0]
    ordered = sorted((r for r in unlearn.rows if r.gap and r.label not in ("original", "retrain")),
                     key=lambda r: r.gap.mean)  # fmt: skip
    best, nxt = ordered[0], ordered[1]
    text = headline(unlearn, 0.15)
    assert text.startswith(f"{best.label} is closest to retrain: gap {best.gap.mean:.3f}, at ")
    assert f"{100 * best.ratio.mean:.1f}% of retrain's time" in text
    assert f"beats the next, {nxt.label} ({nxt.gap.mean:.3f}), by {nxt.gap.mean - best.gap.mean:.3f}" in text
    assert text.endswith("The original (no unlearning) is 0.150 from retrain.")


def test_unlearning_headline_edge_cases():
    assert "ties with b" in headline(unlearn_table(row("a", (0.02,)), row("b", (0.02,))))
    noisy = headline(unlearn_table(row("a", (0.01, 0.05)), row("b", (0.04, 0.04))))
    assert noisy.startswith("a is closest") and "less than the spread over seeds" in noisy
    assert "it is the only method" in headline(unlearn_table(row("a", (0.02,))))
    assert "no farther than any method" in headline(unlearn_table(row("a", (0.02,))), original_gap=0.01)
    assert "at 10 s" in headline(unlearn_table(row("a", (0.02,), ratio=None)))  # no ratio: the seconds
    assert headline(unlearn_table()).startswith("No method has a gap to retrain")


def test_with_tuned_rows_the_headline_speaks_of_the_tuned_race():
    tuned_b = row("b (tuned)", (0.015,))
    tuned_b.metrics[("tuning_seconds", "cost")] = stat(40.0)
    table = unlearn_table(row("a", (0.01,)), row("b", (0.05,)), row("a (tuned)", (0.03,)), tuned_b)
    text = headline(table)
    # the best tuned row wins the headline even though an untuned row has a smaller gap
    assert text.startswith("Tuned by the same protocol, b (tuned) is closest to retrain: gap 0.015, at 50%")
    assert "plus 40 s of tuning" in text and "beats the next, a (tuned) (0.030)" in text
    assert text.endswith("At published defaults the closest is a (gap 0.010).")
    assert headline(unlearn_table(row("a", (0.01,)), row("b", (0.05,)))).startswith("a is closest")


def test_a_new_scenario_like_unlearning_gets_the_same_layout():
    """Scenario C (unlearning on dual encoders) is compared with retrain like scenario A."""
    table = unlearn_table(row("a", (0.02,)), row("b", (0.05,)), scenario="unlearn_dual")
    headers, _ = table_rows(table, table.columns)
    assert headers[:4] == UNLEARN_KEYS and headline_columns(table) == table.columns  # its own metrics, all shown
    assert headline(table).startswith("a is closest to retrain: gap 0.020, at 50% of retrain's time")
    (forget,) = [e for e in glossary.entries(table) if e.column == "sim_forget (unlearn)"]
    assert (forget.meaning, forget.direction, forget.target) == (UNKNOWN + "; on the unlearn set U (the data of "
                                                                 "the forget request)", "target = retrain's value",
                                                                 "retrain's value, 0.400")  # fmt: skip
    assert plots.metric_bars(table, table.columns).startswith(b"\x89PNG")
    assert plots.time_vs_gap(table).startswith(b"\x89PNG")


def test_protection_headline(tables):
    protect = tables[1]
    text = headline(protect)
    assert text.startswith("adversarial_poison lowers the victim's mean_recall (test) the most: 0.200 against 0.500")
    assert "61% of the way to chance (0.005)" in text and "at 0.60× one clean victim training" in text
    assert text.endswith("; next: unlearnable (0.300).")
    weaker = aggregate([r for r in protect_records() if r.extras["row"] in ("clean", "random_noise")])[0]
    clean, noise = weaker.rows
    assert noise.label == "random_noise"
    assert headline(weaker).startswith("random_noise lowers")
    stronger_clean = Table(**{**weaker.__dict__, "rows": [clean, Row(**{**noise.__dict__, "metrics": {
        k: stat(0.9) for k in noise.metrics}})]})  # fmt: skip
    assert headline(stronger_clean).startswith("No protector lowers the victim's mean_recall (test) below the clean")


def test_metric_panels_show_original_and_retrain_zoomed_with_a_legend(tables):
    unlearn = tables[0]
    fig = Figure()
    ax = fig.add_subplot()
    plots.metric_panel(ax, unlearn, ("acc_fused", "test"))
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[:2] == ["original", "retrain"] and len(labels) == len(unlearn.rows)
    lo, hi = ax.get_ylim()
    assert 0.5 < lo < 0.6 < hi  # every value is near 0.6-0.9: the axis does not start at zero
    legend = ax.get_legend()
    assert legend is not None
    texts = {t.get_text() for t in legend.get_texts()}
    assert {"original (before unlearning)", "retrain (the target)", "retrain's value"} <= texts


def test_around_zooms_on_the_values():
    lo, hi = plots.around([stat(0.95, 0.97), stat(0.96)])  # 0.96 ± 0.014 and 0.96
    assert 0.93 < lo < 0.946 and 0.974 < hi < 0.99
    lo, hi = plots.around([stat(0.5)])
    assert lo < 0.5 < hi


def test_projection_panels_have_a_class_legend():
    record = unlearn_records(["ccu"], seeds=1)[2]
    fig = Figure()
    ax = fig.add_subplot()
    plots.projection_panel(ax, record)
    legend = ax.get_legend()
    assert legend is not None and [t.get_text() for t in legend.get_texts()] == ["0", "1", "2"]
    assert legend.get_title().get_text() == "class"


def _boxes(points, sizes, offsets):
    return [(x + ox - w / 2, y + oy - h / 2, x + ox + w / 2, y + oy + h / 2)
            for (x, y), (w, h), (ox, oy) in zip(points, sizes, offsets, strict=True)]  # fmt: skip


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("n", [2, 20])
def test_cost_vs_gap_labels_do_not_overlap(n):
    points = [(100.0 + (i % 3), 100.0 + (i % 2)) for i in range(n)]  # piled on top of each other
    sizes = [(0.62 * 8 * len(str(i + 1)) + 2, 10.0) for i in range(n)]
    offsets = plots.place_labels(points, sizes)
    boxes = _boxes(points, sizes, offsets)
    assert not [(i, j) for i in range(n) for j in range(i) if _overlaps(boxes[i], boxes[j])]
    markers = [(x - 4, y - 4, x + 4, y + 4) for x, y in points]
    assert not any(_overlaps(b, m) for b in boxes for m in markers)
    spread = [(0.0, 0.0), (300.0, 200.0)]
    near = plots.place_labels(spread, sizes[:2])
    assert all(abs(ox) < 20 and abs(oy) < 20 for ox, oy in near)  # a free point's label sits next to it


def test_cost_vs_gap_plot_with_twenty_methods(tables):
    png = plots.time_vs_gap(tables[0], original_gap=0.15)
    assert png.startswith(b"\x89PNG")
    width = int.from_bytes(io.BytesIO(png).getbuffer()[16:20], "big")
    assert 700 < width < 1400  # fits the page without being shrunk to illegibility
