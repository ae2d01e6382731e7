import json
import subprocess
import sys
from datetime import datetime, timezone

import duckdb
import pytest

from engine.result import ResultRow
from engine.runs import RunRecord, RunRequest
from storage.database import Database, DatabaseLockedError
from storage.results import failures_for_run
from storage.runs import get_run
from storage.schema import LATEST_VERSION, SEED_TABLES


def test_new_file_has_the_five_seed_tables_at_the_latest_schema(tmp_path):
    with Database(tmp_path / "b.duckdb") as db:
        tables = {row[0] for row in db.cursor().execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert set(SEED_TABLES) <= tables
        assert db.schema_version == LATEST_VERSION


def test_file_made_by_schema_v1_is_upgraded_with_nothing_lost(tmp_path):
    path = tmp_path / "old.duckdb"
    with Database(path, migrate_to=1) as old:
        assert old.schema_version == 1
        with old.writing() as cursor:
            cursor.execute("INSERT INTO models (model_name, model_family) VALUES ('bert-old', 'bert')")
            cursor.execute(
                "INSERT INTO performance_results (run_id, model_id, hardware_id, batch_size, precision, "
                "average_latency_ms, throughput_items_per_second) VALUES ('r-old', 1, 1, 4, 'fp32', 2.5, 1600)"
            )
        columns = {r[0] for r in old.cursor().execute("DESCRIBE performance_results").fetchall()}
        assert "samples_ms" not in columns

    with Database(path) as upgraded:
        assert upgraded.schema_version == LATEST_VERSION
        row = upgraded.cursor().execute(
            "SELECT run_id, batch_size, average_latency_ms, throughput_items_per_second, samples_ms "
            "FROM performance_results"
        ).fetchone()
        assert row == ("r-old", 4, 2.5, 1600.0, None)
        assert upgraded.cursor().execute("SELECT model_name FROM models").fetchall() == [("bert-old",)]


# A request as schema v2's code stored it (RunRequest.to_dict()).
V2_REQUEST = {
    "priority": "high", "hardware": ["cpu"], "models": ["bert-tiny"], "batch_sizes": [1, 2], "precision": "fp32",
    "progressive_mode": True, "incremental": True, "sequence_length": 128, "force": False,
}


def test_runs_and_failures_stored_by_schema_v2_read_back_under_the_v3_names(tmp_path):
    path = tmp_path / "v2.duckdb"
    request = RunRequest(models=["bert-tiny"], batch_sizes=[1, 2])
    started = datetime(2026, 1, 1, 10, 0, 1)
    with Database(path, migrate_to=2) as old, old.writing() as cursor:
        cursor.execute(
            "INSERT INTO test_runs (run_id, status, priority, request, total_configs, completed_configs, "
            "environment, fingerprint, total_models, completed_models, created_at, started_at, completed_at) "
            "VALUES ('r-old', 'running', 'high', ?, 4, 1, '{}', 'fp', 1, 0, ?, ?, NULL)",
            [json.dumps(V2_REQUEST), datetime(2026, 1, 1, 10, 0, 0), started],
        )
        cursor.execute("INSERT INTO models (model_name, model_family) VALUES ('bert-tiny', 'bert')")
        cursor.execute(
            "INSERT INTO hardware_platforms (hardware_type, device_name, platform) VALUES ('cpu', 'C', 'cpu')"
        )
        for error_type in ("progressive_stop", "incompatible", "insufficient_memory", "oom"):
            cursor.execute(
                "INSERT INTO hardware_compatibility (run_id, model_id, hardware_id, batch_size, precision, "
                "is_compatible, error_type, error_message) "
                "VALUES ('r-old', 1, 1, 8, 'fp32', false, ?, 'why')",
                [error_type],
            )

    with Database(path) as upgraded:
        run = get_run(upgraded, "r-old", RunRecord)
        # Stored naive, the time is UTC and reads back aware.
        assert (run.status, run.start_time, run.completion_time) == (
            "running", started.replace(tzinfo=timezone.utc), None
        )
        assert run.request == request
        assert (run.progress, run.completed_configs, run.total_configs, run.elapsed_time) == (0.25, 1, 4, 0.0)
        failures = failures_for_run(upgraded, "r-old", ResultRow)
        assert [f.status for f in failures] == ["skipped", "incompatible", "refused", "failed"]


def test_external_access_is_off_and_cannot_be_turned_back_on(tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    with Database(tmp_path / "b.duckdb") as db:
        with pytest.raises(duckdb.Error, match="disabled by configuration"):
            db.cursor().execute(f"SELECT * FROM read_csv('{secret}')").fetchall()
        with pytest.raises(duckdb.Error, match="locked"):
            db.cursor().execute("SET enable_external_access = true")


def test_second_process_gets_a_clear_locked_error_not_a_traceback(tmp_path):
    path = tmp_path / "b.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from storage.database import Database; d = Database({str(path)!r}); "
         "print('open', flush=True); import time; time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(DatabaseLockedError) as error:
            Database(path)
        message = str(error.value)
        assert f"process {holder.pid}" in message
        assert "--db-path" in message
    finally:
        holder.kill()
        holder.wait()


def test_failed_write_rolls_back_the_whole_transaction(tmp_path):
    with Database(tmp_path / "b.duckdb") as db:
        with pytest.raises(duckdb.Error):
            with db.writing() as cursor:
                cursor.execute("INSERT INTO models (model_name) VALUES ('kept-out')")
                cursor.execute("INSERT INTO models (model_name) VALUES (NULL)")
        assert db.cursor().execute("SELECT count(*) FROM models").fetchone()[0] == 0


def test_duckdb_threads_are_set_before_the_configuration_is_locked(tmp_path):
    """Settings.db_threads: DuckDB's threads for the whole database, fixed for its lifetime."""
    with Database(tmp_path / "b.duckdb", threads=1) as db:
        assert db.cursor().execute("SELECT current_setting('threads')").fetchone()[0] == 1
        with pytest.raises(duckdb.Error, match="locked"):
            db.cursor().execute("SET threads = 4")
    with Database(tmp_path / "c.duckdb") as db:  # default: DuckDB's own, one per core
        assert db.cursor().execute("SELECT current_setting('threads')").fetchone()[0] >= 1


def test_wal_is_checkpointed_every_128_mib_and_no_query_can_change_that(tmp_path):
    with Database(tmp_path / "b.duckdb") as db:
        cursor = db.cursor()
        assert cursor.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0] == "128.0 MiB"
        with pytest.raises(duckdb.Error, match="locked"):
            cursor.execute("SET checkpoint_threshold = '1GiB'")


def test_committed_writes_not_yet_checkpointed_survive_a_killed_process(tmp_path):
    """With checkpoints 128 MiB apart, committed rows live in the WAL for long: a process that
    dies without closing the file must lose none of them."""
    path = tmp_path / "b.duckdb"
    writer = subprocess.run(
        [sys.executable, "-c", f"from storage.database import Database; import os; d = Database({str(path)!r})\n"
         "for i in range(50):\n"
         "    with d.writing() as c: c.execute('INSERT INTO models (model_name) VALUES (?)', [f'm{i}'])\n"
         "os._exit(0)"],
        capture_output=True, text=True, timeout=120,
    )
    assert writer.returncode == 0, writer.stderr
    assert (tmp_path / "b.duckdb.wal").stat().st_size > 0  # nothing was checkpointed
    with Database(path) as db:
        assert db.cursor().execute("SELECT count(*) FROM models").fetchone()[0] == 50


def test_a_database_folder_that_cannot_be_made_says_which_part_is_in_the_way(tmp_path):
    from storage.database import DatabasePathError

    (tmp_path / "run1.out").write_text("")
    with pytest.raises(DatabasePathError) as error:
        Database(tmp_path / "run1.out" / "sub" / "x.duckdb")
    assert error.value.path == str(tmp_path / "run1.out" / "sub" / "x.duckdb")
    assert error.value.reason == f"{tmp_path / 'run1.out'} is a file, not a folder"
