"""Chart builders for generate results (issue 11): TTFT and TPOT against batch size, and the
histograms of a generation's raw samples."""

import pandas as pd

from webapp.pages.dashboard import metric_choices
from webapp.reporting.charts import generation_scaling, sample_histogram
from storage.dashboard import GENERATION_COLUMNS, METRICS


def data_of(spec):
    return spec["datasets"][spec["data"]["name"]]


def layer(spec, mark):
    return next(part for part in spec["layer"] if part["mark"]["type"] == mark)


def generation_frame():
    rows = []
    for model, figures in {"gpt2-tiny": {1: (3.0, 0.5), 4: (6.0, 0.8)}, "t5-tiny": {1: (4.0, 1.0), 4: (8.0, 1.5)}}.items():
        for measure, index in (("TTFT", 0), ("TPOT", 1)):
            for batch_size, values in figures.items():
                value = values[index]
                rows.append({
                    "model_name": model, "hardware": "cpu", "batch_size": batch_size, "precision": "fp32",
                    "sequence_length": 32, "new_tokens": 8, "series": f"{model} · fp32 · seq 32 · 8 new tokens",
                    "measure": measure, "value": value, "ci_low": value * 0.9, "ci_high": value * 1.1, "n": 2,
                    "noisy": int(model == "t5-tiny" and batch_size == 4), "result_id": None,
                })
    return pd.DataFrame(rows, columns=GENERATION_COLUMNS)


def test_ttft_and_tpot_against_batch_size_draw_a_line_per_model_and_measure():
    spec = generation_scaling(generation_frame())
    assert spec["description"] == "TTFT and TPOT vs batch size on cpu"
    assert "title" not in spec  # the page prints it as HTML, which wraps on a phone
    x = spec["encoding"]["x"]
    assert (x["field"], x["scale"]["type"], x["scale"]["base"], x["axis"]["values"]) == ("batch_size", "log", 2, [1, 4])
    # A colour per model series; TTFT and TPOT told apart by the dash: together they split the lines.
    line = layer(spec, "line")
    assert line["encoding"]["color"]["field"] == "series"
    assert line["encoding"]["strokeDash"]["field"] == "measure"
    assert line["encoding"]["strokeDash"]["scale"]["domain"] == ["TTFT", "TPOT"]
    assert line["encoding"]["y"]["scale"]["type"] == "log"  # a prefill is many decoding steps long
    errors = layer(spec, "rule")
    assert (errors["encoding"]["y"]["field"], errors["encoding"]["y2"]["field"]) == ("ci_low", "ci_high")
    points = layer(spec, "point")
    assert points["encoding"]["fill"]["condition"] == {"test": "datum.noisy > 0", "value": "white"}  # hollow
    assert {tip["field"] for tip in points["encoding"]["tooltip"]} >= {
        "n", "value_is", "interval", "noisy", "measure", "series", "batch_size", "value"}
    rows = data_of(spec)
    # Each point averages 2 results: its tooltip says it is their mean, its interval the range of their CIs.
    t5_ttft = next(row for row in rows if row["model_name"] == "t5-tiny" and row["measure"] == "TTFT")
    assert t5_ttft["value_is"] == "the mean of 2 results"
    assert t5_ttft["interval"] == "3.6 – 4.4, the range of their 2 results' 95% CIs"
    assert len({row["series"] for row in rows}) == 2
    assert [(row["measure"], row["value"]) for row in rows if row["model_name"] == "t5-tiny"] == [
        ("TTFT", 4.0), ("TTFT", 8.0), ("TPOT", 1.0), ("TPOT", 1.5)]


def test_generation_scaling_with_one_batch_size_and_without_data():
    frame = generation_frame()
    single = generation_scaling(frame[frame.batch_size == 4])
    assert single["encoding"]["x"]["scale"]["domain"] == [2.0, 8]
    assert generation_scaling(pd.DataFrame(columns=GENERATION_COLUMNS)) is None
    assert generation_scaling(None) is None


def test_each_generation_chart_gets_its_own_rows_although_the_shape_is_reused():
    frame = generation_frame()
    first = generation_scaling(frame)
    second = generation_scaling(frame.assign(hardware="cuda:0", value=frame.value * 2))
    assert first["layer"] == second["layer"]
    assert second["description"] == "TTFT and TPOT vs batch size on cuda:0"
    assert data_of(second)[0]["value"] == 2 * data_of(first)[0]["value"]


def test_a_generations_histograms_name_their_samples_and_mark_their_median():
    bins = pd.DataFrame({"bin_start": [0.5, 0.75], "bin_end": [0.75, 1.0], "count": [20, 1]})
    spec = sample_histogram(bins, 0.5, 0.4, 0.6, what="per-token gaps", axis_title="Gap between consecutive tokens (ms)",
                            count_title="Gaps", median="median TPOT")
    assert spec["description"] == "Distribution of 21 per-token gaps"
    bars = layer(spec, "bar")
    assert (bars["encoding"]["x"]["title"], bars["encoding"]["y"]["title"]) == (
        "Gap between consecutive tokens (ms)", "Gaps")
    assert [mark["label"] for mark in spec["datasets"]["marks"]] == [
        "95% CI of the median TPOT: 0.4 to 0.6 ms", "median TPOT 0.5 ms"]
    # The default stays the timed iterations' histogram.
    plain = sample_histogram(bins, 0.5, None, None)
    assert plain["description"] == "Distribution of 21 timed iterations"
    assert layer(plain, "bar")["encoding"]["x"]["title"] == "Latency (ms)"


def test_the_metric_picker_offers_the_generation_metrics_only_where_generate_results_exist():
    forward_only = [key for key, _ in metric_choices(["forward"])]
    assert forward_only == ["throughput", "latency_p50", "latency_p99", "memory"]
    both = dict(metric_choices(["forward", "generate"]))
    assert {"ttft": "TTFT p50 (ms)", "tpot": "TPOT p50 (ms)", "decode_tps": "Decode (tokens/s)"}.items() <= both.items()
    # A generation metric named in the URL stays selectable, even with no generate result.
    assert "ttft" in dict(metric_choices(["forward"], METRICS["ttft"]))
