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
Row = TypeVar("Row")


def save_run(db: Database, record: msgspec.Struct) -> None:
    """Insert or update a run from a Struct whose fields include RUN_COLUMNS."""
    with db.writing() as cursor:
        write_run(cursor, record)


def write_run(cursor: duckdb.DuckDBPyConnection, record: msgspec.Struct) -> None:
    """save_run's upsert inside the caller's transaction (``Database.writing``): a config's
    result and the run's row that counts it commit together (storage.results)."""
    values = {column: stored(getattr(record, column)) for column in RUN_COLUMNS}
    for column in JSON_COLUMNS:
        values[column] = msgspec.json.encode(values[column]).decode()
    assignments = ", ".join(
        f"{column} = excluded.{column}" for column in RUN_COLUMNS if column not in ("run_id", "created_at")
    )
    placeholders = ", ".join(f"${column}" for column in RUN_COLUMNS)
    cursor.execute(
        f"INSERT INTO test_runs ({', '.join(RUN_COLUMNS)}) VALUES ({placeholders}) "
        f"ON CONFLICT (run_id) DO UPDATE SET {assignments}",
        values,
    )


def _decode(row: tuple, as_type: type[Row]) -> Row:
    run = read_back(dict(zip(READ_COLUMNS, row, strict=True)))
    for column in JSON_COLUMNS:
        run[column] = msgspec.json.decode(run[column]) if run[column] is not None else None
    if run["environment"] is None:
        del run["environment"]
    return msgspec.convert(run, as_type)


def get_run(db: Database, run_id: str, as_type: type[Row]) -> Row | None:
    row = db.cursor().execute(
        f"SELECT {', '.join(READ_COLUMNS)} FROM test_runs WHERE run_id = ?", [run_id]
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
        f"SELECT {', '.join(READ_COLUMNS)} FROM test_runs {where} "
        "ORDER BY created_at DESC, test_run_id DESC LIMIT $limit OFFSET $offset",
        params,
    ).fetchall()
    return [_decode(row, as_type) for row in rows]


def set_report_error(db: Database, run_id: str, error: str | None) -> None:
    """Record why a run's report files could not be written; None once they have been."""
    with db.writing() as cursor:
        cursor.execute("UPDATE test_runs SET report_error = ? WHERE run_id = ?", [error, run_id])


def count_runs(db: Database) -> int:
    return db.cursor().execute("SELECT count(*) FROM test_runs").fetchone()[0]
