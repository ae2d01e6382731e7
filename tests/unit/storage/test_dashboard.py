from datetime import UTC, datetime

import msgspec
import pyarrow as pa
import pytest

from descriptions import CPU, hardware_description, model_description
from engine.config import BenchmarkConfig
from engine.result import Measurement
from engine.runs import RunRecord
from storage import dashboard
from storage.dashboard import (
    METRICS,
    FilterOptions,
    Filters,
    InvalidFilter,
    batch_scaling,
    family_heatmap,
    filter_options,
    get_metric,
    hardware_comparison,
    most_measured_model,
    results_export,
    results_page,
    summary,
    top_models,
)
from storage.database import Database
from storage.results import insert_results
from storage.runs import save_run

THROUGHPUT = METRICS["throughput"]
LATENCY = METRICS["latency_p50"]


BERT = model_description("bert-tiny", "bert")
ROBERTA = model_description("roberta-tiny", "roberta")
GPT2 = model_description("gpt2-tiny", "gpt2")
GPU = hardware_description("cuda:0", "cuda", "Test GPU")


def row(model, hardware, batch_size, p50, precision="fp32", memory=100.0):
    config = BenchmarkConfig(model_name=model.name, hardware=hardware.name, batch_size=batch_size, precision=precision)
    measurement = Measurement.of(
        config,
        average_latency_ms=p50,
        p50_latency_ms=p50,
        p99_latency_ms=p50 * 1.5,
        throughput_items_per_second=batch_size / p50 * 1000,
        memory_peak_mb=memory,
    )
    return {
        **msgspec.structs.asdict(measurement),
        "model": model,
        "hardware": hardware,
        "run_id": "run-1",
        "config_key": config.key(),
        "fingerprint": "fp",
    }


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "dash.duckdb")
    insert_results(
        database,
        [
            row(BERT, CPU, 1, 10.0),
            row(BERT, CPU, 8, 40.0),
            row(BERT, GPU, 1, 2.0),
            row(BERT, GPU, 8, 4.0),
            row(BERT, CPU, 1, 12.0),  # a second measurement of the same config: averaged
            row(ROBERTA, CPU, 1, 20.0),
            row(ROBERTA, CPU, 8, 100.0),
            row(GPT2, CPU, 1, 5.0, precision="int8", memory=50.0),
        ],
    )
    yield database
    database.close()


def test_hardware_comparison_averages_one_model_per_hardware_and_batch_size(db):
    df = hardware_comparison(db, Filters(model="bert-tiny"), LATENCY)
    assert list(zip(df.hardware, df.batch_size, df.value, df.n, strict=True)) == [
        ("cpu", 1, 11.0, 2),
        ("cpu", 8, 40.0, 1),
        ("cuda:0", 1, 2.0, 1),
        ("cuda:0", 8, 4.0, 1),
    ]
    assert set(df.device_name) == {"Test CPU", "Test GPU"}


def test_hardware_comparison_ignores_the_hardware_filter_and_defaults_to_the_most_measured_model(db):
    assert most_measured_model(db, Filters()) == "bert-tiny"
    df = hardware_comparison(db, Filters(hardware="cpu", batch_size=8), THROUGHPUT)
    assert set(df.model_name) == {"bert-tiny"}
    assert list(df.hardware) == ["cpu", "cuda:0"]
    assert list(df.value) == pytest.approx([200.0, 2000.0])


def test_hardware_comparison_of_nothing_is_an_empty_frame(db):
    assert hardware_comparison(db, Filters(family="no-such-family"), THROUGHPUT).empty


def test_top_models_ranks_best_values_per_hardware_in_the_metrics_direction(db):
    fastest = top_models(db, Filters(), THROUGHPUT, limit=2)
    cpu = fastest[fastest.hardware == "cpu"]
    assert list(cpu.model_name) == ["bert-tiny", "gpt2-tiny"]  # 200/s at batch 8, then 200/s at batch 1
    assert list(cpu["rank"]) == [1, 2]
    assert list(cpu.batch_size) == [8, 1]
    lowest_latency = top_models(db, Filters(hardware="cpu"), LATENCY, limit=3)
    assert list(lowest_latency.model_name) == ["gpt2-tiny", "bert-tiny", "roberta-tiny"]
    assert list(lowest_latency.value) == [5.0, 10.0, 20.0]


def test_batch_scaling_ignores_the_batch_filter_and_keeps_the_best_models(db):
    df = batch_scaling(db, Filters(hardware="cpu", batch_size=1, precision="fp32"), THROUGHPUT)
    assert list(zip(df.model_name, df.batch_size, strict=True)) == [
        ("bert-tiny", 1),
        ("bert-tiny", 8),
        ("roberta-tiny", 1),
        ("roberta-tiny", 8),
    ]
    only_best = batch_scaling(db, Filters(hardware="cpu"), THROUGHPUT, max_models=1)
    assert set(only_best.model_name) == {"bert-tiny"}


def test_batch_scaling_defaults_to_the_most_measured_hardware(db):
    assert set(batch_scaling(db, Filters(), THROUGHPUT).hardware) == {"cpu"}


def test_family_heatmap_has_one_cell_per_family_and_hardware(db):
    df = family_heatmap(db, Filters(precision="fp32"), METRICS["memory"])
    assert list(zip(df.model_family, df.hardware, df.n, strict=True)) == [
        ("bert", "cpu", 3),
        ("bert", "cuda:0", 2),
        ("roberta", "cpu", 2),
    ]
    assert list(df.value) == [100.0, 100.0, 100.0]


def test_results_page_sorts_filters_and_pages_on_the_server(db):
    first = results_page(
        db, Filters(hardware="cpu"), sort="p50_latency_ms", direction="asc", page=1, page_size=2
    )
    assert (first.total, first.pages) == (6, 3)
    assert [r["p50_latency_ms"] for r in first.rows] == [5.0, 10.0]
    third = results_page(
        db, Filters(hardware="cpu"), sort="p50_latency_ms", direction="desc", page=3, page_size=2
    )
    assert [r["p50_latency_ms"] for r in third.rows] == [10.0, 5.0]
    assert set(first.rows[0]) >= {"result_id", "run_id", "model_name", "throughput_items_per_second"}


def test_a_page_past_the_end_shows_the_last_page(db):
    page = results_page(db, Filters(family="bert"), page=99, page_size=2)
    assert (page.page, page.pages, len(page.rows)) == (3, 3, 1)


def test_an_empty_result_set_is_one_empty_page(db):
    page = results_page(db, Filters(model="nothing"))
    assert (page.total, page.page, page.pages, page.rows) == (0, 1, 1, [])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sort": "model_name; DROP TABLE models"}, "sort"),
        ({"direction": "sideways"}, "direction"),
        ({"page": 0}, "page"),
        ({"page_size": 100_000}, "page_size"),
    ],
)
def test_sort_and_paging_values_outside_the_allowlist_are_refused_by_field(db, kwargs, field):
    with pytest.raises(InvalidFilter) as refused:
        results_page(db, Filters(), **kwargs)
    assert refused.value.field == field


def test_unknown_metrics_are_refused_with_the_choices():
    with pytest.raises(InvalidFilter, match="throughput") as refused:
        get_metric("avg(model_name)")
    assert refused.value.field == "metric"
    assert get_metric(None) is THROUGHPUT


def test_filter_values_are_parameters_not_sql(db):
    hostile = "cpu' OR '1'='1"
    assert results_page(db, Filters(hardware=hostile)).total == 0
    assert family_heatmap(db, Filters(family=hostile), THROUGHPUT).empty


def test_export_streams_every_filtered_row_in_table_order(db):
    reader = results_export(
        db, Filters(family="bert"), sort="p50_latency_ms", direction="asc", rows_per_batch=2
    )
    table = pa.Table.from_batches(list(reader))
    assert table.num_rows == 5
    assert table.column("p50_latency_ms").to_pylist() == [2.0, 4.0, 10.0, 12.0, 40.0]
    assert "samples_ms" not in table.column_names


def test_filter_options_list_known_models_and_hardware_and_measured_sizes(db):
    options = filter_options(db)
    assert options.families == ["bert", "gpt2", "roberta"]
    assert options.models == ["bert-tiny", "gpt2-tiny", "roberta-tiny"]
    assert options.hardware == ["cpu", "cuda:0"]
    assert options.batch_sizes == [1, 8]
    assert options.precisions == ["fp32", "int8"]


def test_summary_counts_results_models_and_hardware(db):
    counts = summary(db)
    assert (counts.results, counts.models, counts.hardware, counts.runs, counts.failures) == (8, 3, 2, 1, 0)
    assert (counts.stored_results, counts.stored_runs) == (8, 0)  # the results' run has no test_runs row


def test_summary_counts_what_the_filters_keep_and_the_stored_totals_whatever_they_are(db):
    # QA: the overview's strip read the same on /, /?precision=int8 and /?run=zzz.
    int8 = summary(db, Filters(precision="int8", latest_only=True))
    assert (int8.results, int8.models, int8.hardware, int8.runs, int8.stored_results) == (1, 1, 1, 1, 8)
    latest = summary(db, Filters(latest_only=True))
    assert (latest.results, latest.stored_results) == (7, 8)  # bert-tiny's batch 1 on cpu twice
    nothing = summary(db, Filters(run_id="zzz"))
    assert (nothing.results, nothing.models, nothing.runs, nothing.noisy, nothing.stored_results) == (0, 0, 0, 0, 8)


def test_a_run_saved_keeps_the_cached_reads_and_is_counted_at_once(db):
    # A running sweep saves its run row after every config; that must not make every page
    # after it work out the latest results again, and the header still counts the new run.
    summary(db)
    generation = db.generation
    save_run(db, RunRecord(
        run_id="run-new", status="running", progress=0.0, current_step=None, start_time=None, elapsed_time=0.0,
        estimated_remaining_time=None, completed_models=0, total_models=1, error=None, completed_configs=0,
        total_configs=1, priority="medium", created_at=datetime(2026, 12, 2, tzinfo=UTC), completion_time=None,
    ))
    assert db.generation == generation
    assert summary(db).stored_runs == 1
    insert_results(db, [measured_row(BERT, 1, 3.0, run_id="run-new")])
    assert db.generation == generation + 1
    assert summary(db).results == 9


def test_an_empty_database_has_no_options_and_zero_counts(tmp_path):
    with Database(tmp_path / "empty.duckdb") as empty:
        assert filter_options(empty) == FilterOptions()
        assert summary(empty).results == 0
        assert top_models(empty, Filters(), THROUGHPUT).empty
        assert batch_scaling(empty, Filters(), THROUGHPUT).empty


# ---- like with like, and how far each number can be trusted (issue 14) -------------------------

from storage.dashboard import (  # noqa: E402
    reused_results,
    result_samples,
    same_config_results,
    sample_histogram,
    sample_trace,
    typical_wall_seconds,
    view_columns,
)


def measured_row(model, batch_size, p50, *, precision="fp32", run_id="run-1", ci_met=True, sequence_length=128,
                 samples=None, wall_seconds=1.0, fingerprint="fp", **fields):
    config = BenchmarkConfig(model_name=model.name, hardware="cpu", batch_size=batch_size, precision=precision,
                             sequence_length=sequence_length)
    measurement = Measurement.of(
        config, average_latency_ms=p50, p50_latency_ms=p50, ci_low_ms=p50 * 0.9, ci_high_ms=p50 * 1.1,
        ci_met=ci_met, n_samples=len(samples) if samples else 10, samples_ms=samples,
        throughput_items_per_second=batch_size / p50 * 1000, wall_seconds=wall_seconds, **fields,
    )
    return {**msgspec.structs.asdict(measurement), "model": model, "hardware": CPU, "run_id": run_id,
            "config_key": config.key(), "fingerprint": fingerprint}


@pytest.fixture
def runs_db(tmp_path):
    """bert-tiny measured in two runs at fp32 (batch 1 twice), once at int8 (noisy at batch 2),
    and once at sequence length 64."""
    database = Database(tmp_path / "trust.duckdb")
    insert_results(database, [measured_row(BERT, 1, 10.0, run_id="run-1", samples=[1.0, 2.0, 2.0, 3.0, 9.0]),
                              measured_row(BERT, 2, 12.0, run_id="run-1")])
    insert_results(database, [
        measured_row(BERT, 1, 8.0, run_id="run-2", wall_seconds=3.0),
        measured_row(BERT, 1, 6.0, run_id="run-2", precision="int8"),
        measured_row(BERT, 2, 7.0, run_id="run-2", precision="int8", ci_met=False),
        measured_row(BERT, 1, 4.0, run_id="run-2", sequence_length=64),
    ])
    yield database
    database.close()


def test_batch_scaling_keeps_precisions_and_sequence_lengths_in_series_of_their_own(runs_db):
    df = batch_scaling(runs_db, Filters(latest_only=True), LATENCY)
    assert sorted(zip(df.series, df.batch_size, df.value, df.n, strict=True)) == [
        ("bert-tiny · fp32 · seq 128", 1, 8.0, 1),
        ("bert-tiny · fp32 · seq 128", 2, 12.0, 1),
        ("bert-tiny · fp32 · seq 64", 1, 4.0, 1),
        ("bert-tiny · int8 · seq 128", 1, 6.0, 1),
        ("bert-tiny · int8 · seq 128", 2, 7.0, 1),
    ]


def test_all_runs_average_a_config_and_count_the_results_and_the_noisy_ones(runs_db):
    df = batch_scaling(runs_db, Filters(), LATENCY)
    bs1 = df[(df.series == "bert-tiny · fp32 · seq 128") & (df.batch_size == 1)].iloc[0]
    assert (bs1.value, bs1.n, bs1.noisy) == (9.0, 2, 0)
    # The error bar is the widest CI among the results averaged.
    assert (bs1.ci_low, bs1.ci_high) == pytest.approx((8.0 * 0.9, 10.0 * 1.1))
    noisy = df[(df.series == "bert-tiny · int8 · seq 128") & (df.batch_size == 2)].iloc[0]
    assert (noisy.n, noisy.noisy, noisy.result_id) == (1, 1, 5)


def test_throughput_error_bars_are_the_throughputs_own_ci_not_the_medians(tmp_path):
    # A spiky config: a narrow median CI (p50 ± 10%), but spikes that moved the mean, and with it
    # the throughput, leave the throughput's own interval wide; the bar is that one.
    database = Database(tmp_path / "spiky.duckdb")
    insert_results(database, [measured_row(BERT, 1, 8.0, throughput_ci_low_items_per_second=40.0,
                                           throughput_ci_high_items_per_second=300.0)])
    df = hardware_comparison(database, Filters(latest_only=True), THROUGHPUT)
    database.close()
    bs1 = df[df.batch_size == 1].iloc[0]
    assert bs1.value == pytest.approx(1000 / 8.0)
    assert (bs1.ci_low, bs1.ci_high) == pytest.approx((40.0, 300.0))


def test_throughput_stored_before_it_had_a_ci_draws_no_error_bar(runs_db):
    df = hardware_comparison(runs_db, Filters(latest_only=True, precision="fp32", sequence_length=128), THROUGHPUT)
    bs1 = df[df.batch_size == 1].iloc[0]
    assert bs1.value == pytest.approx(1000 / 8.0)
    assert bs1.ci_low != bs1.ci_low and bs1.ci_high != bs1.ci_high  # NaN: no interval, not the median's
    assert set(df.series) == {"fp32 · seq 128"}


def test_metrics_without_a_measured_ci_draw_no_error_bar(runs_db):
    df = family_heatmap(runs_db, Filters(), METRICS["latency_p99"])
    assert df.empty or df.ci_low.isna().all()


def test_top_models_rank_each_series_apart_and_say_what_the_best_was_picked_from(runs_db):
    best = top_models(runs_db, Filters(), LATENCY, limit=5)
    assert list(zip(best.series, best.value, best.batch_size, best.n, best.noisy, strict=True)) == [
        ("fp32 · seq 64", 4.0, 1, 1, False),
        ("int8 · seq 128", 6.0, 1, 2, False),
        ("fp32 · seq 128", 8.0, 1, 3, False),
    ]
    assert best.result_id.notna().all()


def test_the_heatmap_keeps_precisions_apart(runs_db):
    df = family_heatmap(runs_db, Filters(latest_only=True), LATENCY)
    assert sorted(zip(df.series, df.n, df.noisy, strict=True)) == [
        ("bert · fp32 · seq 128", 2, 0), ("bert · fp32 · seq 64", 1, 0), ("bert · int8 · seq 128", 2, 1),
    ]


def test_latest_only_keeps_the_newest_result_of_each_config(runs_db):
    latest = results_page(runs_db, Filters(latest_only=True), sort="p50_latency_ms", direction="asc")
    every = results_page(runs_db, Filters(), sort="p50_latency_ms", direction="asc")
    assert (latest.total, every.total) == (5, 6)
    assert 10.0 not in [row["p50_latency_ms"] for row in latest.rows]
    one_run = results_page(runs_db, Filters(run_id="run-1", latest_only=True))
    assert one_run.total == 2  # a run's own results, even where a later run measured the config again


def test_latest_only_keeps_every_result_without_a_config_key(runs_db):
    # Rows stored before config keys existed: each is its own config, none hides another.
    with runs_db.writing() as cursor:
        cursor.execute("UPDATE performance_results SET config_key = NULL WHERE run_id = 'run-1'")
    latest = results_page(runs_db, Filters(latest_only=True))
    assert latest.total == 6


def test_latest_only_shows_a_result_stored_after_the_last_query(runs_db):
    # The pages' latest per config is worked out once per write (storage.dashboard._hidden_ids):
    # a result stored since hides its config's older one on the very next query.
    latency = lambda page: sorted(row["p50_latency_ms"] for row in page.rows)  # noqa: E731
    assert latency(results_page(runs_db, Filters(latest_only=True))) == [4.0, 6.0, 7.0, 8.0, 12.0]
    insert_results(runs_db, [measured_row(BERT, 1, 3.0, run_id="run-3")])
    assert latency(results_page(runs_db, Filters(latest_only=True))) == [3.0, 4.0, 6.0, 7.0, 12.0]
    # Each filter combination has its own latest: run-2's own results still include its 8 ms.
    assert latency(results_page(runs_db, Filters(run_id="run-2", latest_only=True))) == [4.0, 6.0, 7.0, 8.0]
    insert_results(runs_db, [measured_row(BERT, 1, 2.0, run_id="run-2")])
    assert latency(results_page(runs_db, Filters(run_id="run-2", latest_only=True))) == [2.0, 4.0, 6.0, 7.0]


def test_a_rerun_stored_while_a_page_is_read_never_shows_beside_the_result_it_replaces(runs_db, monkeypatch):
    # The hidden ids are worked out from one snapshot and the page's query runs a moment later:
    # a rerun committed in between must not make its config show twice (the page reads as of
    # the snapshot; the next one shows the rerun).
    latency = lambda page: sorted(row["p50_latency_ms"] for row in page.rows)  # noqa: E731
    worked_out = dashboard._hidden_ids

    def then_a_rerun_lands(*args):
        answer = worked_out(*args)
        insert_results(runs_db, [measured_row(BERT, 1, 3.0, run_id="run-3")])
        return answer

    monkeypatch.setattr(dashboard, "_hidden_ids", then_a_rerun_lands)
    assert latency(results_page(runs_db, Filters(latest_only=True))) == [4.0, 6.0, 7.0, 8.0, 12.0]
    monkeypatch.setattr(dashboard, "_hidden_ids", worked_out)
    assert latency(results_page(runs_db, Filters(latest_only=True))) == [3.0, 4.0, 6.0, 7.0, 12.0]


def test_latest_only_takes_the_newest_result_that_has_the_metric_shown(runs_db):
    # run-4 measured batch 2 at fp32 again without a peak memory: the memory heatmap keeps
    # run-3's (the newest with one), the table shows run-4's.
    insert_results(runs_db, [measured_row(BERT, 2, 11.0, run_id="run-3", memory_peak_mb=50.0)])
    insert_results(runs_db, [measured_row(BERT, 2, 9.0, run_id="run-4")])
    memory = family_heatmap(runs_db, Filters(latest_only=True, precision="fp32", sequence_length=128), METRICS["memory"])
    assert list(zip(memory.value, memory.n, strict=True)) == [(50.0, 1)]
    table = results_page(runs_db, Filters(latest_only=True, precision="fp32", sequence_length=128, batch_size=2))
    assert [(row["p50_latency_ms"], row["run_id"]) for row in table.rows] == [(9.0, "run-4")]


def test_results_rows_say_how_far_they_can_be_trusted(runs_db):
    rows = results_page(runs_db, Filters(precision="int8"), sort="batch_size").rows
    assert [(row["batch_size"], row["ci_met"], row["noisy"]) for row in rows] == [(1, True, False), (2, False, True)]
    assert {"sequence_length", "n_samples", "ci_low_ms", "ci_high_ms", "scenario", "contended"} <= set(rows[0])


@pytest.mark.parametrize("column", ["n_samples", "ci_met", "sequence_length", "ci_low_ms"])
def test_the_trust_columns_sort_on_the_server(runs_db, column):
    page = results_page(runs_db, Filters(), sort=column, direction="desc")
    assert page.total == 6


def test_a_contended_result_is_noisy_where_results_record_contention(runs_db):
    if "contended" not in view_columns(runs_db):
        pytest.skip("results_view has no contended column yet (issue 10)")
    insert_results(runs_db, [measured_row(GPT2, 1, 5.0, contended=True)])
    rows = results_page(runs_db, Filters(model="gpt2-tiny")).rows
    assert [(row["ci_met"], row["contended"], row["noisy"]) for row in rows] == [(True, True, True)]


def test_a_scenario_filter_before_results_record_scenarios_is_refused_by_field(runs_db):
    if "scenario" in view_columns(runs_db):
        pytest.skip("results record scenarios")
    with pytest.raises(InvalidFilter) as refused:
        results_page(runs_db, Filters(scenario="generate"))
    assert refused.value.field == "scenario"


def test_filter_options_offer_sequence_lengths_and_runs_newest_first(runs_db):
    options = filter_options(runs_db)
    assert options.sequence_lengths == [64, 128]
    assert options.runs == ["run-2", "run-1"]
    assert options.precisions == ["fp32", "int8"]


def test_the_histogram_counts_every_sample_into_equal_bins(runs_db):
    bins = sample_histogram(runs_db, 1, bins=4)
    assert list(bins["count"]) == [3, 1, 0, 1]  # [1, 3), [3, 5), [5, 7), [7, 9]
    assert list(bins["bin_start"]) == [1.0, 3.0, 5.0, 7.0] and bins["bin_end"].iloc[-1] == 9.0
    assert sample_histogram(runs_db, 2, bins=4).empty  # no samples kept
    assert sample_histogram(runs_db, 999).empty


def test_equal_samples_make_one_bin(tmp_path):
    with Database(tmp_path / "flat.duckdb") as database:
        insert_results(database, [measured_row(BERT, 1, 2.0, samples=[2.0] * 7)])
        bins = sample_histogram(database, 1)
        assert list(zip(bins.bin_start, bins.bin_end, bins["count"], strict=True)) == [(2.0, 2.0, 7)]


def test_the_trace_keeps_iteration_order_and_buckets_long_runs(runs_db):
    trace = sample_trace(runs_db, 1)
    assert list(trace.latency_ms) == [1.0, 2.0, 2.0, 3.0, 9.0] and list(trace.iteration) == [1, 2, 3, 4, 5]
    bucketed = sample_trace(runs_db, 1, max_points=2)
    assert list(zip(bucketed.iteration, bucketed.iteration_end, bucketed.low, bucketed.high, strict=True)) == [
        (1, 3, 1.0, 2.0), (4, 5, 3.0, 9.0)]
    assert result_samples(runs_db, 1) == [1.0, 2.0, 2.0, 3.0, 9.0]
    assert result_samples(runs_db, 2) == [] and result_samples(runs_db, 999) is None


def test_the_same_config_in_other_runs_newest_first(runs_db):
    key = BenchmarkConfig(model_name="bert-tiny", hardware="cpu", batch_size=1).key()
    others = same_config_results(runs_db, key)
    assert list(others.run_id) == ["run-2", "run-1"] and list(others.p50_latency_ms) == [8.0, 10.0]


def test_what_a_run_reused_is_the_newest_result_with_its_fingerprint_from_another_run(runs_db):
    bs1 = BenchmarkConfig(model_name="bert-tiny", hardware="cpu", batch_size=1).key()
    bs2 = BenchmarkConfig(model_name="bert-tiny", hardware="cpu", batch_size=2).key()
    reused = reused_results(runs_db, "run-3", [bs1, bs2], ["fp"])
    assert {key: row["run_id"] for key, row in reused.items()} == {bs1: "run-2", bs2: "run-1"}
    assert reused_results(runs_db, "run-3", [bs1], ["another-environment"]) == {}
    assert reused_results(runs_db, "run-2", [bs1], ["fp"])[bs1]["run_id"] == "run-1"  # never itself


def test_a_finished_run_reused_only_results_stored_before_it_ended(runs_db):
    bs1 = BenchmarkConfig(model_name="bert-tiny", hardware="cpu", batch_size=1).key()
    (run_1_stored,), = runs_db.cursor().execute(
        "SELECT max(created_at) FROM performance_results WHERE run_id = 'run-1'").fetchall()
    ended = run_1_stored.replace(tzinfo=UTC)  # run-3 ended before run-2 stored anything
    assert reused_results(runs_db, "run-3", [bs1], ["fp"], until=ended)[bs1]["run_id"] == "run-1"
    assert reused_results(runs_db, "run-3", [bs1], ["fp"])[bs1]["run_id"] == "run-2"  # a live run: the newest


def test_history_says_how_long_a_config_takes(runs_db):
    bs1 = BenchmarkConfig(model_name="bert-tiny", hardware="cpu", batch_size=1).key()
    assert typical_wall_seconds(runs_db, [bs1, "unknown"]) == {bs1: 2.0}  # median of 1 s and 3 s
    assert typical_wall_seconds(runs_db, []) == {}
