"""AsyncBenchmarkAPIClient against a real server process: the same API as coroutines, and watch().

Following a run through a server crash, for both clients, is in test_client.py: one crash serves them all.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time

import pytest

from benchboard_client import AsyncBenchmarkAPIClient, InvalidRequest, NotFound

pytestmark = pytest.mark.anyio
TINY = ["bert-tiny", "gpt2-tiny"]


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
async def finished(server):
    """One run followed with ``async for ... in watch()``, with every status it yielded."""
    async with AsyncBenchmarkAPIClient(server.url) as client:
        run = await client.start_benchmark(models=TINY, batch_sizes=[1], force=True)
        seen = [status async for status in client.watch(run["run_id"])]
    return run, seen


@pytest.fixture
async def client(server):
    async with AsyncBenchmarkAPIClient(server.url) as api:
        yield api


async def test_watch_yields_each_change_and_ends_after_the_terminal_status(finished):
    run, seen = finished
    assert run["total_configs"] == 2
    assert seen[-1]["status"] == "completed" and seen[-1]["progress"] == 1.0
    assert all(status["status"] not in ("completed", "failed", "cancelled") for status in seen[:-1])
    assert any(0 < status["completed_configs"] < 2 for status in seen), "no update between start and end"


async def test_status_results_runs_and_query_describe_the_finished_run(client, finished):
    run_id = finished[0]["run_id"]
    status, results, runs, rows = await asyncio.gather(
        client.get_status(run_id),
        client.get_results(run_id),
        client.list_runs(status="completed", limit=1000),
        client.query_results(model="gpt2-tiny", hardware="cpu", batch_size=1, precision="fp32", limit=1000),
    )
    assert status["status"] == "completed" and status["completed_configs"] == 2
    assert sorted(row["model_name"] for row in results["results"]) == TINY
    assert run_id in {entry["run_id"] for entry in runs}
    assert run_id in {row["run_id"] for row in rows}
    assert {row["model_name"] for row in rows} == {"gpt2-tiny"}


async def test_catalog_reports_downloads_and_exports(client, finished, tmp_path):
    run_id = finished[0]["run_id"]
    models, hardware = await asyncio.gather(client.get_models(), client.get_hardware())
    assert {"bert-tiny", "gpt2-tiny"} <= {model["name"] for model in models}
    assert "cpu" in {hw["name"] for hw in hardware}
    # Reports are written just after the terminal status goes out (as in test_client.py), so the
    # watcher may see the end a moment before the last file lands: poll fast, with a generous bound.
    deadline = time.monotonic() + 60
    while True:
        entry = next((entry for entry in await client.get_reports() if entry["run_id"] == run_id), {"reports": []})
        if "report.html" in entry["reports"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert "report.html" in entry["reports"]

    report = await client.download_report(run_id, "report.html", tmp_path)
    assert report.name == "report.html" and run_id in report.read_text()
    exported = await client.export("csv", tmp_path / "rows.csv", run_id=run_id)
    assert sorted(row["model_name"] for row in csv.DictReader(exported.open())) == TINY
    exported = await client.export("json", tmp_path, run_id=run_id)
    assert len(json.loads(exported.read_text())) == 2


async def test_run_sql_and_its_refusals(client, finished):
    answer = await client.run_sql("SELECT count(*) AS n FROM performance_results WHERE run_id = $run",
                                  {"run": finished[0]["run_id"]})
    assert answer["columns"] == ["n"] and answer["rows"] == [[2]]
    with pytest.raises(InvalidRequest, match="DROP"):
        await client.run_sql("DROP TABLE models")


async def test_errors_carry_the_servers_message(client):
    with pytest.raises(InvalidRequest, match="batch_sizes") as caught:
        await client.start_benchmark(models=["bert-tiny"], batch_sizes=[0])
    assert caught.value.field == "batch_sizes"
    with pytest.raises(NotFound, match="no run with id 'no-such-run'"):
        await client.get_results("no-such-run")
    with pytest.raises(NotFound, match="no run with id 'no-such-run'"):
        async for _ in client.watch("no-such-run"):
            pytest.fail("yielded a status for an unknown run")


async def test_monitor_progress_awaits_async_callbacks_and_returns_the_final_status(client):
    run = await client.start_benchmark(models=["gpt2-tiny"], batch_sizes=[1], force=True)
    seen = []

    async def callback(status):
        await asyncio.sleep(0)
        seen.append(status)

    final = await client.monitor_progress(run["run_id"], callback)
    assert final["status"] == "completed" and seen[-1] == final


async def test_monitor_progress_without_exit_on_complete_returns_a_task(client):
    run = await client.start_benchmark(models=["bert-tiny"], batch_sizes=[1], force=True)
    seen = []
    task = await client.monitor_progress(run["run_id"], seen.append, exit_on_complete=False)
    assert isinstance(task, asyncio.Task)
    final = await asyncio.wait_for(task, 60)
    assert final["status"] == "completed" and seen[-1] == final


async def test_cancel_ends_a_running_run(client):
    run = await client.start_benchmark(models=TINY, batch_sizes=[1, 2, 4], force=True)
    statuses = client.watch(run["run_id"])
    await anext(statuses)
    await client.cancel(run["run_id"])
    final = [status async for status in statuses][-1]
    assert final["status"] == "cancelled" and final["completed_configs"] < final["total_configs"]
