"""Guarded SQL runs at the lowest OS priority, so the status and page handlers preempt it:
the SQL pool's threads lower their own nice value (Linux keeps one per thread), and with
DuckDB's threads at 1, the server's default, DuckDB executes the query in that thread."""

import os
import sys
import threading

import pytest

from storage.database import Database
from storage.sql_execution import SQL_THREAD_NICENESS, SqlPool, execute_read_only
from webapp.wiring.settings import Settings

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_the_sql_pools_threads_run_at_the_lowest_priority_and_the_caller_keeps_its_own():
    before = nice_of_this_thread()
    pool = SqlPool(2, wait_s=0.1)

    in_pool = pool.run(nice_of_this_thread)

    assert in_pool == max(before, SQL_THREAD_NICENESS) == 19
    assert nice_of_this_thread() == before  # only the pool's threads were lowered


def test_a_guarded_query_executes_inside_duckdb_at_the_pools_priority_with_the_servers_duckdb_threads():
    db = Database(threads=Settings().db_threads)
    seen: set[tuple[int, int]] = set()

    def probe(value: int) -> int:  # called by DuckDB while it executes the query
        seen.add((threading.get_native_id(), nice_of_this_thread()))
        return value

    db._connection.create_function("probe", probe, ["BIGINT"], "BIGINT")
    try:
        # At nice 19 on a machine whose cores other processes keep busy, the query gets about 1.5%
        # of a core: a minute, not the 5 s default, so the limit never decides this test.
        result = SqlPool(1, wait_s=0.1).run(
            lambda: execute_read_only(db, "SELECT sum(probe(i)) AS total FROM range(10000) t(i)", timeout_s=60))
    finally:
        db.close()

    assert result.rows == [[sum(range(10000))]]
    assert seen and {nice for _, nice in seen} == {SQL_THREAD_NICENESS}
