"""The guarded custom-SQL path end to end: parameters, row cap, values, the time limit
and the read-only sandbox. Also home of the seeded benchmark database the other
test_sql_guard_* modules import."""

import hashlib
import json
import threading
import time

import pytest

from storage.database import Database
from storage.schema import ALLOWED_QUERY_TABLES
from storage.sql_execution import execute_read_only
from storage.sql_guard import (
    QueryFailed,
    QueryRefused,
    QuerySyntaxError,
    QueryTimeout,
    check_query,
    run_guarded_query,
)

SEED_STATEMENTS = [
    """INSERT INTO models
           (model_id, model_name, model_family, model_type, modality, parameters_million, source)
       VALUES (1, 'bert-tiny', 'bert', 'encoder', 'text', 4.4, 'builtin'),
              (2, 'gpt2-tiny', 'gpt2', 'decoder', 'text', 5.0, 'builtin'),
              (3, 'vit-tiny', 'vit', 'vision', 'image', 5.7, 'builtin')""",
    """INSERT INTO hardware_platforms (hardware_id, hardware_type, device_name, platform, memory_gb)
       VALUES (1, 'cpu', 'Intel Xeon', 'cpu', 64.0), (2, 'cuda', 'NVIDIA H100', 'cuda:0', 80.0)""",
    """INSERT INTO test_runs (run_id, status, priority, created_at)
       VALUES ('run-a', 'completed', 'high', TIMESTAMP '2024-05-01 10:00:00'),
              ('run-b', 'failed', 'low', TIMESTAMP '2024-06-15 12:30:00')""",
    """INSERT INTO performance_results (result_id, run_id, model_id, hardware_id, batch_size, precision,
           average_latency_ms, p50_latency_ms, p90_latency_ms, p99_latency_ms,
           throughput_items_per_second, memory_peak_mb, samples_ms, created_at)
       VALUES (1, 'run-a', 1, 1, 1, 'fp32', 10, 10, 11, 12, 100, 500, [9, 10, 11], '2024-05-01 10:01:00'),
              (2, 'run-a', 1, 1, 8, 'fp32', 40, 40, 41, 43, 200, 800, [39, 40, 41], '2024-05-01 10:02:00'),
              (3, 'run-a', 2, 1, 1, 'fp32', 20, 20, 23, 24, 50, 700, [19, 20, 21, 24], '2024-05-01 10:03:00'),
              (4, 'run-a', 1, 2, 1, 'fp16', 2, 2, 2.4, 2.5, 500, 300, [1.5, 2, 2.5], '2024-05-01 10:04:00'),
              (5, 'run-b', 3, 2, 8, 'fp16', 4, 4, 4, 4, 2000, 900, [4, 4, 4], '2024-06-15 12:31:00'),
              (6, 'run-b', 2, 2, 8, 'fp32', 8, 8, 9, 9, 1000, 1200, [7, 8, 9], '2024-06-15 12:32:00')""",
    """INSERT INTO hardware_compatibility (compatibility_id, run_id, model_id, hardware_id, batch_size,
           precision, is_compatible, error_type, error_message)
       VALUES (1, 'run-b', 3, 1, 64, 'int8', false, 'OOM', 'needs ~9 GB, device has 8 GB')""",
    # Not on the allowlist: what a guard bypass would leak.
    "CREATE TABLE secrets (s VARCHAR)",
    "INSERT INTO secrets VALUES ('TOPSECRET')",
]


def make_benchmark_db(path) -> Database:
    """A real benchboard database (the storage schema) holding known rows, plus a secrets table."""
    db = Database(path)
    with db.writing() as cursor:
        for statement in SEED_STATEMENTS:
            cursor.execute(statement)
    return db


def database_fingerprint(db: Database) -> str:
    """A hash of every table's content and of the catalog (tables, views, sequences)."""
    cursor = db.cursor()
    digest = hashlib.sha256()
    catalog = cursor.execute(
        """SELECT 'table', database_name, schema_name, table_name, sql FROM duckdb_tables()
           UNION ALL SELECT 'view', database_name, schema_name, view_name, sql
                     FROM duckdb_views() WHERE NOT internal
           UNION ALL SELECT 'sequence', database_name, schema_name, sequence_name, last_value::VARCHAR
                     FROM duckdb_sequences()
           ORDER BY ALL"""
    ).fetchall()
    digest.update(repr(catalog).encode())
    for kind, database, schema, table, _ in catalog:
        if kind == "table":
            rows = cursor.execute(f'SELECT * FROM "{database}"."{schema}"."{table}" ORDER BY ALL').fetchall()
            digest.update(f"{table}:{rows!r}".encode())
    cursor.close()
    return digest.hexdigest()


@pytest.fixture
def benchmark_db(tmp_path):
    db = make_benchmark_db(tmp_path / "bench.duckdb")
    yield db
    db.close()


@pytest.fixture
def crowded_db(tmp_path):
    """3000 result rows: a three-way cross join over them runs for minutes, not seconds."""
    db = make_benchmark_db(tmp_path / "crowded.duckdb")
    with db.writing() as cursor:
        cursor.execute(
            """INSERT INTO performance_results (result_id, run_id, model_id, hardware_id, batch_size,
                   precision, throughput_items_per_second)
               SELECT 100 + i, 'bulk', 1, 1, i, 'fp32', i FROM range(3000) t(i)"""
        )
    yield db
    db.close()


SLOW_QUERY = """SELECT sum(a.throughput_items_per_second * b.batch_size + c.batch_size)
                FROM performance_results a, performance_results b, performance_results c"""


def run(db, sql, **kwargs):
    return run_guarded_query(db, sql, allowed_tables=ALLOWED_QUERY_TABLES, **kwargs)


def test_the_seeded_secrets_are_really_there_so_refusals_mean_something(benchmark_db):
    assert benchmark_db.cursor().execute("SELECT s FROM secrets").fetchall() == [("TOPSECRET",)]


def test_regenerated_sql_keeps_named_parameters_and_drops_comments():
    checked = check_query(
        "select model_name /* who */ from models where model_family = $family -- filter", ALLOWED_QUERY_TABLES
    )
    assert checked == "SELECT model_name FROM models WHERE model_family = $family"


MODEL_ID_BY_NAME = "SELECT model_id FROM models WHERE model_name = $model"


def test_named_parameter_is_bound_by_duckdb(benchmark_db):
    result = run(benchmark_db, MODEL_ID_BY_NAME, params={"model": "gpt2-tiny"})
    assert result.rows == [[2]]


@pytest.mark.parametrize("value", ["x' OR '1'='1", "bert-tiny'; DROP TABLE models; --"])
def test_parameter_values_are_never_interpolated(benchmark_db, value):
    before = database_fingerprint(benchmark_db)
    result = run(benchmark_db, MODEL_ID_BY_NAME, params={"model": value})
    assert result.rows == []
    assert database_fingerprint(benchmark_db) == before


def test_missing_parameter_is_refused_by_name(benchmark_db):
    with pytest.raises(QueryRefused) as refused:
        run(benchmark_db, "SELECT * FROM models WHERE model_name = $model AND model_family = $family",
            params={"family": "bert"})
    assert refused.value.reason == "parameter $model has no value: pass it in params"


def test_parameter_the_query_does_not_use_is_refused_by_name(benchmark_db):
    with pytest.raises(QueryRefused) as refused:
        run(benchmark_db, "SELECT count(*) FROM models", params={"model": "bert-tiny"})
    assert refused.value.reason == "parameter $model is not used by the query"


def test_row_cap_flags_truncation_only_when_more_rows_exist(benchmark_db):
    capped = run(benchmark_db, "SELECT result_id FROM performance_results ORDER BY result_id", row_cap=4)
    assert (capped.rows, capped.row_count, capped.truncated) == ([[1], [2], [3], [4]], 4, True)

    exact = run(benchmark_db, "SELECT result_id FROM performance_results ORDER BY result_id", row_cap=6)
    assert (exact.row_count, exact.truncated) == (6, False)


def test_result_values_are_json_ready(benchmark_db):
    result = run(
        benchmark_db,
        """SELECT created_at, CAST(created_at AS DATE) AS day, samples_ms, 1.50::DECIMAL(5, 2) AS price,
                  INTERVAL 90 SECOND AS pause, 'nan'::DOUBLE AS not_a_number, {'bs': batch_size} AS info,
                  '\\x01\\xff'::BLOB AS raw
           FROM performance_results WHERE result_id = 1""",
    )
    assert result.columns == [
        "created_at", "day", "samples_ms", "price", "pause", "not_a_number", "info", "raw"
    ]
    assert result.rows == [
        ["2024-05-01T10:01:00", "2024-05-01", [9.0, 10.0, 11.0], 1.5, 90.0, None, {"bs": 1}, "01ff"]
    ]
    payload = result.to_dict()
    assert set(payload) == {"columns", "rows", "row_count", "truncated", "elapsed_ms"}
    json.dumps(payload, allow_nan=False)
    assert payload["elapsed_ms"] >= 0


def test_syntax_error_names_the_parsers_position(benchmark_db):
    with pytest.raises(QuerySyntaxError) as refused:
        run(benchmark_db, "SELECT model_name\nFROM models WHERE")
    assert refused.value.reason.startswith("syntax error at line 2, column 17:")


def test_unclosed_string_is_a_syntax_error_with_a_position(benchmark_db):
    with pytest.raises(QuerySyntaxError) as refused:
        run(benchmark_db, "SELECT model_name\nFROM models WHERE model_name = 'bert")
    assert refused.value.reason == (
        "syntax error at line 2, column 36: "
        "cannot read the query here (an unclosed string, quoted name or comment?)"
    )


def test_duckdb_rejection_while_running_is_reported_in_one_line(benchmark_db):
    with pytest.raises(QueryFailed) as failed:
        run(benchmark_db, "SELECT no_such_column FROM models")
    assert failed.value.reason.startswith("Binder Error: Referenced column")
    assert "\n" not in failed.value.reason


def test_query_past_the_time_limit_is_interrupted(crowded_db):
    started = time.perf_counter()
    with pytest.raises(QueryTimeout) as timed_out:
        run(crowded_db, SLOW_QUERY, timeout_s=0.5)
    assert str(timed_out.value) == "query interrupted after 0.5 s"
    assert time.perf_counter() - started < 5
    assert run(crowded_db, "SELECT count(*) FROM models").rows == [[3]]


def test_default_time_limit_reads_as_whole_seconds():
    assert str(QueryTimeout(5.0)) == "query interrupted after 5 s"


def test_other_cursors_keep_serving_while_a_slow_query_runs(crowded_db):
    outcome = {}

    def slow():
        try:
            run(crowded_db, SLOW_QUERY, timeout_s=1.5)
        except QueryTimeout as error:
            outcome["slow"] = error

    worker = threading.Thread(target=slow)
    worker.start()
    time.sleep(0.2)
    fast_started = time.perf_counter()
    answers = [run(crowded_db, "SELECT model_name FROM models WHERE model_id = 3").rows for _ in range(5)]
    fast_elapsed = time.perf_counter() - fast_started
    assert worker.is_alive(), "the slow query should still be running while the fast ones finish"
    worker.join(timeout=10)

    assert answers == [[["vit-tiny"]]] * 5
    assert fast_elapsed < 2.0
    assert isinstance(outcome.get("slow"), QueryTimeout)


@pytest.mark.parametrize(
    ("forced_sql", "duckdb_says"),
    [
        ("INSERT INTO models (model_name) VALUES ('evil')", "read-only mode"),
        ("UPDATE models SET model_name = 'evil'", "read-only mode"),
        ("DELETE FROM performance_results", "read-only mode"),
        ("DROP TABLE secrets", "read-only mode"),
        ("CREATE TABLE evil AS SELECT * FROM models", "read-only mode"),
        ("SELECT nextval('seq_models')", "read-only mode"),
        ("SET enable_external_access = true", "configuration"),
        ("COPY models TO 'stolen.csv'", "disabled by configuration"),
        ("ATTACH 'other.duckdb' AS other", "disabled by configuration"),
    ],
)
def test_sandbox_stops_writes_that_skip_the_parser(
    benchmark_db, forced_sql, duckdb_says, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    before = database_fingerprint(benchmark_db)
    with pytest.raises(QueryFailed) as failed:
        execute_read_only(benchmark_db, forced_sql)
    assert duckdb_says in failed.value.reason
    assert database_fingerprint(benchmark_db) == before
    assert not (tmp_path / "stolen.csv").exists()
