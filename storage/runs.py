"""Rows of test_runs: a run's status, request and environment.

A row is written from the caller's Struct (its fields are the columns) and read back
with ``msgspec.convert`` into the type the caller names, so storage needs no engine import.
"""

from __future__ import annotations

from typing import TypeVar

import duckdb
import msgspec

from storage.database import Database
from storage.timestamps import read_back, stored

RUN_COLUMNS = (
    "run_id", "status", "priority", "progress", "current_step", "start_time", "elapsed_time",
    "estimated_remaining_time", "completed_models", "total_models", "error", "completed_configs",
    "total_configs", "created_at", "completion_time", "request", "environment", "fingerprint",
)
# Read back with the run, written only by set_report_error: a run's upserts never clear it.
READ_COLUMNS = (*RUN_COLUMNS, "report_error")
JSON_COLUMNS = ("request", "environment")
ACTIVE_STATUSES = ("queued", "running")
# The status columns schema v3 added, read as its migration filled them in where a row holds
# NULL: the server always writes them, but a row another writer left without them (an INSERT
# naming only run_id and status) must read back as a run, not fail every page that lists runs.
_FILLED_IN = {
    "progress": "coalesce(progress, CASE WHEN coalesce(total_configs, 0) = 0 THEN 1.0 "
    "ELSE coalesce(completed_configs, 0) / total_configs END)",
    "elapsed_time": "coalesce(elapsed_time, CASE WHEN start_time IS NULL THEN 0.0 "
    "ELSE epoch(coalesce(completion_time, start_time) - start_time) END)",
    **{column: f"coalesce({column}, 0)" for column in (
        "completed_models", "total_models", "completed_configs", "total_configs",
    )},
}
_SELECTED = ", ".join(_FILLED_IN.get(column, column) for column in READ_COLUMNS)
Row = TypeVar("Row")


def save_run(db: Database, record: msgspec.Struct) -> None:
    """Insert or update a run from a Struct whose fields include RUN_COLUMNS."""
    with db.writing(runs_only=True) as cursor:
        write_run(cursor, record)


# What a saved run may change: all but its identity and when it was made.
_UPDATED_COLUMNS = tuple(column for column in RUN_COLUMNS if column not in ("run_id", "created_at"))
_UPDATE_RUN = (
    f"UPDATE test_runs SET {', '.join(f'{column} = ${column}' for column in _UPDATED_COLUMNS)} WHERE run_id = $run_id"
)
_INSERT_RUN = (
    f"INSERT INTO test_runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join(f'${column}' for column in RUN_COLUMNS)})"
)


def write_run(cursor: duckdb.DuckDBPyConnection, record: msgspec.Struct) -> None:
    """save_run inside the caller's transaction (``Database.writing``): a config's result and
    the run's row that counts it commit together (storage.results).

    An UPDATE, and an INSERT only when no row was there: a run is saved many times (each
    config, each step) and DuckDB's ``INSERT ... ON CONFLICT DO UPDATE`` took three times
    as long as the UPDATE (perf/ingest.py, issue 16). The write lock the caller holds and
    the one read-write process of a DuckDB file leave no one to insert between the two.
    """
    values = {column: stored(getattr(record, column)) for column in RUN_COLUMNS}
    for column in JSON_COLUMNS:
        values[column] = msgspec.json.encode(values[column]).decode()
    updated = cursor.execute(_UPDATE_RUN, {column: values[column] for column in ("run_id", *_UPDATED_COLUMNS)})
    if updated.fetchone()[0] == 0:
        cursor.execute(_INSERT_RUN, values)


def _decode(row: tuple, as_type: type[Row]) -> Row:
    run = read_back(dict(zip(READ_COLUMNS, row, strict=True)))
    for column in JSON_COLUMNS:
        run[column] = msgspec.json.decode(run[column]) if run[column] is not None else None
    if run["environment"] is None:
        del run["environment"]
    return msgspec.convert(run, as_type)


def get_run(db: Database, run_id: str, as_type: type[Row]) -> Row | None:
    row = db.cursor().execute(
        f"SELECT {_SELECTED} FROM test_runs WHERE run_id = ?", [run_id]
    ).fetchone()
    return _decode(row, as_type) if row else None


def list_runs(
    db: Database, as_type: type[Row], *, statuses: tuple[str, ...] | None = None, limit: int = 100, offset: int = 0
) -> list[Row]:
    where = "WHERE list_contains($statuses, status)" if statuses else ""
    params: dict = {"limit": limit, "offset": offset}
    if statuses:
        params["statuses"] = list(statuses)
    rows = db.cursor().execute(
        f"SELECT {_SELECTED} FROM test_runs {where} "
        "ORDER BY created_at DESC, test_run_id DESC LIMIT $limit OFFSET $offset",
        params,
    ).fetchall()
    return [_decode(row, as_type) for row in rows]


def set_report_error(db: Database, run_id: str, error: str | None) -> None:
    """Record why a run's report files could not be written; None once they have been."""
    with db.writing(runs_only=True) as cursor:
        cursor.execute("UPDATE test_runs SET report_error = ? WHERE run_id = ?", [error, run_id])


def count_runs(db: Database) -> int:
    return db.cursor().execute("SELECT count(*) FROM test_runs").fetchone()[0]
