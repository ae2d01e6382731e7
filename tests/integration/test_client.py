"""BenchmarkAPIClient against a real server process: every method, its errors, and following runs
through a server crash (for the async client too)."""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import json
import logging
import threading
import time

import pytest

from benchboard_client import (
    AsyncBenchmarkAPIClient,
    BenchmarkAPIClient,
    FollowPolicy,
    InvalidRequest,
    NotFound,
    RunMonitor,
    Unauthorized,
)
from tests.integration.server import start_server

TINY = ["bert-tiny", "gpt2-tiny"]


@pytest.fixture(scope="module")
def client(server):
    with BenchmarkAPIClient(server.url) as api:
        yield api


@pytest.fixture(scope="module")
def finished(client):
    """One run followed the way the seed's example does, with every status the callback saw."""
    run = client.start_benchmark(priority="high", hardware=["cpu"], models=TINY, batch_sizes=[1],
                                 precision="fp32", progressive_mode=True, force=True)
    seen = []
    final = client.monitor_progress(run["run_id"], seen.append)
    return run, seen, final


def test_start_benchmark_answers_with_the_run_id_and_its_size(finished):
    run, _, _ = finished
    assert run["status"] in ("queued", "running")
    assert run["total_configs"] == 2
    assert run["run_id"] and run["started_at"] and "2 configs" in run["message"]
    assert run["message"].startswith(f"benchmark run {run['status']}: ")  # the message and status agree


def test_monitor_progress_calls_back_on_each_change_and_returns_the_final_status(finished):
    run, seen, final = finished
    assert final["status"] == "completed" and final["progress"] == 1.0
    assert seen[-1] == final
    assert all(status["run_id"] == run["run_id"] for status in seen)
    progress = [status["progress"] for status in seen]
    assert progress == sorted(progress)
    assert any(0 < status["completed_configs"] < 2 for status in seen), "no update between start and end"


def test_status_results_and_the_run_list_agree_on_a_finished_run(client, finished):
    run, _, final = finished
    status = client.get_status(run["run_id"])
    assert (status["status"], status["completed_configs"], status["total_configs"]) == ("completed", 2, 2)
    assert status["completion_time"] == final["completion_time"]

    results = client.get_results(run["run_id"])
    assert results["status"] == "completed"
    assert results["config"]["models"] == TINY
    assert sorted(row["model_name"] for row in results["results"]) == TINY
    assert all(row["p50_latency_ms"] > 0 and row["n_samples"] > 0 for row in results["results"])

    completed_ids = [entry["run_id"] for entry in client.list_runs(status="completed", limit=1000)]
    assert run["run_id"] in completed_ids
    assert all(entry["status"] == "completed" for entry in client.list_runs(status="completed"))


def test_models_and_hardware_describe_what_the_server_can_run(client):
    models = {model["name"]: model for model in client.get_models()}
    assert models["bert-tiny"]["family"] == "bert"
    assert models["gpt2-tiny"]["type"] == "decoder"
    hardware = {hw["name"]: hw for hw in client.get_hardware()}
    assert hardware["cpu"]["type"] == "cpu"
    assert "fp32" in hardware["cpu"]["precisions"]


def test_query_results_applies_every_filter(client, finished):
    rows = client.query_results(model="bert-tiny", hardware="cpu", batch_size=1, precision="fp32", limit=1000)
    assert finished[0]["run_id"] in {row["run_id"] for row in rows}
    matched = {(row["model_name"], row["batch_size"], row["precision"]) for row in rows}
    assert matched == {("bert-tiny", 1, "fp32")}
    assert len(client.query_results(limit=1)) == 1


def test_reports_are_listed_and_downloaded_to_a_folder_or_a_file(client, finished, tmp_path):
    run_id = finished[0]["run_id"]
    # Reports are written just after the terminal status goes out, so a follower may see the
    # end a moment before the last file lands.
    deadline = time.monotonic() + 60
    while True:
        entry = next((entry for entry in client.get_reports() if entry["run_id"] == run_id), {"reports": []})
        if set(entry["reports"]) >= {"report.html", "report.md", "results.json"} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert set(entry["reports"]) >= {"report.html", "report.md", "results.json"}

    saved = client.download_report(run_id, "results.json", tmp_path)
    assert saved == tmp_path / "results.json"
    assert run_id in saved.read_text()
    renamed = client.download_report(run_id, "report.md", tmp_path / "my-report.md")
    assert "bert-tiny" in renamed.read_text()


def test_a_missing_report_is_not_found_and_leaves_no_file(client, finished, tmp_path):
    with pytest.raises(NotFound, match="no report"):
        client.download_report(finished[0]["run_id"], "secrets.txt", tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("export_format", ["csv", "parquet", "json"])
def test_export_writes_the_runs_rows_in_each_format(client, finished, tmp_path, export_format):
    run_id = finished[0]["run_id"]
    path = client.export(export_format, tmp_path, run_id=run_id)
    assert path == tmp_path / f"benchboard-results.{export_format}"
    if export_format == "csv":
        rows = list(csv.DictReader(path.open()))
    elif export_format == "parquet":
        # pyarrow is the server's, not the client's: a client-only venv checks the file's magic bytes.
        if importlib.util.find_spec("pyarrow") is None:
            data = path.read_bytes()
            assert data[:4] == data[-4:] == b"PAR1"
            return
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        rows = json.loads(path.read_text())
    assert sorted(row["model_name"] for row in rows) == TINY


def test_run_sql_answers_a_parameterised_query(client, finished):
    answer = client.run_sql(
        "SELECT m.model_name, pr.batch_size FROM performance_results pr "
        "JOIN models m ON pr.model_id = m.model_id WHERE pr.run_id = $run ORDER BY m.model_name",
        {"run": finished[0]["run_id"]})
    assert answer["columns"] == ["model_name", "batch_size"]
    assert answer["rows"] == [["bert-tiny", 1], ["gpt2-tiny", 1]]
    assert answer["row_count"] == 2 and answer["truncated"] is False


def test_refused_sql_carries_the_guards_reason(client):
    with pytest.raises(InvalidRequest, match="read_csv") as caught:
        client.run_sql("SELECT * FROM read_csv('/etc/passwd')")
    assert caught.value.status_code == 400


def test_sql_naming_a_missing_column_is_a_bad_request(client):
    with pytest.raises(InvalidRequest, match="model_name"):
        client.run_sql("SELECT model_name FROM performance_results")


def test_bad_requests_name_the_field_and_the_reason(client):
    with pytest.raises(InvalidRequest, match="unknown model 'no-such-model'") as caught:
        client.start_benchmark(models=["no-such-model"])
    assert caught.value.field == "models"
    with pytest.raises(InvalidRequest) as caught:
        client.list_runs(status="sleeping")
    assert caught.value.field == "status"


def test_unknown_runs_are_not_found_everywhere(client):
    for call in (client.get_status, client.get_results, client.cancel):
        with pytest.raises(NotFound, match="no run with id 'no-such-run'"):
            call("no-such-run")
    with pytest.raises(NotFound, match="no run with id 'no-such-run'"):
        client.monitor_progress("no-such-run", lambda status: pytest.fail("called back for an unknown run"))


def test_monitor_progress_without_exit_on_complete_follows_in_the_background(client):
    run = client.start_benchmark(models=["bert-tiny"], batch_sizes=[1], force=True)
    seen = []
    monitor = client.monitor_progress(run["run_id"], seen.append, exit_on_complete=False)
    assert isinstance(monitor, RunMonitor)
    final = monitor.wait(timeout=60)
    assert monitor.done
    assert final["status"] == "completed" and seen[-1] == final


# Last of the shared-server tests: cancelling kills the device's worker, and the next run waits for a new one.
def test_cancelling_a_running_run_ends_it_as_cancelled(client):
    run = client.start_benchmark(models=TINY, batch_sizes=[1, 2, 4], force=True)
    statuses = client.watch(run["run_id"])
    next(statuses)
    cancelled = client.cancel(run["run_id"])
    assert cancelled["run_id"] == run["run_id"]
    final = list(statuses)[-1]
    assert final["status"] == "cancelled"
    assert final["completed_configs"] < final["total_configs"]
    assert client.get_status(run["run_id"])["status"] == "cancelled"


def test_a_token_guards_state_changes_and_reading(tmp_path):
    with start_server(tmp_path, token="s3cret") as server:
        with BenchmarkAPIClient(server.url) as anonymous:
            with pytest.raises(Unauthorized, match="Authorization: Bearer"):
                anonymous.get_hardware()
            with pytest.raises(Unauthorized, match="Authorization: Bearer"):
                anonymous.start_benchmark(models=["bert-tiny"], batch_sizes=[1])
        with BenchmarkAPIClient(server.url, token="s3cret") as trusted:
            assert trusted.get_hardware()
            # Past the guard, the request reaches validation: the token was accepted.
            with pytest.raises(InvalidRequest) as caught:
                trusted.start_benchmark(models=["no-such-model"])
            assert caught.value.field == "models"
            with pytest.raises(NotFound):
                trusted.cancel("no-such-run")


def test_followers_survive_a_server_crash_mid_run_and_see_the_end(tmp_path, caplog):
    """The server is SIGKILLed mid-run and restarted; the new server resumes the run. Three
    followers watch it throughout: the sync and the async client reconnect their sockets, and
    an async client allowed no reconnects falls back to polling /status. All see the end."""
    caplog.set_level(logging.INFO, logger="benchboard_client")
    # Reconnect every 0.25 s for up to 2 minutes (as long as the harness gives a server to start),
    # so a slow restart on a busy machine exercises the socket path rather than exhausting it:
    # on a loaded 2-core box a restart has taken over 30 s.
    patient = FollowPolicy(reconnect_delays=(0.25,) * 480)
    polling_only = FollowPolicy(reconnect_delays=(), poll_interval=0.2, unreachable_timeout=60)
    seen = {"sync-socket": [], "async-socket": [], "async-polling": []}

    def remember(name):
        return lambda status: seen[name].append((time.monotonic(), status))

    def follow_sync(url, run_id):
        with BenchmarkAPIClient(url, follow_policy=patient) as client:
            client.monitor_progress(run_id, remember("sync-socket"))

    def follow_async(url, run_id, name, policy):
        async def follow():
            async with AsyncBenchmarkAPIClient(url, follow_policy=policy) as client:
                await client.monitor_progress(run_id, remember(name))
        asyncio.run(follow())

    # A prestarted worker: the run starts without waiting for its imports, after the restart too.
    with start_server(tmp_path, prestart_workers=True) as server:
        with BenchmarkAPIClient(server.url) as client:
            run = client.start_benchmark(models=TINY, batch_sizes=[1, 2], force=True)
        followers = [
            threading.Thread(target=follow_sync, args=(server.url, run["run_id"]), name="sync-socket"),
            threading.Thread(target=follow_async, args=(server.url, run["run_id"], "async-socket", patient),
                             name="async-socket"),
            threading.Thread(target=follow_async, name="async-polling",
                             args=(server.url, run["run_id"], "async-polling", polling_only)),
        ]
        for follower in followers:
            follower.start()
        deadline = time.monotonic() + 180  # the first config waits for a worker's torch import on a busy box
        while not all(any(s["completed_configs"] >= 1 for _, s in statuses) for statuses in seen.values()):
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.02)
        server.kill()
        killed_at = time.monotonic()
        server.restart()
        for follower in followers:
            follower.join(120)
        with BenchmarkAPIClient(server.url) as client:
            assert len(client.get_results(run["run_id"])["results"]) == 4

    for name, statuses in seen.items():
        before = [status for at, status in statuses if at < killed_at]
        after = [status for at, status in statuses if at > killed_at]
        assert before[-1]["status"] == "running", f"{name}: the run ended before the crash"
        assert after[0]["status"] in ("queued", "running"), f"{name}: did not follow the resumed run live"
        assert after[-1]["status"] == "completed" and after[-1]["completed_configs"] == 4, name
        log = " ".join(record.getMessage() for record in caplog.records if record.threadName == name)
        assert "socket dropped" in log, name
        if name == "async-polling":
            assert "following by polling /status" in log and "reconnecting" not in log
        else:
            assert "reconnecting" in log and "polling" not in log, name
