"""Unit: chart geometry for the HTML reports (numbers in, shapes out)."""

from __future__ import annotations

from patchkit.reports import charts


def test_stacked_bars_scale_to_the_largest_row_and_keep_the_order() -> None:
    chart = charts.stacked_bars(
        "outcomes",
        [("batch 1", {"patched": 2}), ("batch 2", {"failed": 1, "patched": 3, "odd": 0})],
        ["patched", "failed"],
        width=640,
        label_width=110,
    )
    room = 640 - 110 - 40
    first, second = chart.bars
    assert (first.label, first.total, second.total) == ("batch 1", 2, 4)
    assert [s.title for s in second.segments] == ["patched: 3", "failed: 1"]
    assert second.segments[0].x == 110 and second.segments[0].width == room * 3 / 4
    assert second.segments[1].x == 110 + room * 3 / 4
    assert first.segments[0].width == room / 2  # half the largest row
    assert [item.label for item in chart.legend] == ["patched", "failed"]  # zero counts left out
    assert chart.height == 30 + 2 * 26 + 4


def test_unknown_categories_come_last_in_a_neutral_colour() -> None:
    chart = charts.stacked_bars("x", [("a", {"zeta": 1, "patched": 1})], ["patched"])
    assert [(i.label, i.colour) for i in chart.legend] == [
        ("patched", charts.PALETTE["patched"]), ("zeta", charts.OTHER)
    ]  # fmt: skip


def test_empty_rows_draw_no_segments() -> None:
    chart = charts.stacked_bars("x", [("a", {})], ["patched"])
    assert chart.bars[0].segments == () and chart.legend == ()


def test_a_line_runs_from_left_to_right_with_zero_at_the_bottom() -> None:
    chart = charts.line("latency", [("r1", 2.0), ("r2", 4.0), ("r3", 0.0)], unit=" d")
    xs = [p.x for p in chart.points]
    assert xs == sorted(xs) and xs[0] == 50
    top, bottom = 10, 10 + (chart.height - 50)
    assert [p.y for p in chart.points] == [(top + bottom) / 2, top, bottom]
    assert chart.path.startswith("M50.0,") and chart.path.count("L") == 2
    assert chart.points[1].title == "r2: 4 d"
    assert chart.top == 4.0


def test_a_line_of_many_points_labels_about_six_of_them() -> None:
    chart = charts.line("x", [(f"p{i}", float(i)) for i in range(30)])
    assert 5 <= len(chart.ticks) <= 7
