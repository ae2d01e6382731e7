from datetime import datetime, timedelta

from engine.runs import utc_now

import msgspec

from descriptions import CPU, hardware_description, model_description
from engine.config import BenchmarkConfig, fingerprint
from engine.hardware import environment
from engine.result import FAILED, Measurement, ResultRow
from engine.runs import RunRecord, RunRequest, RunState, expand
from storage.dashboard import Filters, results_export
from storage.database import Database
from storage.results import (
    failures_for_run,
    finished_config_keys,
    has_recent_result,
    insert_results,
    query_results,
    record_failure,
    results_for_run,
)
from storage.runs import get_run, list_runs, save_run

BERT = model_description("bert-tiny", "bert", parameters_million=0.4)
GPT2 = model_description("gpt2-tiny", "gpt2", type="decoder", parameters_million=0.5)


def config(model=BERT, batch_size=1, precision="fp32"):
    return BenchmarkConfig(
        model_name=model.name, hardware=CPU.name, batch_size=batch_size, precision=precision,
        sequence_length=128,
    )


def stored(measurement, model=BERT, run_id="run-1", key=None, **extra):
    """A row for storage, as the engine's ResultStore adapter builds it from a Measurement."""
    return {
        **msgspec.structs.asdict(measurement),
        "run_id": run_id,
        "config_key": key or measurement.config.key(),
        "model": model,
        "hardware": CPU,
        **extra,
    }


def result_row(model=BERT, batch_size=1, run_id="run-1", key=None, p50=2.0):
    measurement = Measurement.of(
        config(model, batch_size),
        n_samples=3, average_latency_ms=p50, p50_latency_ms=p50, p90_latency_ms=p50 + 1,
        p99_latency_ms=p50 + 2, throughput_items_per_second=batch_size / p50 * 1000,
        samples_ms=[p50 - 0.1, p50, p50 + 0.1], ci_met=True,
    )
    return stored(measurement, model, run_id, key, fingerprint="fp-a")


def test_bulk_insert_keeps_samples_and_links_models_and_hardware_once(tmp_path):
    db = Database(tmp_path / "b.duckdb")
    rows = [result_row(batch_size=bs) for bs in (1, 2, 4)] + [result_row(model=GPT2)]
    assert insert_results(db, rows) == 4

    read_back = results_for_run(db, "run-1", ResultRow)
    assert [(r.model_name, r.batch_size) for r in read_back] == [
        ("bert-tiny", 1), ("bert-tiny", 2), ("bert-tiny", 4), ("gpt2-tiny", 1)
    ]
    assert db.cursor().execute("SELECT count(*) FROM models").fetchone()[0] == 2
    assert db.cursor().execute("SELECT count(*) FROM hardware_platforms").fetchone()[0] == 1
    samples = db.cursor().execute("SELECT samples_ms FROM performance_results ORDER BY result_id").fetchone()[0]
    assert samples == [1.9, 2.0, 2.1]


def test_every_read_of_a_result_shows_its_throughput_ci_repeats_and_between_process_spread(tmp_path):
    db = Database(tmp_path / "b.duckdb")
    measurement = Measurement.of(
        config(), n_samples=100, p50_latency_ms=0.7, average_latency_ms=7.1, throughput_items_per_second=140.1,
        throughput_ci_low_items_per_second=78.2, throughput_ci_high_items_per_second=647.1, repeats=2,
        between_process_cv=0.2185, samples_ms=[0.7] * 100,
    )
    insert_results(db, [stored(measurement, fingerprint="fp-a")])
    insert_results(db, [stored(measurement, run_id="run-2", fingerprint="fp-a")] * 2)  # the Arrow path

    expected = (140.1, 78.2, 647.1, 2, 0.2185)
    for row in (*results_for_run(db, "run-1", ResultRow), *results_for_run(db, "run-2", ResultRow, with_samples=True),
                *query_results(db, ResultRow)):
        assert (row.throughput_items_per_second, row.throughput_ci_low_items_per_second,
                row.throughput_ci_high_items_per_second, row.repeats, row.between_process_cv) == expected
    exported = results_export(db, Filters(run_id="run-1")).read_all().to_pylist()[0]
    assert (exported["throughput_ci_low_items_per_second"], exported["repeats"], exported["between_process_cv"]) == (
        78.2, 2, 0.2185
    )


def test_incremental_lookup_honours_fingerprint_and_age(tmp_path):
    db = Database(tmp_path / "b.duckdb")
    insert_results(db, [result_row(key="k1")])
    assert has_recent_result(db, "k1", "fp-a", 30)
    assert not has_recent_result(db, "k1", "fp-other", 30)
    with db.writing() as cursor:
        cursor.execute("UPDATE performance_results SET created_at = ?", [datetime.now() - timedelta(days=31)])
    assert not has_recent_result(db, "k1", "fp-a", 30)


def test_failures_count_as_finished_for_resume(tmp_path):
    db = Database(tmp_path / "b.duckdb")
    insert_results(db, [result_row(key="ok-key")])
    oom = Measurement.failure(config(batch_size=64, precision="fp16"), FAILED, "oom", "out of memory")
    record_failure(db, stored(oom, key="failed-key", is_compatible=False))
    assert finished_config_keys(db, "run-1") == {"ok-key", "failed-key"}
    (failure,) = failures_for_run(db, "run-1", ResultRow)
    assert (failure.status, failure.error_type, failure.error_message) == ("failed", "oom", "out of memory")
    assert (failure.model_name, failure.hardware, failure.batch_size, failure.precision) == (
        "bert-tiny", "cpu", 64, "fp16"
    )


def test_query_and_export_filter_alike_by_name_family_hardware_and_batch_size(tmp_path):
    db = Database(tmp_path / "b.duckdb")
    insert_results(db, [result_row(batch_size=1), result_row(batch_size=8), result_row(model=GPT2, batch_size=8)])

    def queried(filters):
        return {row.model_name for row in query_results(db, ResultRow, filters)}

    def exported(filters):
        return {row["model_name"] for row in results_export(db, filters).read_all().to_pylist()}

    # QA: /query?model=bert matched the family, while /export?model=bert matched nothing.
    for filters, names in ((Filters(family="bert"), {"bert-tiny"}), (Filters(model="bert-tiny"), {"bert-tiny"}),
                           (Filters(model="bert"), set())):
        assert queried(filters) == exported(filters) == names
    assert len(query_results(db, ResultRow, Filters(hardware="cpu", batch_size=8))) == 2
    assert len(query_results(db, ResultRow, limit=1)) == 1
    # A device by its name or its type: "cuda" is every CUDA device.
    gpu = hardware_description("cuda:1", "cuda", "Test GPU")
    insert_results(db, [{**result_row(), "hardware": gpu}])
    for filters in (Filters(hardware="cuda"), Filters(hardware="cuda:1")):
        assert len(query_results(db, ResultRow, filters)) == results_export(db, filters).read_all().num_rows == 1
    assert results_export(db, Filters(model="gpt2-tiny")).read_all().num_rows == 1
    assert results_export(db, Filters(run_id="run-1", batch_size=8)).read_all().num_rows == 2
    assert results_export(db, Filters(run_id="another-run")).read_all().num_rows == 0


def test_run_rows_round_trip_and_update_in_place(tmp_path):
    db = Database(tmp_path / "b.duckdb")
    request = RunRequest(models=["bert-tiny"], batch_sizes=[1, 2])
    state = RunState(request=request, configs=expand(request, ["bert-tiny"], ["cpu"]), run_id="r")
    state.environments["cpu"] = environment("cpu")
    state.fingerprints["cpu"] = fingerprint(state.environments["cpu"])
    save_run(db, state.record())
    state.status, state.started_at = "running", utc_now()
    state.finished_keys.add(state.configs[0].key())
    running = state.record()
    save_run(db, running)
    run = get_run(db, "r", RunRecord)
    assert (run.status, run.completed_configs, run.total_configs, run.request) == ("running", 1, 2, request)
    assert run == running
    assert [r.run_id for r in list_runs(db, RunRecord, statuses=("running",))] == ["r"]
    assert list_runs(db, RunRecord, statuses=("completed",)) == []


def test_catalog_rows_are_reused_and_refreshed_when_a_description_changes(tmp_path):
    db = Database(tmp_path / "b.duckdb")
    insert_results(db, [result_row()])
    insert_results(db, [result_row(model=msgspec.structs.replace(BERT, parameters_million=0.5))])
    assert db.cursor().execute("SELECT model_id, parameters_million FROM models").fetchall() == [(1, 0.5)]
    insert_results(db, [result_row(model=msgspec.structs.replace(BERT, parameters_million=0.5))])
    assert db.cursor().execute("SELECT count(*) FROM hardware_platforms").fetchone()[0] == 1
