from datetime import datetime
from decimal import Decimal

import pandas as pd

from storage.dashboard import METRICS
from webapp.reporting.charts import auto_chart, batch_scaling, family_heatmap, hardware_comparison

THROUGHPUT, LATENCY = METRICS["throughput"], METRICS["latency_p50"]


def data_of(spec):
    return spec["datasets"][spec["data"]["name"]]


def test_hardware_comparison_is_a_bar_per_hardware_and_batch_size_with_labelled_axes():
    df = pd.DataFrame(
        {
            "model_name": ["bert-tiny"] * 3,
            "hardware": ["cpu", "cpu", "cuda:0"],
            "device_name": ["Xeon", "Xeon", "A100"],
            "batch_size": [1, 8, 1],
            "value": [100.0, 400.0, 900.0],
            "n": [2, 1, 1],
        }
    )
    spec = hardware_comparison(df, THROUGHPUT)
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v6")
    assert spec["mark"]["type"] == "bar"
    assert spec["title"] == "bert-tiny: Throughput (items/s) by hardware"
    assert spec["encoding"]["x"]["title"] == "Hardware"
    assert spec["encoding"]["y"]["title"] == "Throughput (items/s)"
    assert spec["encoding"]["xOffset"]["field"] == "batch_size"
    assert [row["value"] for row in data_of(spec)] == [100.0, 400.0, 900.0]


def test_batch_scaling_draws_a_line_per_model_on_a_log2_batch_axis():
    df = pd.DataFrame(
        {
            "model_name": ["a", "a", "a", "b"],
            "hardware": ["cpu"] * 4,
            "batch_size": [1, 4, 16, 1],
            "value": [5.0, 4.0, 3.0, 9.0],
        }
    )
    spec = batch_scaling(df, LATENCY)
    assert spec["mark"] == {"type": "line", "point": True}
    assert spec["title"] == "Latency p50 (ms) vs batch size on cpu"
    x = spec["encoding"]["x"]
    assert (x["scale"]["type"], x["scale"]["base"], x["axis"]["values"]) == ("log", 2, [1, 4, 16])
    assert spec["encoding"]["color"]["field"] == "model_name"


def test_batch_scaling_with_a_single_batch_size_still_has_a_valid_log_domain():
    df = pd.DataFrame({"model_name": ["a"], "hardware": ["cpu"], "batch_size": [8], "value": [1.0]})
    assert batch_scaling(df, THROUGHPUT)["encoding"]["x"]["scale"]["domain"] == [4.0, 16]


def test_family_heatmap_colours_cells_so_darker_is_better_for_either_direction():
    df = pd.DataFrame(
        {"model_family": ["bert", "gpt2"], "hardware": ["cpu", "cpu"], "value": [1.0, 2.0], "n": [1, 1]}
    )
    throughput, latency = family_heatmap(df, THROUGHPUT), family_heatmap(df, LATENCY)
    cells = [layer for layer in throughput["layer"] if layer["mark"]["type"] == "rect"][0]
    assert cells["encoding"]["color"]["scale"]["reverse"] is False
    latency_cells = [layer for layer in latency["layer"] if layer["mark"]["type"] == "rect"][0]
    assert latency_cells["encoding"]["color"]["scale"]["reverse"] is True
    assert throughput["title"] == "Throughput (items/s) by model family and hardware"


def test_heatmap_labels_turn_white_on_the_darker_half_of_the_scale():
    df = pd.DataFrame(
        {"model_family": ["a", "b", "c"], "hardware": ["cpu"] * 3, "value": [1.0, 5.0, 9.0], "n": [1] * 3}
    )
    assert [row["dark"] for row in data_of(family_heatmap(df, THROUGHPUT))] == [False, False, True]
    assert [row["dark"] for row in data_of(family_heatmap(df, LATENCY))] == [True, False, False]


def test_each_chart_gets_its_own_rows_and_title_although_the_shape_is_reused():
    def frame(model, value):
        return pd.DataFrame(
            {
                "model_name": [model],
                "hardware": ["cpu"],
                "device_name": ["Xeon"],
                "batch_size": [1],
                "value": [value],
                "n": [1],
            }
        )

    first = hardware_comparison(frame("a", 1.0), THROUGHPUT)
    second = hardware_comparison(frame("b", float("nan")), THROUGHPUT)
    assert (first["title"], data_of(first)[0]["value"]) == ("a: Throughput (items/s) by hardware", 1.0)
    assert (second["title"], data_of(second)[0]["value"]) == ("b: Throughput (items/s) by hardware", None)
    assert first["encoding"] == second["encoding"]


def test_builders_return_none_for_no_data():
    empty = pd.DataFrame(
        columns=["model_name", "model_family", "hardware", "device_name", "batch_size", "value", "n"]
    )
    assert hardware_comparison(empty, THROUGHPUT) is None
    assert batch_scaling(empty, THROUGHPUT) is None
    assert family_heatmap(empty, THROUGHPUT) is None


def test_auto_chart_bars_the_first_number_by_the_first_text_column():
    spec = auto_chart(
        ["model_family", "runs", "avg_throughput"], [["bert", 3, Decimal("12.5")], ["gpt2", 1, 7.0]]
    )
    assert spec["mark"]["type"] == "bar"
    assert spec["encoding"]["y"]["title"] == "model_family"
    assert spec["encoding"]["x"]["title"] == "runs"
    assert data_of(spec) == [{"category": "bert", "value": 3.0}, {"category": "gpt2", "value": 1.0}]


def test_auto_chart_colours_by_a_second_text_column():
    spec = auto_chart(["family", "hardware", "avg"], [["bert", "cpu", 1.0], ["bert", "cuda:0", 3.0]])
    assert spec["encoding"]["color"]["title"] == "hardware"
    assert spec["encoding"]["yOffset"]["field"] == "group"


def test_auto_chart_declines_results_without_a_text_and_a_number_column():
    assert auto_chart(["n"], [[1], [2]]) is None
    assert auto_chart(["name"], [["a"]]) is None
    assert auto_chart(["name", "created_at"], [["a", datetime(2024, 1, 1)]]) is None
    assert auto_chart(["flag", "name"], [[True, "a"]]) is None
    assert auto_chart(["name", "n"], []) is None


def test_auto_chart_declines_results_too_long_for_bars():
    assert auto_chart(["name", "n"], [[f"m{i}", i] for i in range(51)]) is None
