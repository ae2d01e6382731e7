from datetime import datetime
from decimal import Decimal

import altair as alt
import pandas as pd

from engine.result import ResultRow
from storage.dashboard import METRICS
from webapp.reporting.charts import (
    auto_chart,
    batch_scaling,
    family_heatmap,
    hardware_comparison,
    run_throughput,
    sample_histogram,
    sample_trace,
)

THROUGHPUT, LATENCY, P99 = METRICS["throughput"], METRICS["latency_p50"], METRICS["latency_p99"]


def data_of(spec):
    return spec["datasets"][spec["data"]["name"]]


def layer(spec, mark):
    return next(part for part in spec["layer"] if part["mark"]["type"] == mark)


def hardware_frame(series=("fp32 · seq 128",) * 3, **columns):
    return pd.DataFrame(
        {
            "model_name": ["bert-tiny"] * 3,
            "hardware": ["cpu", "cpu", "cuda:0"],
            "device_name": ["Xeon", "Xeon", "A100"],
            "batch_size": [1, 8, 1],
            "series": list(series),
            "value": [100.0, 400.0, 900.0],
            "ci_low": [90.0, 380.0, 850.0],
            "ci_high": [110.0, 420.0, 950.0],
            "n": [2, 1, 1],
            "noisy": [0, 1, 0],
        }
        | columns
    )


def test_hardware_comparison_is_a_bar_per_hardware_and_batch_size_with_labelled_axes_and_error_bars():
    spec = hardware_comparison(hardware_frame(), THROUGHPUT)
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v6")
    assert spec["description"] == "bert-tiny: Throughput (items/s) by hardware (fp32 · seq 128)"
    assert "title" not in spec  # the page prints it as HTML, which wraps on a phone
    assert spec["encoding"]["x"]["title"] == "Hardware"
    assert spec["encoding"]["xOffset"]["field"] == "batch_size"
    bars = layer(spec, "bar")
    assert bars["encoding"]["y"]["title"] == "Throughput (items/s)"
    assert bars["encoding"]["color"]["field"] == "batch_size"
    tooltips = {tip["field"]: tip["title"] for tip in bars["encoding"]["tooltip"]}
    assert {"n", "value_is", "interval", "noisy"} <= tooltips.keys()
    titles = (tooltips["n"], tooltips["value_is"], tooltips["interval"])
    assert titles == ("Results (n)", "Value is", "Interval")
    assert "95% CI" not in str(bars["encoding"]["tooltip"])  # the per-point words say which interval it is
    assert bars["encoding"]["opacity"]["condition"]["test"] == "datum.noisy > 0"  # noisy bars faded
    errors = layer(spec, "rule")
    assert (errors["encoding"]["y"]["field"], errors["encoding"]["y2"]["field"]) == ("ci_low", "ci_high")
    assert [row["value"] for row in data_of(spec)] == [100.0, 400.0, 900.0]


def test_hardware_comparison_over_mixed_precisions_colours_by_series():
    spec = hardware_comparison(hardware_frame(series=("fp32 · seq 128", "int8 · seq 128", "fp32 · seq 128")), THROUGHPUT)
    assert spec["encoding"]["xOffset"]["field"] == "group"
    assert layer(spec, "bar")["encoding"]["color"]["field"] == "series"
    assert [row["group"] for row in data_of(spec)] == ["fp32 · seq 128 · bs 1", "int8 · seq 128 · bs 8",
                                                       "fp32 · seq 128 · bs 1"]
    assert spec["encoding"]["xOffset"]["sort"] == {"field": "group_order", "op": "min"}
    assert spec["description"] == "bert-tiny: Throughput (items/s) by hardware"


def test_a_metric_without_a_measured_ci_draws_no_error_bars():
    spec = hardware_comparison(hardware_frame(ci_low=[None] * 3, ci_high=[None] * 3), P99)
    assert [part["mark"]["type"] for part in spec["layer"]] == ["bar"]


def scaling_frame():
    return pd.DataFrame(
        {
            "model_name": ["a", "a", "a", "a", "b"],
            "hardware": ["cpu"] * 5,
            "batch_size": [1, 4, 16, 1, 1],
            "series": ["a · fp32 · seq 128"] * 3 + ["a · int8 · seq 128", "b · fp32 · seq 128"],
            "value": [5.0, 4.0, 3.0, 2.0, 9.0],
            "ci_low": [4.5, 3.5, 2.5, 1.0, 8.0],
            "ci_high": [5.5, 4.5, 3.5, 9.0, 10.0],
            "n": [1] * 5,
            "noisy": [0, 0, 0, 1, 0],
        }
    )


def test_batch_scaling_draws_a_line_per_series_on_a_log2_batch_axis():
    spec = batch_scaling(scaling_frame(), LATENCY)
    assert spec["description"] == "Latency p50 (ms) vs batch size on cpu"
    x = spec["encoding"]["x"]
    assert (x["scale"]["type"], x["scale"]["base"], x["axis"]["values"]) == ("log", 2, [1, 4, 16])
    # Colour and line identity are the series (model · precision · sequence length), never the model alone.
    assert layer(spec, "line")["encoding"]["color"]["field"] == "series"
    assert layer(spec, "line")["encoding"]["detail"]["field"] == "series"
    assert layer(spec, "rule")["encoding"]["y2"]["field"] == "ci_high"
    points = layer(spec, "point")
    assert points["encoding"]["fill"]["condition"] == {"test": "datum.noisy > 0", "value": "white"}  # hollow
    assert points["encoding"]["stroke"]["field"] == "series"  # ringed in the series' colour
    assert len({row["series"] for row in data_of(spec)}) == 3


def test_results_without_a_ci_get_no_error_bars():
    spec = batch_scaling(scaling_frame().assign(ci_low=None, ci_high=None), LATENCY)
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["line", "point"]
    assert [layer["mark"]["type"] for layer in batch_scaling(scaling_frame(), LATENCY)["layer"]] == ["line", "rule", "point"]


def test_batch_scaling_with_a_single_batch_size_still_has_a_valid_log_domain():
    df = scaling_frame().iloc[[0]].assign(batch_size=[8])
    assert batch_scaling(df, THROUGHPUT)["encoding"]["x"]["scale"]["domain"] == [4.0, 16]


def heatmap_frame(values):
    return pd.DataFrame(
        {
            "model_family": [f"f{i}" for i in range(len(values))],
            "hardware": ["cpu"] * len(values),
            "series": [f"f{i} · fp32 · seq 128" for i in range(len(values))],
            "value": values,
            "n": [1] * len(values),
            "noisy": [0] * (len(values) - 1) + [1],
        }
    )


def test_family_heatmap_colours_cells_so_darker_is_better_for_either_direction():
    throughput, latency = family_heatmap(heatmap_frame([1.0, 2.0]), THROUGHPUT), family_heatmap(heatmap_frame([1.0, 2.0]), LATENCY)
    assert layer(throughput, "rect")["encoding"]["color"]["scale"]["reverse"] is False
    assert layer(latency, "rect")["encoding"]["color"]["scale"]["reverse"] is True
    assert throughput["description"] == (
        "Throughput (items/s) by model family and hardware, "
        "averaged over each family's models and batch sizes"
    )
    assert layer(throughput, "rect")["encoding"]["y"]["field"] == "series"


def test_heatmap_cells_say_their_n_and_turn_white_on_the_darker_half():
    rows = data_of(family_heatmap(heatmap_frame([1.0, 5.0, 9.0]), THROUGHPUT))
    assert [row["dark"] for row in rows] == [False, False, True]
    assert [row["label"] for row in rows] == ["1 (n=1)", "5 (n=1)", "9 (n=1, noisy)"]
    assert [row["dark"] for row in data_of(family_heatmap(heatmap_frame([1.0, 5.0, 9.0]), LATENCY))] == [True, False, False]


def test_a_point_of_one_result_says_95_ci_and_a_point_of_several_says_mean_and_range_of_cis():
    rows = data_of(hardware_comparison(hardware_frame(), THROUGHPUT))
    assert [(row["n"], row["value_is"], row["interval"]) for row in rows] == [
        (2, "the mean of 2 results", "90 – 110, the range of their 2 results' 95% CIs"),
        (1, "a single result's", "380 – 420, its 95% CI"),
        (1, "a single result's", "850 – 950, its 95% CI"),
    ]
    # The numbers are the aggregate's own, unchanged.
    assert [(row["value"], row["ci_low"], row["ci_high"]) for row in rows] == [
        (100.0, 90.0, 110.0), (400.0, 380.0, 420.0), (900.0, 850.0, 950.0)]
    heatmap = data_of(family_heatmap(heatmap_frame([1.0, 2.0]).assign(
        n=[1, 3], ci_low=[0.9, 1234.5], ci_high=[1.1, None]), LATENCY))
    assert [(row["value_is"], row["interval"]) for row in heatmap] == [
        ("a single result's", "0.9 – 1.1, its 95% CI"), ("the mean of 3 results", "—")]
    # A metric without a CI has no interval to describe.
    assert "interval" not in data_of(batch_scaling(scaling_frame(), P99))[0]
    p99_tips = layer(batch_scaling(scaling_frame(), P99), "point")["encoding"]["tooltip"]
    assert "interval" not in {tip["field"] for tip in p99_tips}


def test_each_chart_gets_its_own_rows_and_title_although_the_shape_is_reused():
    first = hardware_comparison(hardware_frame(model_name=["a"] * 3), THROUGHPUT)
    second = hardware_comparison(hardware_frame(model_name=["b"] * 3, value=[float("nan"), 1.0, 2.0]), THROUGHPUT)
    assert (first["description"], data_of(first)[0]["value"]) == ("a: Throughput (items/s) by hardware (fp32 · seq 128)", 100.0)
    assert (second["description"], data_of(second)[0]["value"]) == ("b: Throughput (items/s) by hardware (fp32 · seq 128)", None)
    assert first["layer"] == second["layer"]


def test_builders_return_none_for_no_data():
    empty = pd.DataFrame(columns=["model_name", "model_family", "hardware", "device_name", "batch_size", "series",
                                  "value", "n", "noisy"])
    assert hardware_comparison(empty, THROUGHPUT) is None
    assert batch_scaling(empty, THROUGHPUT) is None
    assert family_heatmap(empty, THROUGHPUT) is None
    assert sample_histogram(pd.DataFrame(columns=["bin_start", "bin_end", "count"]), None, None, None) is None
    assert sample_trace(pd.DataFrame(columns=["iteration", "iteration_end", "latency_ms", "low", "high"])) is None


def test_the_histogram_marks_the_median_and_its_ci():
    bins = pd.DataFrame({"bin_start": [1.0, 2.0], "bin_end": [2.0, 3.0], "count": [3, 1]})
    spec = sample_histogram(bins, 1.5, 1.4, 1.7)
    assert spec["description"] == "Distribution of 4 timed iterations"
    assert spec["datasets"]["rows"] == [{"bin_start": 1.0, "bin_end": 2.0, "count": 3},
                                        {"bin_start": 2.0, "bin_end": 3.0, "count": 1}]
    assert [mark["kind"] for mark in spec["datasets"]["marks"]] == ["ci", "p50"]


def test_the_trace_draws_points_or_bucket_ranges():
    single = pd.DataFrame({"iteration": [1, 2], "iteration_end": [1, 2], "latency_ms": [1.0, 2.0], "low": [1.0, 2.0],
                           "high": [1.0, 2.0]})
    assert [part["mark"]["type"] for part in sample_trace(single)["layer"]] == ["line"]
    buckets = single.assign(iteration=[1, 11], iteration_end=[10, 20])
    spec = sample_trace(buckets)
    assert [part["mark"]["type"] for part in spec["layer"]] == ["area", "line"]
    assert "per bucket" in spec["description"]


def test_auto_chart_bars_a_measure_by_the_first_text_column_and_says_so():
    spec = auto_chart(
        ["model_family", "runs", "avg_throughput"], [["bert", 3, Decimal("12.5")], ["gpt2", 1, 7.0]]
    )
    assert spec["mark"]["type"] == "bar"
    assert spec["encoding"]["y"]["title"] == "model_family"
    assert spec["encoding"]["x"]["title"] == "avg_throughput"  # a non-integer measure beats a count
    assert data_of(spec) == [{"category": "bert", "value": 12.5}, {"category": "gpt2", "value": 7.0}]
    assert spec["description"] == "Chart: avg_throughput by model_family."


def test_auto_chart_never_bars_ids_or_settings_when_a_measure_is_there():
    # SELECT * shape: ids and run ids come first; the measure is p50, the axis the model.
    spec = auto_chart(
        ["result_id", "run_id", "model_name", "batch_size", "p50_latency_ms"],
        [[1, "r1", "a", 1, 2.0], [2, "r1", "b", 1, 3.0]],
    )
    assert (spec["encoding"]["y"]["title"], spec["encoding"]["x"]["title"]) == ("model_name", "p50_latency_ms")


def test_auto_chart_averages_repeated_categories_explicitly_instead_of_stacking():
    # A window query: one row per model and batch size. Bars must not sum batch sizes or latencies.
    spec = auto_chart(
        ["model_name", "batch_size", "p50", "rank"],
        [["a", 1, 2.0, 1], ["a", 8, 4.0, 2], ["b", 1, 1.0, 1]],
    )
    assert spec["encoding"]["x"]["title"] == "mean of p50"
    assert data_of(spec) == [{"category": "a", "value": 3.0, "n": 2}, {"category": "b", "value": 1.0, "n": 1}]
    assert "3 rows averaged into 2 bars" in spec["description"]


def test_auto_chart_uses_a_setting_as_the_axis_when_there_is_no_text_column():
    spec = auto_chart(["batch_size", "avg_ms"], [[1, 2.0], [8, 5.0]])
    assert spec["encoding"]["y"]["title"] == "batch_size"
    assert [row["category"] for row in data_of(spec)] == ["1", "8"]


def test_auto_chart_colours_by_a_second_text_column():
    spec = auto_chart(["family", "hardware", "avg"], [["bert", "cpu", 1.0], ["bert", "cuda:0", 3.0]])
    assert spec["encoding"]["color"]["title"] == "hardware"
    assert spec["encoding"]["yOffset"]["field"] == "group"
    assert spec["description"] == "Chart: avg by family, coloured by hardware."


def test_auto_chart_declines_results_without_a_category_and_a_measure():
    assert auto_chart(["n"], [[1], [2]]) is None
    assert auto_chart(["name"], [["a"]]) is None
    assert auto_chart(["name", "created_at"], [["a", datetime(2024, 1, 1)]]) is None
    assert auto_chart(["flag", "name"], [[True, "a"]]) is None
    assert auto_chart(["name", "n"], []) is None
    assert auto_chart(["run_id", "result_id"], [["r", 1], ["s", 2]]) is None  # ids only


def test_auto_chart_declines_results_too_long_for_bars():
    assert auto_chart(["name", "n"], [[f"m{i}", i] for i in range(51)]) is None


def test_a_heatmap_cells_label_answers_with_the_cells_tooltip():
    # The label sits on the cell's centre, where the pointer goes first.
    chart = family_heatmap(heatmap_frame([1.0, 2.0]), THROUGHPUT)
    assert layer(chart, "text")["encoding"]["tooltip"] == layer(chart, "rect")["encoding"]["tooltip"]


def report_row(batch_size, throughput, scenario="forward"):
    return ResultRow(
        model_name="gpt2-tiny", hardware="cpu", batch_size=batch_size, precision="fp32", scenario=scenario,
        p50_latency_ms=2.5, throughput_items_per_second=throughput, samples_ms=[2.5] * 1000,
    )


def test_a_runs_throughput_chart_carries_only_what_it_draws_and_no_raw_samples():
    spec = run_throughput([report_row(1, 400.0), report_row(8, float("nan")), report_row(1, 9.0, "generate")])
    alt.Chart.from_dict(spec)  # a valid Vega-Lite spec
    assert spec["title"] == "Throughput by batch size"
    rows = data_of(spec)
    assert [set(row) for row in rows] == [{
        "config", "model_name", "hardware", "precision", "batch_size", "p50_latency_ms",
        "throughput_items_per_second",
    }] * 3
    assert [row["config"] for row in rows] == ["gpt2-tiny / cpu / fp32"] * 2 + ["gpt2-tiny / cpu / fp32 / generate"]
    assert rows[1]["throughput_items_per_second"] is None  # NaN is not JSON: JSON.parse would refuse the report
    assert run_throughput([]) is None
