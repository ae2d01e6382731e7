import subprocess
import sys

import duckdb
import pytest

from storage.database import Database, DatabaseLockedError
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
