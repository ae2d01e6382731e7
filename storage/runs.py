"""Rows of test_runs: a run's request, status, progress, timestamps and environment."""

from __future__ import annotations

import json
from datetime import datetime

from storage.database import Database

RUN_COLUMNS = (
    "run_id", "status", "priority", "request", "total_configs", "completed_configs",
    "current_step", "error", "environment", "fingerprint", "total_models", "completed_models", "created_at", "started_at", "completed_at",
)
ACTIVE_STATUSES = ("queued", "running")


def save_run(db: Database, run: dict) -> None:
    """Insert or update a run; ``run`` holds any of RUN_COLUMNS, ``run_id`` and ``status`` always."""
    values = {column: run.get(column) for column in RUN_COLUMNS}
    for column in ("request", "environment"):
        if values[column] is not None:
            values[column] = json.dumps(values[column], default=str)
    values["created_at"] = values["created_at"] or datetime.now()
    assignments = ", ".join(
        f"{column} = excluded.{column}" for column in RUN_COLUMNS if column not in ("run_id", "created_at")
    )
    placeholders = ", ".join(f"${column}" for column in RUN_COLUMNS)
    with db.writing() as cursor:
        cursor.execute(
            f"INSERT INTO test_runs ({', '.join(RUN_COLUMNS)}) VALUES ({placeholders}) "
            f"ON CONFLICT (run_id) DO UPDATE SET {assignments}",
            values,
        )


def _decode(row: tuple) -> dict:
    run = dict(zip(RUN_COLUMNS, row, strict=True))
    for column in ("request", "environment"):
        if run[column] is not None:
            run[column] = json.loads(run[column])
    return run


def get_run(db: Database, run_id: str) -> dict | None:
    row = db.cursor().execute(
        f"SELECT {', '.join(RUN_COLUMNS)} FROM test_runs WHERE run_id = ?", [run_id]
    ).fetchone()
    return _decode(row) if row else None


def list_runs(db: Database, *, statuses: tuple[str, ...] | None = None, limit: int = 100, offset: int = 0) -> list[dict]:
    where = "WHERE list_contains($statuses, status)" if statuses else ""
    params: dict = {"limit": limit, "offset": offset}
    if statuses:
        params["statuses"] = list(statuses)
    rows = db.cursor().execute(
        f"SELECT {', '.join(RUN_COLUMNS)} FROM test_runs {where} "
        "ORDER BY created_at DESC, test_run_id DESC LIMIT $limit OFFSET $offset",
        params,
    ).fetchall()
    return [_decode(row) for row in rows]


def count_runs(db: Database) -> int:
    return db.cursor().execute("SELECT count(*) FROM test_runs").fetchone()[0]
