"""POST /api/benchmark/sql on a real server: a runaway query is cut off at the time limit
without stalling anyone else, parameters are bound rather than spliced in, and the row cap
flags truncation."""

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
# What "keeps answering" means for a cheap request while a runaway query is in flight.
CHEAP_ANSWER_S = 1.0
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
    assert reply.json() == {"error": "query timed out", "reason": "query interrupted after 0.5 s"}
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
    }


def test_rows_past_the_cap_are_cut_off_and_flagged(client):
    reply = post_sql(client, "SELECT unnest(generate_series(1, 20)) AS n")

    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["rows"] == [[1], [2], [3], [4], [5]]
    assert answer["row_count"] == ROW_CAP
    assert answer["truncated"] is True


def test_exactly_the_cap_is_not_flagged_as_truncated(client):
    answer = post_sql(client, f"SELECT unnest(generate_series(1, {ROW_CAP})) AS n").json()

    assert answer["row_count"] == ROW_CAP
    assert answer["truncated"] is False
