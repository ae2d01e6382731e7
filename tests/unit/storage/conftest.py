"""Guarded SQL in these tests runs at the test process's own priority, except in
test_sql_priority.py, which checks that the SQL pool's threads lower themselves to nice 19.

That priority is so a server's handlers preempt guarded SQL. On a 2-core CI machine whose
cores are both kept busy at nice 0 (the other test process, a spinner), a nice-19 thread
gets about 1.5% of a core: a query that takes milliseconds runs past its 5 s limit, and an
interrupted one holds its pool slot for many seconds after its caller was answered, so the
next test's queries are refused as busy. These tests check what the guard answers and when,
not the priority, so they do not race other processes for a share of a core.
"""

import pytest

from storage import sql_execution


@pytest.fixture(autouse=True)
def guarded_sql_at_the_tests_priority(request, monkeypatch):
    if request.module.__name__.endswith("test_sql_priority"):
        yield
        return
    monkeypatch.setattr(sql_execution, "_lower_priority", lambda: None)
    # An earlier test (an in-process server's) may have started the process pool's threads at
    # nice 19, and raising a thread back needs privilege; resizing an idle pool drops its threads,
    # so the next query starts fresh ones at this priority.
    pool = sql_execution.SQL_POOL
    assert pool.wait_idle(), "an earlier guarded query never gave its slot back"
    size = pool.size
    pool.resize(size + 1)
    pool.resize(size)
    yield
