"""A config's result and the run row that counts it are one transaction (issue 16): both are
stored with one commit, or neither is, so a crash between them cannot leave a result the run
does not count (a resume would skip it) or a count without its result."""

from datetime import UTC, datetime

import msgspec
import pytest

from storage.catalog import catalog_ids
from storage.database import Database
from storage.results import finished_config_keys, insert_results, record_failure
from storage.runs import RUN_COLUMNS
from test_catalog_cache import row

# A run row as storage.runs.save_run takes it: any Struct whose fields include RUN_COLUMNS.
RunRow = msgspec.defstruct("RunRow", [(column, object, None) for column in RUN_COLUMNS])


def run_row(**fields) -> msgspec.Struct:
    return RunRow(**{"run_id": "run-1", "status": "running", "created_at": datetime(2026, 12, 1, tzinfo=UTC),
                     "request": {}, "total_configs": 2, **fields})


def stored_run(db):
    return db.cursor().execute("SELECT status, completed_configs FROM test_runs WHERE run_id = 'run-1'").fetchall()


def test_a_result_and_its_run_row_are_stored_together(tmp_path):
    with Database(tmp_path / "r.duckdb") as db:
        insert_results(db, [row()], run=run_row(completed_configs=1))
        assert stored_run(db) == [("running", 1)]
        failed = row(batch_size=2) | {"is_compatible": False, "error_type": "oom"}
        record_failure(db, failed, run=run_row(completed_configs=2))
        assert stored_run(db) == [("running", 2)]
        assert finished_config_keys(db, "run-1") == {row()["config_key"], failed["config_key"]}


def test_a_run_row_that_cannot_be_stored_leaves_no_result_behind(tmp_path):
    with Database(tmp_path / "r.duckdb") as db:
        with pytest.raises(Exception, match="status"):  # test_runs.status is NOT NULL
            insert_results(db, [row()], run=run_row(status=None, completed_configs=1))
        with pytest.raises(Exception, match="status"):
            record_failure(db, row(batch_size=2) | {"is_compatible": False}, run=run_row(status=None))
        assert finished_config_keys(db, "run-1") == set()
        assert stored_run(db) == []
        assert catalog_ids(db)._known == {}  # the catalog rows rolled back with them, so no id is kept
