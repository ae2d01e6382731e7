"""Run one already-checked query in DuckDB's sandbox: a fresh cursor, a READ ONLY
transaction that is always rolled back, a time limit over the whole answer, a row cap,
a byte cap and a cell cap, and a small pool that bounds how many run at once.

The read-only transaction is the real boundary: whatever the parser-level guard in
storage.sql_guard misses, DuckDB itself refuses to write inside it.

The answer is bounded as a whole:
- time: one deadline covers waiting for a slot, planning, execution, fetching and the
  conversion to Python values. DuckDB is interrupted when it passes; the conversion
  checks it between columns. So an answer comes within the limit plus one bounded step.
- size: rows arrive as Arrow record batches, small ones, and are measured (Arrow bytes)
  before anything becomes a Python object. Cells over ``max_cell_bytes`` are cut
  (strings and blobs keep their start, other values become null), and the answer stops
  at ``row_cap`` rows or ``max_bytes`` bytes, whichever comes first. ``truncated`` and
  ``truncated_reason`` say so.
- concurrency: ``SqlPool`` lets at most ``size`` guarded queries run at once, on threads
  of its own, at the lowest OS priority; the next waits up to ``wait_s`` and is then
  refused with SqlBusy. Never on the threads other request handlers share.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from collections.abc import Callable
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from typing import Any, TypeVar

import anyio
import duckdb
import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_ROW_CAP = 10_000
DEFAULT_MAX_BYTES = 8_000_000  # the whole answer, in Arrow bytes
DEFAULT_MAX_CELL_BYTES = 1_000_000  # one value
DEFAULT_POOL_SIZE = 2
DEFAULT_POOL_WAIT_S = 1.0
# How long past its deadline a caller waits for a query that DuckDB is still finishing
# (inside one call interrupt() cannot stop) before answering QueryTimeout.
LATE_GRACE_S = 0.3
# Arrow bytes converted to Python in one call (which holds the GIL): measured, 8 MB of
# nested lists in one call stalled every other thread for 0.9 s.
CONVERT_BYTES = 256_000
# The SQL pool's threads' nice value (Linux), the lowest priority. With DuckDB's threads at 1
# (the server's default db_threads) DuckDB runs a query in the thread that asked for it, so
# the query, its fetching and its conversion all run at this priority. Interleaved A/B on 2
# cores, status p99 under the heaviest SQL (perf/README.md, session 4): db_threads=1 0.76 of
# DuckDB's default threads, db_threads=1 with nice 10 0.72, with nice 19 0.52; the answer's
# time bound held. (Nice 10 with DuckDB's own worker threads, which do not inherit it, made
# the status path slower: their work stayed at full priority.)
SQL_THREAD_NICENESS = 19
# Rows per Arrow batch: small, so one batch of wide rows stays small before it is measured.
BATCH_ROWS = 256
_SECONDS_PER_MONTH = 30 * 86_400  # as DuckDB counts a month when it converts an interval


class QueryTimeout(Exception):
    """The query ran past its time limit and was interrupted."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.reason = f"query interrupted after {timeout_s:g} s"
        super().__init__(self.reason)


class QueryFailed(Exception):
    """DuckDB rejected the query while binding or running it: an unknown column, a bad
    cast, a write attempted inside the read-only transaction, too much memory."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class SqlBusy(Exception):
    """Every slot of the SQL pool stayed taken for the whole wait; try again later."""

    def __init__(self, size: int, retry_after_s: float = DEFAULT_POOL_WAIT_S):
        self.size = size
        self.retry_after_s = retry_after_s
        queries = "query is" if size == 1 else "queries are"
        self.reason = f"{size} SQL {queries} already running: retry in {retry_after_s:g} s"
        super().__init__(self.reason)


# JSON has neither NaN nor infinity. An answer spells them as these strings, which Python's
# float() and JavaScript's Number() read back, rather than as null, which would make them
# look like SQL NULLs (and NaN, infinity and NULL alike).
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _spelled(number: float) -> str:
    return "NaN" if number != number else ("Infinity" if number > 0 else "-Infinity")


def numbers_for_charts(rows: list[list]) -> list[list]:
    """``rows`` with the spelled NaN and infinities as None in each column that otherwise holds
    only numbers (or nothing), as a chart takes them: no bar or point, as for NULL. ``rows``
    itself where no column has one."""
    if not rows or not rows[0]:
        return rows

    def spelled(value: Any) -> bool:
        return value.__class__ is str and value in NON_FINITE

    def number(value: Any) -> bool:
        return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))

    columns = [
        index for index in range(len(rows[0]))
        if any(spelled(row[index]) for row in rows) and all(spelled(row[index]) or number(row[index]) for row in rows)
    ]
    if not columns:
        return rows
    chartable = [list(row) for row in rows]
    for row in chartable:
        for index in columns:
            if spelled(row[index]):
                row[index] = None
    return chartable


class QueryResult(msgspec.Struct, kw_only=True):
    """One guarded query's answer, as the API returns it: NaN and infinities as the strings of
    NON_FINITE."""

    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    truncated_reason: str | None = None  # why rows or cells were cut; None when nothing was
    elapsed_ms: float


class SqlPool:
    """At most ``size`` guarded queries at once, each on one of the pool's own ``size``
    threads; the next waits up to ``wait_s`` for a slot, then gets SqlBusy.

    The threads are the pool's alone: never the loop's default executor, nor anyio's
    default limiter, which the status, results and page handlers share. They run at the
    lowest OS priority (SQL_THREAD_NICENESS), so those handlers preempt them; that pays
    only with DuckDB's threads at 1, where the query runs in the pool's thread (an earlier
    nice 10 with DuckDB's own workers at full priority made the handlers slower; see
    perf/README.md). With a ``deadline``, the caller gets its answer by then
    even while DuckDB is inside one call that interrupt() cannot stop; the slot stays
    taken until DuckDB has really stopped, so the bound holds.
    """

    def __init__(self, size: int = DEFAULT_POOL_SIZE, *, wait_s: float = DEFAULT_POOL_WAIT_S):
        if size < 1:
            raise ValueError("an SQL pool needs at least one slot")
        self.size = size
        self.wait_s = wait_s
        self._slots = threading.BoundedSemaphore(size)
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    def busy(self) -> SqlBusy:
        return SqlBusy(self.size, retry_after_s=self.wait_s)

    def resize(self, size: int) -> None:
        """``size`` slots from now on (the server's ``sql_pool_size``); only while no query runs."""
        if size < 1:
            raise ValueError("an SQL pool needs at least one slot")
        if size == self.size:
            return
        if not self.wait_idle(timeout_s=0):
            raise RuntimeError("the SQL pool is resized only while idle")
        with self._executor_lock:
            executor, self._executor = self._executor, None
            self.size, self._slots = size, threading.BoundedSemaphore(size)
        if executor is not None:
            executor.shutdown(wait=False)

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """Waits until no query holds a slot (one answered at its deadline may still be
        stopping); call before closing the database. False if one still runs."""
        give_up = time.monotonic() + timeout_s
        taken = 0
        try:
            while taken < self.size and self._slots.acquire(timeout=max(0.0, give_up - time.monotonic())):
                taken += 1
        finally:
            for _ in range(taken):
                self._slots.release()
        return taken == self.size

    def run(self, function: Callable[[], T], *, deadline: float | None = None,
            late: Callable[[], Exception] | None = None) -> T:
        """``function()`` in a slot, for a synchronous caller, which waits for it."""
        if not self._slots.acquire(timeout=self.wait_s):
            raise self.busy()
        future = self._submit(function)
        try:
            return future.result(timeout=None if deadline is None else _time_left(deadline) + LATE_GRACE_S)
        except FutureTimeout:
            raise _late(late) from None

    async def run_async(self, function: Callable[[], T], *, deadline: float | None = None,
                        late: Callable[[], Exception] | None = None) -> T:
        """``function()`` in a slot, waiting for the slot on the event loop, not on a thread."""
        give_up = time.monotonic() + self.wait_s
        while not self._slots.acquire(blocking=False):
            if time.monotonic() >= give_up:
                raise self.busy()
            await anyio.sleep(0.01)
        future = asyncio.wrap_future(self._submit(function))
        if deadline is None:
            return await future
        try:
            return await asyncio.wait_for(asyncio.shield(future), _time_left(deadline) + LATE_GRACE_S)
        except asyncio.TimeoutError:
            raise _late(late) from None

    def _submit(self, function: Callable[[], T]) -> Future:
        """Runs ``function`` on a pool thread; the slot (already taken) is given back when it ends."""

        def in_slot() -> T:
            try:
                return function()
            finally:
                self._slots.release()

        try:
            return self._threads().submit(in_slot)
        except BaseException:
            self._slots.release()
            raise

    def _threads(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.size, thread_name_prefix="benchboard-sql",
                                                    initializer=_lower_priority)
            return self._executor


def _lower_priority() -> None:
    """Runs first on each of the pool's threads: the lowest OS priority, nice 19, so the
    event loop and the status, results and page handlers preempt guarded SQL. Linux keeps a
    nice value per thread, and lowering one's own needs no privilege; elsewhere the value
    is the whole process's, so it is left alone."""
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, max(current, SQL_THREAD_NICENESS))
    except OSError:  # a sandbox that forbids it: the pool still works, at the usual priority
        pass


def _time_left(deadline: float) -> float:
    return max(0.0, deadline - time.perf_counter())


def _late(late: Callable[[], Exception] | None) -> Exception:
    return late() if late is not None else TimeoutError("past the deadline")


SQL_POOL = SqlPool()
"""The process's pool for guarded SQL: the API, the SQL page and the CLI share it."""


def execute_read_only(
    connection,
    sql: str,
    *,
    params: dict[str, Any] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    row_cap: int = DEFAULT_ROW_CAP,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_cell_bytes: int = DEFAULT_MAX_CELL_BYTES,
    check_plan: Callable[[QueryPlan], None] | None = None,
    started: float | None = None,
) -> QueryResult:
    """Run ``sql`` on a fresh cursor of ``connection`` (a DuckDB connection or anything
    with ``.cursor()``) inside ``BEGIN TRANSACTION READ ONLY``, then roll back.

    ``check_plan`` is given what DuckDB binds the query to (a QueryPlan) before it runs,
    and may raise to refuse it. ``started`` is the
    ``time.perf_counter()`` at which the time limit began (default: now).
    """
    started = time.perf_counter() if started is None else started
    cursor = connection.cursor()
    try:
        cursor.execute("BEGIN TRANSACTION READ ONLY")
        try:
            return _answer(cursor, sql, params, timeout_s, started, check_plan,
                           _Caps(row_cap, max_bytes, max_cell_bytes))
        finally:
            cursor.execute("ROLLBACK")
    finally:
        cursor.close()


class _Caps(msgspec.Struct, frozen=True):
    rows: int
    bytes: int
    cell_bytes: int


def _answer(cursor, sql, params, timeout_s, started, check_plan, caps: _Caps) -> QueryResult:
    deadline = _Deadline(cursor, started + timeout_s)
    try:
        with deadline:
            if check_plan is not None:
                check_plan(QueryPlan(cursor, sql, params))
            relation = cursor.sql(sql, params=params or None)
            if relation is None:  # a statement with no rows (only reachable without the guard)
                columns, collected = [], _Collected(caps, deadline, timeout_s)
            else:
                columns = list(relation.columns)
                collected = _collect(relation, caps, deadline, timeout_s)
    except duckdb.InterruptException:
        raise _interrupted(deadline, timeout_s) from None
    except (duckdb.Error, pa.ArrowException) as error:
        if deadline.fired:
            raise QueryTimeout(timeout_s) from None
        raise QueryFailed(_first_line(str(error))) from None
    rows = collected.rows
    return QueryResult(
        columns=columns,
        rows=rows,
        row_count=len(rows),
        truncated=bool(collected.reasons),
        truncated_reason="; ".join(collected.reasons) or None,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
    )


def _interrupted(deadline: _Deadline, timeout_s: float) -> Exception:
    if deadline.fired:
        return QueryTimeout(timeout_s)
    return QueryFailed("query was interrupted (the server is shutting down?)")


class QueryPlan:
    """What DuckDB binds ``sql`` to, read before it runs, for a check to judge.

    ``logical()`` is the binder's plan before any optimisation (json_serialize_plan), so
    a scan the optimiser later answers from statistics, such as count(*), still shows;
    None where DuckDB cannot serialise one (a PIVOT statement, a parameter whose type
    only its value gives). ``physical()`` is EXPLAIN's plan, with the parameters bound.
    """

    def __init__(self, cursor, sql: str, params: dict | None):
        self._cursor = cursor
        self._sql = sql
        self._params = params or None

    @property
    def database(self) -> str:
        return self._cursor.execute("SELECT current_database()").fetchall()[0][0]

    def logical(self, sql: str | None = None) -> dict | None:
        """The binder's plan of ``sql`` (default: the query itself)."""
        text = self._cursor.execute("SELECT json_serialize_plan($sql)", {"sql": sql or self._sql}).fetchall()[0][0]
        plan = json.loads(text)
        return None if plan.get("error") else plan

    def physical(self) -> list[dict]:
        rows = self._cursor.execute(f"EXPLAIN (FORMAT json) {self._sql}", self._params).fetchall()
        return [node for _, plan in rows for node in json.loads(plan)]


def _collect(relation, caps: _Caps, deadline: _Deadline, timeout_s: float) -> _Collected:
    collected = _Collected(caps, deadline, timeout_s)
    reader = relation.to_arrow_reader(BATCH_ROWS)
    try:
        for batch in reader:
            if not collected.add(batch):
                break
    except OSError as error:
        # Past the first batch, DuckDB's errors reach us through Arrow's C stream as a plain
        # OSError ("INTERRUPT Error: Interrupted!" when the time limit lands there, a 500 before).
        raise _duckdb_error(error) from None
    finally:
        reader.close()  # before the ROLLBACK: a partly read reader holds the cursor
    return collected


def _duckdb_error(error: OSError) -> duckdb.Error:
    text = str(error)
    return duckdb.InterruptException(text) if text.startswith("INTERRUPT Error") else duckdb.Error(text)


class _Collected:
    """The rows taken from the reader within the caps, already JSON-ready, and why any were cut.

    Each batch is measured in Arrow, cut to what fits, and only then converted, so a huge
    value is never turned into Python objects and no batch is held longer than needed.
    """

    def __init__(self, caps: _Caps, deadline: _Deadline, timeout_s: float):
        self.caps = caps
        self.rows: list[list] = []
        self.bytes = 0
        self._deadline = deadline
        self._timeout_s = timeout_s
        self._cut_columns: set[str] = set()
        self._stopped: str | None = None

    @property
    def reasons(self) -> list[str]:
        reasons = []
        if self._cut_columns:
            names = ", ".join(sorted(self._cut_columns))
            reasons.append(f"values over {self.caps.cell_bytes:,} bytes were cut (column {names}): "
                           "strings and blobs keep their start, other values are null")
        if self._stopped:
            reasons.append(self._stopped)
        return reasons

    def add(self, batch: pa.RecordBatch) -> bool:
        """Takes what fits of ``batch``; False once nothing more may be taken."""
        if batch.num_rows == 0:
            return True
        if len(self.rows) >= self.caps.rows:
            self._stopped = f"more than {self.caps.rows:,} rows: only the first {self.caps.rows:,} are returned"
            return False
        room_rows = self.caps.rows - len(self.rows)
        if batch.num_rows > room_rows:
            self._take_within_bytes(batch.slice(0, room_rows))
            if not self._stopped:
                self._stopped = f"more than {self.caps.rows:,} rows: only the first {self.caps.rows:,} are returned"
            return False
        return self._take_within_bytes(batch)

    def _take_within_bytes(self, batch: pa.RecordBatch) -> bool:
        sizes = cut = None
        if batch.nbytes > self.caps.cell_bytes:  # only then may one value be over the cell cap
            sizes = np.column_stack([_value_sizes(column) for column in batch.columns])
            over = sizes > self.caps.cell_bytes
            if over.any():
                cut = over
                sizes = np.minimum(sizes, self.caps.cell_bytes)
                self._cut_columns.update(batch.schema.names[i] for i in np.flatnonzero(over.any(axis=0)))
        room = self.caps.bytes - self.bytes
        total = int(sizes.sum()) if sizes is not None else batch.nbytes
        if total <= room:
            self._take(batch, cut, total)
            return True
        if sizes is None:
            sizes = np.column_stack([_value_sizes(column) for column in batch.columns])
        fits = int(np.searchsorted(np.cumsum(sizes.sum(axis=1)), room, side="right"))
        self._take(batch.slice(0, fits), None if cut is None else cut[:fits], int(sizes[:fits].sum()))
        self._stopped = (f"the answer is over {self.caps.bytes:,} bytes: "
                         f"only the first {len(self.rows):,} rows are returned")
        return False

    def _take(self, batch: pa.RecordBatch, cut: np.ndarray | None, size: int) -> None:
        """Converts ``batch`` to JSON-ready rows, a slice of at most about CONVERT_BYTES at a
        time: one conversion call holds the GIL throughout, and the event loop waits."""
        self.bytes += size
        if batch.num_rows == 0:
            return
        if batch.num_columns == 0:
            self.rows.extend([] for _ in range(batch.num_rows))
            return
        step = max(1, int(batch.num_rows * CONVERT_BYTES / max(batch.nbytes, 1)))
        for start in range(0, batch.num_rows, step):
            part = batch.slice(start, step)
            columns = []
            for index, column in enumerate(part.columns):
                if self._deadline.passed():
                    raise QueryTimeout(self._timeout_s)
                part_cut = None if cut is None else cut[start:start + step, index]
                columns.append(_python_values(column, part_cut, self.caps.cell_bytes))
            self.rows.extend(map(list, zip(*columns, strict=True)))
            time.sleep(0)  # let the event loop and the other threads in between slices


def _value_sizes(array: pa.Array) -> np.ndarray:
    """Approximate Arrow bytes of each value of ``array`` (int64 per row), without converting
    anything to Python: fixed widths, string lengths, and lists summed over their children."""
    kind = array.type
    count = len(array)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if pa.types.is_null(kind):
        return np.zeros(count, dtype=np.int64)
    if pa.types.is_boolean(kind):
        return np.ones(count, dtype=np.int64)
    if pa.types.is_dictionary(kind):
        sizes = _value_sizes(array.dictionary)
        indices = array.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        return sizes[indices] + kind.index_type.byte_width
    if (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind) or pa.types.is_string_view(kind) or pa.types.is_binary_view(kind)):
        lengths = pc.binary_length(array).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        return lengths + 8
    if pa.types.is_fixed_size_binary(kind):
        return np.full(count, kind.byte_width, dtype=np.int64)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind):
        offsets = array.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        width = _fixed_width(array.values.type)
        if width is not None:  # no need to measure each element (a map of a million entries)
            return (offsets[1:] - offsets[:-1]) * width + 8
        child = np.concatenate([[0], np.cumsum(_value_sizes(array.values))])
        return child[offsets[1:]] - child[offsets[:-1]] + 8
    if pa.types.is_fixed_size_list(kind):
        width = kind.list_size
        element = _fixed_width(kind.value_type)
        if element is not None:
            return np.full(count, width * element, dtype=np.int64)
        child = np.concatenate([[0], np.cumsum(_value_sizes(array.values))])
        starts = (np.arange(count, dtype=np.int64) + array.offset) * width
        return child[starts + width] - child[starts]
    if pa.types.is_struct(kind):
        sizes = np.zeros(count, dtype=np.int64)
        for field in array.flatten():
            sizes += _value_sizes(field)
        return sizes
    try:
        return np.full(count, kind.byte_width, dtype=np.int64)
    except ValueError:  # a type without a fixed width this does not know: measure each value
        return np.array([array.slice(i, 1).nbytes for i in range(count)], dtype=np.int64)


def _fixed_width(kind: pa.DataType) -> int | None:
    """Bytes of every value of ``kind`` when they are all the same size, else None."""
    if pa.types.is_boolean(kind):
        return 1
    if pa.types.is_struct(kind):
        widths = [_fixed_width(kind.field(i).type) for i in range(kind.num_fields)]
        return None if None in widths else sum(widths)
    if pa.types.is_fixed_size_list(kind):
        width = _fixed_width(kind.value_type)
        return None if width is None else width * kind.list_size
    if pa.types.is_dictionary(kind) or pa.types.is_union(kind):
        return None
    try:
        return kind.byte_width
    except ValueError:
        return None


def _python_values(array: pa.Array, cut: np.ndarray | None, cell_bytes: int) -> list:
    """The JSON-ready values of ``array``; ``cut`` marks the values over the cell cap."""
    if cut is None or not cut.any():
        return _convert(array)
    values: list = [None] * len(array)
    keep = np.flatnonzero(~cut)
    for index, value in zip(keep, _convert(array.take(pa.array(keep))), strict=True):
        values[index] = value
    over = np.flatnonzero(cut)
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        # The first cell_bytes bytes, less a character the cut would split.
        starts = pc.binary_slice(array.take(pa.array(over)).cast(pa.large_binary()), 0, cell_bytes)
        cut_values = [None if raw is None else raw.decode("utf-8", "ignore") for raw in starts.to_pylist()]
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        # Hex doubles a blob's length in the answer.
        cut_values = _convert(pc.binary_slice(array.take(pa.array(over)), 0, cell_bytes // 2))
    else:
        return values  # other values over the cap stay null
    for index, value in zip(over, cut_values, strict=True):
        values[index] = value
    return values


_PLAIN = (pa.types.is_integer, pa.types.is_boolean, pa.types.is_string, pa.types.is_large_string,
          pa.types.is_string_view, pa.types.is_null)


def _convert(array: pa.Array) -> list:
    try:
        values = array.to_pylist(maps_as_pydicts="lossy")
    except (pa.ArrowException, ValueError, OverflowError):
        values = [_scalar_value(scalar) for scalar in array]  # e.g. 'infinity' timestamps
    if _json_ready(array):
        return values
    return [json_value(value) for value in values]


def _json_ready(array: pa.Array) -> bool:
    """Whether every value of ``array`` is JSON-ready as to_pylist gives it, so json_value
    need not walk them: integers, booleans, strings, finite floats, and lists and structs
    of those. Walking a million list elements in Python took seconds and held the GIL
    most of that time; this is a few Arrow calls."""
    kind = array.type
    if any(check(kind) for check in _PLAIN):
        return True
    if pa.types.is_floating(kind):  # NaN and infinity become strings (NON_FINITE)
        return len(array) == array.null_count or pc.all(pc.is_finite(array)).as_py() is not False
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _json_ready(array.flatten())
    if pa.types.is_struct(kind):
        return all(_json_ready(field) for field in array.flatten())
    return False


def _scalar_value(scalar: pa.Scalar) -> Any:
    try:
        return scalar.as_py(maps_as_pydicts="lossy")
    except (pa.ArrowException, ValueError, OverflowError):
        return str(scalar)


def json_value(value: Any) -> Any:
    """A DuckDB value as something JSON can carry: times as ISO 8601, decimals as floats
    (whole ones, HUGEINT included, as integers), intervals as seconds, blobs as hex,
    NaN/infinity as "NaN", "Infinity", "-Infinity" (JSON has neither; NON_FINITE)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value() and value.as_tuple().exponent == 0:
            return int(value)
        number = float(value)
        return number if math.isfinite(number) else _spelled(number)
    if isinstance(value, float):
        return value if math.isfinite(value) else _spelled(value)
    if isinstance(value, (datetime, date, time_of_day)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, pa.MonthDayNano):
        return value.months * _SECONDS_PER_MONTH + value.days * 86_400 + value.nanoseconds / 1e9
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)  # UUID and any other scalar DuckDB hands back


class _Deadline:
    """Interrupts the cursor at ``deadline`` (a perf_counter time), unless the work in the
    ``with`` block finished first.

    The lock makes "finished" and "interrupt" mutually exclusive, so a timer that
    fires late can never interrupt the ROLLBACK that follows.
    """

    def __init__(self, cursor, deadline: float):
        self._cursor = cursor
        self._deadline = deadline
        self._lock = threading.Lock()
        self._finished = False
        self.fired = False
        self._timer = threading.Timer(max(0.0, deadline - time.perf_counter()), self._fire)
        self._timer.daemon = True

    def passed(self) -> bool:
        return time.perf_counter() >= self._deadline

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


def _first_line(message: str) -> str:
    # DuckDB appends a "LINE 1: ..." excerpt of the regenerated SQL, which is not what
    # the user typed; the first line names the problem on its own.
    return message.strip().splitlines()[0]
