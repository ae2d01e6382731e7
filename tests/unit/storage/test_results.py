from datetime import datetime, timedelta

from descriptions import CPU, model_description
from storage.database import Database
from storage.results import (
    export_batches,
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


def result_row(model=BERT, batch_size=1, run_id="run-1", key=None, p50=2.0):
    return {
        "model": model, "hardware": CPU, "run_id": run_id, "config_key": key or f"{model['name']}|bs{batch_size}",
        "fingerprint": "fp-a", "batch_size": batch_size, "precision": "fp32", "sequence_length": 128,
        "n_samples": 3, "average_latency_ms": p50, "p50_latency_ms": p50, "p90_latency_ms": p50 + 1,
        "p99_latency_ms": p50 + 2, "throughput_items_per_second": batch_size / p50 * 1000,
        "samples_ms": [p50 - 0.1, p50, p50 + 0.1], "ci_met": True,
    }


def test_bulk_insert_keeps_samples_and_links_models_and_hardware_once(tmp_path):
    db = Database(tmp_path / "b.duckdb")
    rows = [result_row(batch_size=bs) for bs in (1, 2, 4)] + [result_row(model=GPT2)]
    assert insert_results(db, rows) == 4

    stored = results_for_run(db, "run-1")
    assert [(r["model_name"], r["batch_size"]) for r in stored] == [
        ("bert-tiny", 1), ("bert-tiny", 2), ("bert-tiny", 4), ("gpt2-tiny", 1)
    ]
    assert db.cursor().execute("SELECT count(*) FROM models").fetchone()[0] == 2
    assert db.cursor().execute("SELECT count(*) FROM hardware_platforms").fetchone()[0] == 1
    samples = db.cursor().execute("SELECT samples_ms FROM performance_results ORDER BY result_id").fetchone()[0]
    assert samples == [1.9, 2.0, 2.1]


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
    record_failure(db, {"run_id": "run-1", "model": BERT, "hardware": CPU, "batch_size": 64, "precision": "fp16",
                        "error_type": "oom", "error_message": "out of memory", "config_key": "failed-key"})
    assert finished_config_keys(db, "run-1") == {"ok-key", "failed-key"}
    assert failures_for_run(db, "run-1")[0]["error_message"] == "out of memory"


def test_query_filters_by_family_hardware_and_batch_size(tmp_path):
    db = Database(tmp_path / "b.duckdb")
    insert_results(db, [result_row(batch_size=1), result_row(batch_size=8), result_row(model=GPT2, batch_size=8)])
    assert {r["model_name"] for r in query_results(db, model="bert")} == {"bert-tiny"}
    assert len(query_results(db, hardware="cpu", batch_size=8)) == 2
    assert len(query_results(db, limit=1)) == 1
    assert export_batches(db, model="gpt2-tiny").read_all().num_rows == 1


def test_run_rows_round_trip_and_update_in_place(tmp_path):
    db = Database(tmp_path / "b.duckdb")
    save_run(db, {"run_id": "r", "status": "queued", "priority": "high", "request": {"models": ["bert-tiny"]}})
    save_run(db, {"run_id": "r", "status": "running", "priority": "high", "request": {"models": ["bert-tiny"]},
                  "completed_configs": 1, "total_configs": 2})
    run = get_run(db, "r")
    assert (run["status"], run["completed_configs"], run["request"]) == ("running", 1, {"models": ["bert-tiny"]})
    assert [r["run_id"] for r in list_runs(db, statuses=("running",))] == ["r"]
    assert list_runs(db, statuses=("completed",)) == []


def test_catalog_rows_are_reused_and_refreshed_when_a_description_changes(tmp_path):
    db = Database(tmp_path / "b.duckdb")
    insert_results(db, [result_row()])
    insert_results(db, [result_row(model={**BERT, "parameters_million": 0.5})])
    assert db.cursor().execute("SELECT model_id, parameters_million FROM models").fetchall() == [(1, 0.5)]
    insert_results(db, [result_row(model={**BERT, "parameters_million": 0.5})])
    assert db.cursor().execute("SELECT count(*) FROM hardware_platforms").fetchone()[0] == 1
