"""The Compare page's chart of both sample distributions (webapp.reporting.charts.sample_distributions)."""

from __future__ import annotations

import json

from webapp.reporting import charts


def quantiles(median: float, tail: float) -> list[float]:
    """0th, 5th, ..., 100th percentiles of a tight distribution with a long tail at the top."""
    return [median * (0.98 + 0.002 * i) for i in range(20)] + [tail]


def test_each_side_is_a_box_and_a_strip_of_its_5th_to_95th_percentiles_without_raw_samples():
    spec = charts.sample_distributions("bert-tiny · cpu", quantiles(1.0, 50.0), quantiles(1.1, 60.0),
                                       ("run a", "run b"))
    rows = spec["datasets"][charts.DATASET]
    assert spec["description"] == "bert-tiny · cpu"  # the page shows it as the caption
    assert [row["label"] for row in rows] == ["run a"] * 19 + ["run b"] * 19
    assert [row["percentile"] for row in rows[:19]] == list(range(5, 100, 5))
    assert all(row["latency_ms"] < 2 for row in rows)  # the extremes are not drawn...
    assert {row["max"] for row in rows} == {50.0, 60.0}  # ...they are in the tooltips
    first = rows[0]
    assert first["p25"] < first["p50"] < first["p75"]
    marks = [layer["mark"]["type"] for layer in spec["layer"]]
    assert marks == ["tick", "rule", "bar", "tick"]
    assert spec["layer"][0]["encoding"]["x"]["scale"]["type"] == "log"
    json.dumps(spec)  # plain JSON for the page


def test_no_samples_no_chart():
    assert charts.sample_distributions("x", [], []) is None
