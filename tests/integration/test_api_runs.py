"""The run lifecycle through a real uvicorn server on loopback, with tiny models."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from websockets.sync.client import connect

from storage.database import Database
from tests.integration.server import start_server

TERMINAL = {"completed", "failed", "cancelled"}


def start_run(server, **body) -> dict:
    reply = httpx.post(f"{server.url}/api/benchmark/run", json={"force": True, **body}, timeout=30)
    assert reply.status_code == 202, reply.text
    return reply.json()


def wait_for(server, run_id: str, predicate, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{server.url}/api/benchmark/status/{run_id}", timeout=30).json()
        if predicate(status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} never reached the expected state; last status {status}")


def follow(server, run_id: str) -> list[dict]:
    messages = []
    with connect(f"{server.ws_url}/api/benchmark/ws/{run_id}", open_timeout=30) as socket:
        while True:
            try:
                messages.append(json.loads(socket.recv(timeout=180)))
            except Exception as closed:  # ConnectionClosedOK after the terminal status
                assert "1000" in str(closed) or "sent 1000" in repr(closed), closed
                return messages


@pytest.fixture
def own_server(tmp_path):
    server = start_server(tmp_path)
    yield server
    server.stop()


def test_run_followed_over_websocket_to_completion_matches_duckdb(own_server, tmp_path):
    reply = start_run(own_server, models=["bert-tiny", "gpt2-tiny"], batch_sizes=[1, 2], progressive_mode=False)
    assert reply["total_configs"] == 4 and reply["status"] in ("queued", "running")

    messages = follow(own_server, reply["run_id"])
    assert messages[-1]["status"] == "completed"
    assert all(m["status"] not in TERMINAL for m in messages[:-1])
    progress = [m["progress"] for m in messages]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any(m["current_step"] and "bert-tiny on cpu, batch size 2" in m["current_step"] for m in messages)
    assert messages[-1]["completed_models"] == messages[-1]["total_models"] == 2
    assert any(m["estimated_remaining_time"] for m in messages if m["status"] == "running")

    results = httpx.get(f"{own_server.url}/api/benchmark/results/{reply['run_id']}", timeout=30).json()
    assert results["status"] == "completed" and len(results["results"]) == 4
    own_server.stop()
    with Database(tmp_path / "benchmarks.duckdb") as db:
        stored = db.cursor().execute(
            "SELECT v.model_name, v.batch_size, v.p50_latency_ms, v.throughput_items_per_second, len(pr.samples_ms) "
            "FROM results_view v JOIN performance_results pr USING (result_id) WHERE v.run_id = ? ORDER BY 1, 2",
            [reply["run_id"]],
        ).fetchall()
    api_rows = sorted((r["model_name"], r["batch_size"], r["p50_latency_ms"], r["throughput_items_per_second"])
                      for r in results["results"])
    assert [row[:4] for row in stored] == api_rows
    assert all(samples > 0 for *_, samples in stored)


def test_runs_queued_behind_a_slow_one_start_in_priority_order(tmp_path):
    with start_server(tmp_path, max_seconds=1.0) as server:
        slow = start_run(server, models=["bert-tiny"], batch_sizes=[1, 2, 3], priority="medium")
        wait_for(server, slow["run_id"], lambda s: s["status"] == "running")  # the others queue behind it
        low = start_run(server, models=["gpt2-tiny"], batch_sizes=[1], priority="low")
        critical = start_run(server, models=["bert-tiny"], batch_sizes=[4], priority="critical")
        statuses = {name: wait_for(server, run["run_id"], lambda s: s["status"] in TERMINAL)
                    for name, run in (("slow", slow), ("low", low), ("critical", critical))}
    assert {s["status"] for s in statuses.values()} == {"completed"}
    assert statuses["slow"]["start_time"] < statuses["critical"]["start_time"] < statuses["low"]["start_time"]


def test_cancel_mid_run_keeps_measured_rows_and_frees_the_worker(own_server):
    run = start_run(own_server, models=["bert-tiny"], batch_sizes=[1, 2, 3, 4, 5, 6], progressive_mode=False)
    wait_for(own_server, run["run_id"], lambda s: s["completed_configs"] >= 1)
    cancelled = httpx.post(f"{own_server.url}/api/benchmark/cancel/{run['run_id']}", timeout=30).json()
    assert cancelled["status"] == "cancelled"

    results = httpx.get(f"{own_server.url}/api/benchmark/results/{run['run_id']}", timeout=30).json()
    assert results["status"] == "cancelled"
    assert 1 <= len(results["results"]) < 6
    kept = len(results["results"])
    time.sleep(1.0)
    assert len(httpx.get(f"{own_server.url}/api/benchmark/results/{run['run_id']}").json()["results"]) <= kept + 1

    follow_up = start_run(own_server, models=["gpt2-tiny"], batch_sizes=[1])
    assert wait_for(own_server, follow_up["run_id"], lambda s: s["status"] in TERMINAL)["status"] == "completed"


def test_killed_server_resumes_the_run_without_measuring_a_config_twice(tmp_path):
    server = start_server(tmp_path, max_seconds=0.5)
    try:
        run = start_run(server, models=["bert-tiny", "gpt2-tiny"], batch_sizes=[1, 2, 3], progressive_mode=False)
        wait_for(server, run["run_id"], lambda s: 2 <= s["completed_configs"] < 6)
        server.kill()
        server.start()
        final = wait_for(server, run["run_id"], lambda s: s["status"] in TERMINAL)
        assert final["status"] == "completed" and final["completed_configs"] == 6
    finally:
        server.stop()
    with Database(tmp_path / "benchmarks.duckdb") as db:
        counts = db.cursor().execute(
            "SELECT config_key, count(*) FROM performance_results WHERE run_id = ? GROUP BY 1", [run["run_id"]]
        ).fetchall()
    assert len(counts) == 6, counts
    assert all(count == 1 for _, count in counts), counts


def test_websocket_answers_ping_and_status_and_refuses_unknown_runs(own_server):
    with connect(f"{own_server.ws_url}/api/benchmark/ws/no-such-run", open_timeout=30) as socket:
        assert json.loads(socket.recv(timeout=30)) == {"error": "no run with id 'no-such-run'"}
        with pytest.raises(Exception, match="1000"):
            socket.recv(timeout=30)

    run = start_run(own_server, models=["bert-tiny"], batch_sizes=[1, 2, 3, 4, 5, 6], progressive_mode=False)
    with connect(f"{own_server.ws_url}/api/benchmark/ws/{run['run_id']}", open_timeout=30) as socket:
        first = json.loads(socket.recv(timeout=30))
        assert first["run_id"] == run["run_id"] and first["status"] in ("queued", "running")
        socket.send("ping")
        replies = [json.loads(socket.recv(timeout=30))]
        while replies[-1] != {"pong": True}:
            replies.append(json.loads(socket.recv(timeout=30)))
        socket.send("status")
        reply = json.loads(socket.recv(timeout=30))
        assert reply["run_id"] == run["run_id"] and reply["total_configs"] == 6
    httpx.post(f"{own_server.url}/api/benchmark/cancel/{run['run_id']}", timeout=30)
