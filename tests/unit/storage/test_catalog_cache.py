"""Catalog ids cached per database (issue 16): reused, refreshed when a description changes,
never kept from a rolled-back transaction, and the 1-row and the bulk insert paths store alike."""

import msgspec
import pytest

from descriptions import CPU, model_description
from engine.config import BenchmarkConfig
from engine.result import Measurement, ResultRow
from storage import results as result_rows
from storage.catalog import catalog_ids
from storage.database import Database
from storage.results import insert_results, record_failure, results_for_run

BERT = model_description("bert-tiny", "bert", parameters_million=0.4)
GPT2 = model_description("gpt2-tiny", "gpt2", type="decoder", parameters_million=0.5)


def row(model=BERT, batch_size=1, p50=2.0, hardware=CPU, **extra):
    config = BenchmarkConfig(model_name=model.name, hardware=hardware.name, batch_size=batch_size, precision="fp32")
    measurement = Measurement.of(
        config, n_samples=3, average_latency_ms=p50, p50_latency_ms=p50, samples_ms=[p50 - 0.1, p50, p50 + 0.1],
        ci_met=True, throughput_items_per_second=batch_size / p50 * 1000,
    )
    return {**msgspec.structs.asdict(measurement), "run_id": "run-1", "config_key": config.key(),
            "fingerprint": "fp", "model": model, "hardware": hardware, **extra}


def catalog(db):
    models = db.cursor().execute("SELECT model_id, model_name, parameters_million FROM models ORDER BY 1").fetchall()
    hardware = db.cursor().execute("SELECT hardware_id, platform, memory_gb FROM hardware_platforms").fetchall()
    return models, hardware


def test_a_cached_id_is_reused_and_a_changed_description_refreshes_its_row(tmp_path):
    with Database(tmp_path / "c.duckdb") as db:
        insert_results(db, [row()])
        insert_results(db, [row(batch_size=2)])
        assert catalog(db) == ([(1, "bert-tiny", 0.4)], [(1, "cpu", CPU.memory_gb)])
        bigger = msgspec.structs.replace(BERT, parameters_million=0.9)
        insert_results(db, [row(model=bigger, batch_size=4)])
        assert catalog(db)[0] == [(1, "bert-tiny", 0.9)]
        insert_results(db, [row(batch_size=8)])  # the first description again: refreshed back, not cached stale
        assert catalog(db)[0] == [(1, "bert-tiny", 0.4)]
        more_memory = msgspec.structs.replace(CPU, memory_gb=CPU.memory_gb + 1)
        record_failure(db, row(hardware=more_memory, batch_size=16) | {"is_compatible": False, "error_type": "oom"})
        assert catalog(db)[1] == [(1, "cpu", CPU.memory_gb + 1)]
        assert [r.model_name for r in results_for_run(db, "run-1", ResultRow)] == ["bert-tiny"] * 4


def test_an_id_from_a_rolled_back_transaction_is_not_kept(tmp_path):
    with Database(tmp_path / "c.duckdb") as db:
        broken = row(model=GPT2) | {"batch_size": None}  # batch_size is NOT NULL: the INSERT fails
        with pytest.raises(Exception):
            insert_results(db, [broken])
        assert catalog(db)[0] == []  # the model row rolled back with it
        assert catalog_ids(db)._known == {}
        insert_results(db, [row(model=GPT2)])
        [stored] = results_for_run(db, "run-1", ResultRow)
        assert (stored.model_name, stored.hardware) == ("gpt2-tiny", "cpu")  # the join finds both rows


def test_each_database_has_its_own_ids(tmp_path):
    with Database(tmp_path / "a.duckdb") as first, Database(tmp_path / "b.duckdb") as second:
        insert_results(first, [row(model=GPT2), row(model=BERT)])  # gpt2 gets id 1 here
        insert_results(second, [row(model=BERT)])  # and bert gets id 1 there
        assert [r.model_name for r in results_for_run(second, "run-1", ResultRow)] == ["bert-tiny"]
        assert catalog(second)[0] == [(1, "bert-tiny", 0.4)]


def test_the_one_row_path_and_the_bulk_path_store_the_same_values(tmp_path, monkeypatch):
    rows = [row(batch_size=b, p50=1.0 + b) for b in (1, 2, 4)]
    stored = {}
    for label, values_max_rows in (("values", len(rows)), ("arrow", 0)):
        monkeypatch.setattr(result_rows, "VALUES_MAX_ROWS", values_max_rows)
        with Database(tmp_path / f"{label}.duckdb") as db:
            insert_results(db, rows)
            stored[label] = db.cursor().execute(
                "SELECT * EXCLUDE (created_at) FROM performance_results ORDER BY result_id"
            ).fetchall()
            assert db.cursor().execute("SELECT count(*) FROM performance_results WHERE created_at IS NULL"
                                       ).fetchone()[0] == 0
    assert stored["values"] == stored["arrow"]
    assert stored["values"][0][stored_column_index(tmp_path, "samples_ms")] == [1.9, 2.0, 2.1]


def stored_column_index(tmp_path, name):
    with Database(tmp_path / "values.duckdb") as db:
        columns = [c[0] for c in db.cursor().execute("DESCRIBE performance_results").fetchall()]
    return [c for c in columns if c != "created_at"].index(name)
