"""Run one already-checked query in DuckDB's sandbox: a fresh cursor, a READ ONLY
transaction that is always rolled back, a time limit and a row cap.

The read-only transaction is the real boundary: whatever the parser-level guard in
storage.sql_guard misses, DuckDB itself refuses to write inside it.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from typing import Any

import duckdb


class QueryTimeout(Exception):
    """The query ran past its time limit and was interrupted."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.reason = f"query interrupted after {timeout_s:g} s"
        super().__init__(self.reason)


class QueryFailed(Exception):
    """DuckDB rejected the query while binding or running it: an unknown column, a bad
    cast, a write attempted inside the read-only transaction."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[list]
    row_count: int
    truncated: bool
    elapsed_ms: float

    def to_dict(self) -> dict:
        return {
            "columns": self.columns,
            "rows": self.rows,
            "row_count": self.row_count,
            "truncated": self.truncated,
            "elapsed_ms": self.elapsed_ms,
        }


def execute_read_only(
    connection,
    sql: str,
    *,
    params: dict[str, Any] | None = None,
    timeout_s: float = 5.0,
    row_cap: int = 10_000,
) -> QueryResult:
    """Run ``sql`` on a fresh cursor of ``connection`` (a DuckDB connection or anything
    with ``.cursor()``) inside ``BEGIN TRANSACTION READ ONLY``, then roll back.

    Fetches ``row_cap + 1`` rows so that ``truncated`` says whether more existed.
    """
    cursor = connection.cursor()
    try:
        cursor.execute("BEGIN TRANSACTION READ ONLY")
        try:
            return _fetch_capped(cursor, sql, params, timeout_s, row_cap)
        finally:
            cursor.execute("ROLLBACK")
    finally:
        cursor.close()


def _fetch_capped(cursor, sql: str, params: dict | None, timeout_s: float, row_cap: int) -> QueryResult:
    started = time.perf_counter()
    deadline = _Deadline(cursor, timeout_s)
    try:
        with deadline:
            if params:
                cursor.execute(sql, params)
            else:
                cursor.execute(sql)
            columns = [description[0] for description in cursor.description or []]
            fetched = cursor.fetchmany(row_cap + 1)
    except duckdb.InterruptException:
        if deadline.fired:
            raise QueryTimeout(timeout_s) from None
        raise QueryFailed("query was interrupted (the server is shutting down?)") from None
    except duckdb.Error as error:
        raise QueryFailed(_first_line(str(error))) from None
    elapsed_ms = (time.perf_counter() - started) * 1000
    rows = [[json_value(value) for value in row] for row in fetched[:row_cap]]
    return QueryResult(
        columns=columns,
        rows=rows,
        row_count=len(rows),
        truncated=len(fetched) > row_cap,
        elapsed_ms=round(elapsed_ms, 3),
    )


class _Deadline:
    """Interrupts the cursor once ``timeout_s`` has passed, unless the query finished first.

    The lock makes "finished" and "interrupt" mutually exclusive, so a timer that
    fires late can never interrupt the ROLLBACK that follows.
    """

    def __init__(self, cursor, timeout_s: float):
        self._cursor = cursor
        self._lock = threading.Lock()
        self._finished = False
        self.fired = False
        self._timer = threading.Timer(timeout_s, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        with self._lock:
            self._finished = True
        self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.fired = True
            self._cursor.interrupt()


def json_value(value: Any) -> Any:
    """A DuckDB value as something JSON can carry: times as ISO 8601, decimals as floats,
    intervals as seconds, blobs as hex, NaN/infinity as null (JSON has neither)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, (float, Decimal)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, (datetime, date, time_of_day)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)  # UUID and any other scalar DuckDB hands back


def _first_line(message: str) -> str:
    # DuckDB appends a "LINE 1: ..." excerpt of the regenerated SQL, which is not what
    # the user typed; the first line names the problem on its own.
    return message.strip().splitlines()[0]
