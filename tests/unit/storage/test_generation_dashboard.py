"""The dashboard's aggregates over generate results (issue 11), on a real DuckDB file: the
generation metrics, TTFT and TPOT against batch size, forward and generate never in one series."""

import pandas as pd
import pytest

from descriptions import CPU, model_description, result_store
from engine.config import BenchmarkConfig
from engine.result import Measurement
from storage.dashboard import (
    METRICS,
    Filters,
    InvalidFilter,
    batch_scaling,
    family_heatmap,
    generation_scaling,
    has_generate_results,
    hardware_comparison,
    most_measured_model,
    results_page,
    reused_results,
    sample_histogram,
    top_models,
)
from storage.database import Database

GPT2 = model_description("gpt2-tiny", "gpt2", type="decoder")
T5 = model_description("t5-tiny", "t5", type="encoder-decoder")
BERT = model_description("bert-tiny", "bert")
NEW_TOKENS = 8


def generation(model, batch_size, ttft, tpot, *, run_id="gen", new_tokens=NEW_TOKENS, ci_met=True):
    config = BenchmarkConfig(model_name=model.name, hardware="cpu", batch_size=batch_size, sequence_length=32,
                             scenario="generate", new_tokens=new_tokens, timing="latency")
    e2e = ttft + (new_tokens - 1) * tpot
    return Measurement.of(
        config, n_samples=3, p50_latency_ms=e2e, ci_low_ms=e2e * 0.9, ci_high_ms=e2e * 1.1, ci_met=ci_met,
        throughput_items_per_second=batch_size / e2e * 1000,
        ttft_ms=ttft, ttft_ci_low_ms=ttft * 0.9, ttft_ci_high_ms=ttft * 1.2,
        tpot_ms=tpot, tpot_ci_low_ms=tpot * 0.8, tpot_ci_high_ms=tpot * 1.25, e2e_ms=e2e,
        decode_tokens_per_second=batch_size * 1000 / tpot, prefill_tokens_per_second=batch_size * 32 / ttft * 1000,
        samples_ms=[e2e * 0.9, e2e, e2e * 1.1], ttft_samples_ms=[ttft * 0.9, ttft, ttft * 1.2],
        tpot_samples_ms=[tpot] * (3 * (new_tokens - 1) - 1) + [tpot * 2],
    ), run_id


def forward(model, batch_size, p50, run_id="fwd"):
    config = BenchmarkConfig(model_name=model.name, hardware="cpu", batch_size=batch_size, sequence_length=32)
    return Measurement.of(config, n_samples=3, p50_latency_ms=p50, ci_low_ms=p50 * 0.9, ci_high_ms=p50 * 1.1,
                          ci_met=True, throughput_items_per_second=batch_size / p50 * 1000), run_id


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "generation.duckdb")
    store = result_store(database, GPT2, T5, BERT)
    for measurement, run_id in [
        generation(GPT2, 1, 3.0, 0.5),
        generation(GPT2, 4, 6.0, 0.8, ci_met=False),
        generation(T5, 1, 4.0, 1.0),
        generation(T5, 4, 8.0, 1.5),
        forward(BERT, 1, 2.0),
        forward(GPT2, 1, 1.5),  # gpt2-tiny's forward pass: its own series, never joined to its generations
    ]:
        store.record_result(run_id, measurement, "fp")
    yield database
    database.close()


def test_the_generation_metrics_read_only_generate_results():
    for key, column in (("ttft", "ttft_ms"), ("tpot", "tpot_ms"), ("decode_tps", "decode_tokens_per_second"),
                        ("e2e", "e2e_ms")):
        assert (METRICS[key].column, METRICS[key].scenario) == (column, "generate")
    assert {metric.scenario for key, metric in METRICS.items() if key in ("throughput", "latency_p50")} == {None}
    assert METRICS["decode_tps"].higher_is_better and not METRICS["ttft"].higher_is_better


def test_picking_ttft_charts_the_stored_ttft_of_generate_results_only(db):
    df = batch_scaling(db, Filters(), METRICS["ttft"])
    assert sorted(zip(df.series, df.batch_size, df.value, strict=True)) == [
        ("gpt2-tiny · fp32 · seq 32 · generate 8 tokens", 1, 3.0),
        ("gpt2-tiny · fp32 · seq 32 · generate 8 tokens", 4, 6.0),
        ("t5-tiny · fp32 · seq 32 · generate 8 tokens", 1, 4.0),
        ("t5-tiny · fp32 · seq 32 · generate 8 tokens", 4, 8.0),
    ]
    # The error bars are the CI of the TTFT median, as stored.
    first = df[(df.model_name == "gpt2-tiny") & (df.batch_size == 1)].iloc[0]
    assert (first.ci_low, first.ci_high) == pytest.approx((2.7, 3.6))


def test_decode_tokens_per_second_carries_the_relative_ci_of_tpot(db):
    df = batch_scaling(db, Filters(model="t5-tiny"), METRICS["decode_tps"])
    point = df[df.batch_size == 4].iloc[0]
    assert point.value == pytest.approx(4 * 1000 / 1.5)
    # tokens/s scale as 1/TPOT: TPOT's CI (0.8x..1.25x) turns into 1/1.25x..1/0.8x.
    assert (point.ci_low, point.ci_high) == pytest.approx((point.value / 1.25, point.value / 0.8))


def test_the_hardware_chart_of_a_generation_metric_defaults_to_the_most_measured_model_that_has_it(db):
    # QA: /?metric=ttft with Model "Most measured" picked bert-tiny, which has no TTFT, and
    # said "No results match these filters" beside charts of gpt2-tiny's TTFT.
    store = result_store(db, BERT)
    for batch_size in (2, 4, 8):
        store.record_result("fwd", *forward(BERT, batch_size, 2.0 * batch_size)[:1], "fp")
    latest = Filters(latest_only=True)
    assert most_measured_model(db, latest) == "bert-tiny"
    assert most_measured_model(db, latest, METRICS["ttft"]) == "gpt2-tiny"  # two generations, as t5-tiny
    df = hardware_comparison(db, latest, METRICS["ttft"])
    assert list(zip(df.model_name, df.batch_size, df.value, strict=True)) == [("gpt2-tiny", 1, 3.0),
                                                                             ("gpt2-tiny", 4, 6.0)]
    assert set(hardware_comparison(db, latest, METRICS["throughput"]).model_name) == {"bert-tiny"}


def test_forward_and_generate_results_of_one_model_are_series_of_their_own(db):
    df = batch_scaling(db, Filters(model="gpt2-tiny"), METRICS["throughput"])
    assert set(df.series) == {"gpt2-tiny · fp32 · seq 32", "gpt2-tiny · fp32 · seq 32 · generate 8 tokens"}
    assert set(df[df.series == "gpt2-tiny · fp32 · seq 32"].scenario) == {"forward"}
    heatmap = family_heatmap(db, Filters(), METRICS["throughput"])
    assert set(heatmap[heatmap.model_family == "gpt2"].series) == {
        "gpt2 · fp32 · seq 32", "gpt2 · fp32 · seq 32 · generate 8 tokens"}
    top = top_models(db, Filters(), METRICS["latency_p50"])
    assert {(row.model_name, row.scenario) for row in top.itertuples()} >= {("gpt2-tiny", "forward"),
                                                                          ("gpt2-tiny", "generate")}


def test_generations_of_another_length_are_another_series(db):
    store = result_store(db, GPT2)
    store.record_result("gen-16", generation(GPT2, 1, 3.5, 0.5, new_tokens=16)[0], "fp")
    df = batch_scaling(db, Filters(model="gpt2-tiny"), METRICS["tpot"])
    assert set(df.series) == {"gpt2-tiny · fp32 · seq 32 · generate 8 tokens",
                              "gpt2-tiny · fp32 · seq 32 · generate 16 tokens"}


def test_the_scenario_filter_keeps_forward_and_generate_apart(db):
    assert batch_scaling(db, Filters(scenario="forward"), METRICS["ttft"]).empty
    forward = results_page(db, Filters(scenario="forward"))
    assert {row["scenario"] for row in forward.rows} == {"forward"} and forward.total == 2
    generate = results_page(db, Filters(scenario="generate"), sort="ttft_ms", direction="asc")
    assert [row["ttft_ms"] for row in generate.rows] == [3.0, 4.0, 6.0, 8.0]
    assert {row["new_tokens"] for row in generate.rows} == {NEW_TOKENS}
    assert {row["decode_tokens_per_second"] for row in forward.rows} == {None}
    assert has_generate_results(db, Filters()) and not has_generate_results(db, Filters(scenario="forward"))
    assert not has_generate_results(db, Filters(model="bert-tiny"))


def test_generation_scaling_is_ttft_and_tpot_per_batch_size_with_one_series_per_model(db):
    df = generation_scaling(db, Filters())
    assert set(df.series) == {"gpt2-tiny · fp32 · seq 32 · 8 new tokens", "t5-tiny · fp32 · seq 32 · 8 new tokens"}
    assert set(df.model_name) == {"gpt2-tiny", "t5-tiny"}  # bert-tiny's forward passes are not generations
    points = {(row.model_name, row.measure, row.batch_size): (row.value, row.ci_low, row.ci_high, row.n, row.noisy)
              for row in df.itertuples()}
    assert points[("gpt2-tiny", "TTFT", 1)] == pytest.approx((3.0, 2.7, 3.6, 1, 0))
    assert points[("gpt2-tiny", "TPOT", 4)] == pytest.approx((0.8, 0.64, 1.0, 1, 1))  # the noisy one
    assert points[("t5-tiny", "TPOT", 1)] == pytest.approx((1.0, 0.8, 1.25, 1, 0))
    assert len(points) == 8
    assert df.result_id.notna().all()
    assert generation_scaling(db, Filters(scenario="forward")).empty
    assert set(generation_scaling(db, Filters(model="t5-tiny")).model_name) == {"t5-tiny"}


def test_generation_scaling_averages_runs_and_says_how_many(db):
    store = result_store(db, GPT2)
    store.record_result("gen-2", generation(GPT2, 1, 5.0, 0.7)[0], "fp")
    latest = generation_scaling(db, Filters(latest_only=True, model="gpt2-tiny"))
    every = generation_scaling(db, Filters(model="gpt2-tiny"))
    pick = lambda df: df[(df.measure == "TTFT") & (df.batch_size == 1)].iloc[0]  # noqa: E731
    assert (pick(latest).value, pick(latest).n) == (5.0, 1)
    assert (pick(every).value, pick(every).n) == (4.0, 2)
    assert pd.isna(pick(every).result_id)  # an average of two has no one result page


def test_the_histograms_of_ttft_samples_and_per_token_gaps(db):
    result_id = results_page(db, Filters(model="gpt2-tiny", batch_size=1, scenario="generate")).rows[0]["result_id"]
    gaps = sample_histogram(db, result_id, bins=4, samples="tpot_samples_ms")
    assert list(gaps["count"]) == [20, 0, 0, 1]  # 3 generations x 7 gaps, one of them twice as long
    assert (gaps.bin_start.iloc[0], gaps.bin_end.iloc[-1]) == (0.5, 1.0)
    ttft = sample_histogram(db, result_id, bins=3, samples="ttft_samples_ms")
    assert ttft["count"].sum() == 3
    assert sample_histogram(db, result_id, bins=3)["count"].sum() == 3  # the end-to-end samples
    with pytest.raises(InvalidFilter, match="samples"):
        sample_histogram(db, result_id, samples="model_name")


def test_a_reused_generate_result_brings_its_generation_figures(db):
    key = BenchmarkConfig(model_name="t5-tiny", hardware="cpu", batch_size=4, sequence_length=32,
                          scenario="generate", new_tokens=NEW_TOKENS, timing="latency").key()
    found = reused_results(db, "later-run", [key], ["fp"])[key]
    assert (found["scenario"], found["new_tokens"], found["ttft_ms"], found["tpot_ms"]) == (
        "generate", NEW_TOKENS, 8.0, 1.5)
    assert found["decode_tokens_per_second"] == pytest.approx(4000 / 1.5)
