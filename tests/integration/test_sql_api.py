"""POST /api/benchmark/sql on a real server: a runaway query is cut off at the time limit
without stalling anyone else, parameters are bound rather than spliced in, the row cap
flags truncation, a huge answer is cut within the time limit, and past the SQL pool's
slots a query gets 429 with Retry-After."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.integration.server import start_server

SQL_TIMEOUT_S = 0.5
ROW_CAP = 5
# Counts to a billion one row at a time: minutes of work, with no data needed to make it slow.
RUNAWAY_QUERY = (
    "WITH RECURSIVE counter(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM counter WHERE n < 1000000000) "
    "SELECT count(*) FROM counter"
)
# The interrupt lands within milliseconds of the limit; the rest is slack for a busy 2-core machine.
PROMPT_ANSWER_S = 3.0
# A sanity bound on a cheap request while a runaway query is in flight, generous for a loaded
# 2-core machine; that it was answered *during* a runaway query is what the tests assert.
CHEAP_ANSWER_S = 5.0
RUNAWAY_QUERIES_IN_A_ROW = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with start_server(tmp_path_factory.mktemp("sql-server"), sql_timeout_s=SQL_TIMEOUT_S,
                      sql_row_cap=ROW_CAP) as running:
        yield running


@pytest.fixture
def client(server):
    # The long timeout is for the connection on a busy machine; the tests time what they care about.
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        yield http


def post_sql(client, sql: str, params: dict | None = None) -> httpx.Response:
    body = {"sql": sql} if params is None else {"sql": sql, "params": params}
    return client.post("/api/benchmark/sql", json=body)


def timed(call) -> tuple[float, float, httpx.Response]:
    started = time.monotonic()
    reply = call()
    return started, time.monotonic(), reply


def test_a_runaway_query_is_interrupted_at_the_time_limit(client):
    started, ended, reply = timed(lambda: post_sql(client, RUNAWAY_QUERY))

    assert reply.status_code == 400, reply.text
    assert reply.json() == {"error": "query timed out", "reason": "query interrupted after 0.5 s", "field": "sql"}
    assert SQL_TIMEOUT_S <= ended - started < PROMPT_ANSWER_S
    # The interrupted query's cursor and read-only transaction are gone: the next query runs.
    assert post_sql(client, "SELECT count(*) AS n FROM models").status_code == 200


def test_the_server_keeps_answering_while_runaway_queries_run(server):
    runaway: list[tuple[float, float, httpx.Response]] = []
    probes: list[tuple[str, float, float, httpx.Response]] = []
    first_runaway_sent = threading.Event()

    def run_runaway_queries():
        with httpx.Client(base_url=server.url, timeout=30.0) as http:
            for _ in range(RUNAWAY_QUERIES_IN_A_ROW):
                first_runaway_sent.set()
                runaway.append(timed(lambda: post_sql(http, RUNAWAY_QUERY)))

    def probe_until_runaway_queries_end(runaway_thread: threading.Thread):
        requests = {
            "hardware": lambda http: http.get("/api/benchmark/hardware"),
            "sql": lambda http: post_sql(http, "SELECT $n + 1 AS answer", {"n": 41}),
        }
        with httpx.Client(base_url=server.url, timeout=30.0) as http:
            while runaway_thread.is_alive():
                for name, request in requests.items():
                    probes.append((name, *timed(lambda: request(http))))

    runaway_thread = threading.Thread(target=run_runaway_queries)
    runaway_thread.start()
    first_runaway_sent.wait(timeout=10)
    probe_thread = threading.Thread(target=probe_until_runaway_queries_end, args=(runaway_thread,))
    probe_thread.start()
    runaway_thread.join(timeout=60)
    probe_thread.join(timeout=60)

    for started, ended, reply in runaway:
        assert reply.status_code == 400, reply.text
        assert reply.json()["reason"] == "query interrupted after 0.5 s"
        assert ended - started < PROMPT_ANSWER_S
    for name, started, ended, reply in probes:
        assert reply.status_code == 200, f"{name}: {reply.text}"
        assert ended - started < CHEAP_ANSWER_S, f"{name} took {ended - started:.2f} s"
    # Answered while a runaway query was running, not once it had been interrupted: each kind
    # of probe has requests that began and ended inside a runaway query's own request.
    for kind in ("hardware", "sql"):
        inside = [1 for name, started, ended, _ in probes if name == kind
                  and any(r_started < started and ended < r_ended for r_started, r_ended, _ in runaway)]
        assert inside, f"no {kind} probe was answered while a runaway query ran"
    assert all(reply.json()[0]["type"] == "cpu" for name, _, _, reply in probes if name == "hardware")
    assert all(reply.json()["rows"] == [[42]] for name, _, _, reply in probes if name == "sql")

    # A server that serialised requests would answer a probe only after the runaway query in
    # flight ended; these probes were answered while one was still running.
    def answered_during_a_runaway_query(started: float, ended: float) -> bool:
        return any(q_started < started and ended < q_ended for q_started, q_ended, _ in runaway)

    answered_early = {
        name for name, started, ended, _ in probes if answered_during_a_runaway_query(started, ended)
    }
    assert answered_early == {"hardware", "sql"}


def test_parameters_are_bound_as_values_not_spliced_into_the_sql(client):
    hostile = "x'; DROP TABLE models; --"

    reply = post_sql(client, "SELECT $model AS m", {"model": hostile})

    assert reply.status_code == 200, reply.text
    assert reply.json()["columns"] == ["m"]
    assert reply.json()["rows"] == [[hostile]]
    still_there = post_sql(client, "SELECT count(*) AS n FROM models")
    assert still_there.status_code == 200, still_there.text
    assert still_there.json()["columns"] == ["n"]


def test_a_parameter_the_query_uses_but_the_request_omits_is_a_clear_400(client):
    reply = post_sql(client, "SELECT $model AS m", {"other": "x"})

    assert reply.status_code == 400, reply.text
    assert reply.json() == {
        "error": "query refused",
        "reason": "parameter $model has no value: pass it in params",
        "field": "sql",
    }


def test_rows_past_the_cap_are_cut_off_and_flagged(client):
    reply = post_sql(client, "SELECT unnest(generate_series(1, 20)) AS n")

    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["rows"] == [[1], [2], [3], [4], [5]]
    assert answer["row_count"] == ROW_CAP
    assert answer["truncated"] is True
    assert answer["truncated_reason"] == "more than 5 rows: only the first 5 are returned"


def test_exactly_the_cap_is_not_flagged_as_truncated(client):
    answer = post_sql(client, f"SELECT unnest(generate_series(1, {ROW_CAP})) AS n").json()

    assert answer["row_count"] == ROW_CAP
    assert answer["truncated"] is False
    assert answer["truncated_reason"] is None


def test_the_answer_is_the_typed_query_result_the_schema_describes(client):
    answer = post_sql(client, "SELECT 1 AS n").json()
    assert set(answer) == {"columns", "rows", "row_count", "truncated", "truncated_reason", "elapsed_ms"}

    schema = client.get("/schema/openapi.json").json()
    success = schema["paths"]["/api/benchmark/sql"]["post"]["responses"]["200"]["content"]["application/json"]
    name = success["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "truncated_reason" in schema["components"]["schemas"][name]["properties"]


def test_a_table_is_judged_by_its_name_not_its_alias(client):
    # Returned DuckDB's settings: the guard took pg_settings AS t for the CTE t.
    reply = post_sql(client, "WITH t AS (SELECT 1 AS v) SELECT name, setting FROM t CROSS JOIN pg_settings AS t")

    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == "query refused"
    assert reply.json()["reason"].startswith("table pg_settings is not in the allowlist")


PATIENT_TIMEOUT_S = 3.0
# The interrupt and the bounded conversion land within the limit; the rest is slack for a
# loaded 2-core machine.
SLACK_S = 2.0
MAP_OF_A_MILLION = ("SELECT map(l, l) AS m FROM (SELECT list(x) AS l FROM unnest(generate_series(1, 1000000)) t(x)), "
                    "unnest(generate_series(1, 3))")


@pytest.fixture(scope="module")
def patient_server(tmp_path_factory):
    """Queries may run long enough here for two of them to fill the SQL pool."""
    with start_server(tmp_path_factory.mktemp("patient-sql-server"), sql_timeout_s=PATIENT_TIMEOUT_S) as running:
        yield running


def test_a_huge_answer_is_cut_and_comes_within_the_time_limit(patient_server):
    # Reported: 13.9 s past a 5 s limit, while the conversion stalled other endpoints.
    with httpx.Client(base_url=patient_server.url, timeout=30.0) as http:
        started, ended, reply = timed(lambda: post_sql(http, MAP_OF_A_MILLION))

    if reply.status_code == 200:
        answer = reply.json()
        assert answer["rows"] == [[None], [None], [None]]
        assert answer["truncated"] is True and "column m" in answer["truncated_reason"]
    else:  # a loaded machine may not finish building the maps in time: interrupted, then
        assert reply.json()["error"] == "query timed out", reply.text
    assert ended - started < PATIENT_TIMEOUT_S + SLACK_S


def wait_until_the_pool_is_free(http: httpx.Client) -> None:
    """A query that answered at its deadline may hold its slot until DuckDB really stops."""
    deadline = time.monotonic() + 30
    while post_sql(http, "SELECT 1").status_code == 429 and time.monotonic() < deadline:
        time.sleep(0.2)


def test_past_the_sql_pool_a_query_gets_429_while_other_endpoints_keep_answering(patient_server):
    runaway: list[httpx.Response] = []

    def run_runaway_query():
        with httpx.Client(base_url=patient_server.url, timeout=30.0) as http:
            reply = post_sql(http, RUNAWAY_QUERY)
            for _ in range(10):  # a slot still held by an earlier test's query
                if reply.status_code != 429:
                    break
                reply = post_sql(http, RUNAWAY_QUERY)
            runaway.append(reply)

    with httpx.Client(base_url=patient_server.url, timeout=30.0) as http:
        wait_until_the_pool_is_free(http)
    threads = [threading.Thread(target=run_runaway_query) for _ in range(2)]
    for thread in threads:
        thread.start()
    with httpx.Client(base_url=patient_server.url, timeout=30.0) as http:
        # Until both runaway queries hold the pool's two slots (on a loaded machine their
        # requests may take a while to arrive), a cheap query still finds a slot.
        deadline = time.monotonic() + 60
        while True:
            busy_started, busy_ended, busy = timed(lambda: post_sql(http, "SELECT 1 AS n"))
            if busy.status_code != 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        _, _, runs = timed(lambda: http.get("/api/benchmark/runs"))
        runs_started, runs_ended, runs_again = timed(lambda: http.get("/api/benchmark/runs"))
    for thread in threads:
        thread.join(timeout=30)

    assert busy.status_code == 429, busy.text
    assert busy.headers["Retry-After"] == "1"
    assert busy.json() == {"error": "too many queries", "reason": "2 SQL queries are already running: retry in 1 s"}
    # It waited about a second for a slot, then gave up.
    assert 0.9 <= busy_ended - busy_started < 1.0 + SLACK_S
    assert runs.status_code == runs_again.status_code == 200
    assert runs_ended - runs_started < CHEAP_ANSWER_S
    assert [reply.status_code for reply in runaway] == [400, 400]
    assert all(reply.json()["error"] == "query timed out" for reply in runaway)
