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


# The tests below post a run the moment their server answers: a prestarted worker imports torch
# and transformers while the server starts, instead of after the first run is posted.
@pytest.fixture
def own_server(tmp_path):
    server = start_server(tmp_path, prestart_workers=True)
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
    with start_server(tmp_path, max_seconds=1.0, prestart_workers=True) as server:
        slow = start_run(server, models=["bert-tiny"], batch_sizes=[1, 2, 3], priority="medium")
        wait_for(server, slow["run_id"], lambda s: s["status"] == "running")  # the others queue behind it
        low = start_run(server, models=["gpt2-tiny"], batch_sizes=[1], priority="low")
        critical = start_run(server, models=["bert-tiny"], batch_sizes=[4], priority="critical")
        statuses = {name: wait_for(server, run["run_id"], lambda s: s["status"] in TERMINAL)
                    for name, run in (("slow", slow), ("low", low), ("critical", critical))}
    assert {s["status"] for s in statuses.values()} == {"completed"}
    assert statuses["slow"]["start_time"] < statuses["critical"]["start_time"] < statuses["low"]["start_time"]


def test_cancel_mid_run_keeps_measured_rows_and_frees_the_worker(server):
    # The session's server: cancelling ends its worker, and the follow-up run below waits for a new one.
    run = start_run(server, models=["bert-tiny"], batch_sizes=[1, 2, 3, 4, 5, 6], progressive_mode=False)
    wait_for(server, run["run_id"], lambda s: s["completed_configs"] >= 1)
    cancelled = httpx.post(f"{server.url}/api/benchmark/cancel/{run['run_id']}", timeout=30).json()
    assert cancelled["status"] == "cancelled"

    results = httpx.get(f"{server.url}/api/benchmark/results/{run['run_id']}", timeout=30).json()
    assert results["status"] == "cancelled"
    assert 1 <= len(results["results"]) < 6
    kept = len(results["results"])
    time.sleep(1.0)
    later = httpx.get(f"{server.url}/api/benchmark/results/{run['run_id']}", timeout=30).json()
    assert len(later["results"]) <= kept + 1

    follow_up = start_run(server, models=["gpt2-tiny"], batch_sizes=[1])
    assert wait_for(server, follow_up["run_id"], lambda s: s["status"] in TERMINAL)["status"] == "completed"


def test_killed_server_resumes_the_run_without_measuring_a_config_twice(tmp_path):
    server = start_server(tmp_path, max_seconds=0.5, prestart_workers=True)
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


def test_websocket_answers_ping_and_status_and_refuses_unknown_runs(server):
    with connect(f"{server.ws_url}/api/benchmark/ws/no-such-run", open_timeout=30) as socket:
        assert json.loads(socket.recv(timeout=30)) == {"error": "no run with id 'no-such-run'"}
        with pytest.raises(Exception, match="1000"):
            socket.recv(timeout=30)

    run = start_run(server, models=["bert-tiny"], batch_sizes=[1, 2, 3, 4, 5, 6], progressive_mode=False)
    with connect(f"{server.ws_url}/api/benchmark/ws/{run['run_id']}", open_timeout=30) as socket:
        first = json.loads(socket.recv(timeout=30))
        assert first["run_id"] == run["run_id"] and first["status"] in ("queued", "running")
        socket.send("ping")
        replies = [json.loads(socket.recv(timeout=30))]
        while replies[-1] != {"pong": True}:
            replies.append(json.loads(socket.recv(timeout=30)))
        socket.send("status")
        reply = json.loads(socket.recv(timeout=30))
        assert reply["run_id"] == run["run_id"] and reply["total_configs"] == 6
    httpx.post(f"{server.url}/api/benchmark/cancel/{run['run_id']}", timeout=30)


def test_timing_attention_and_threads_of_a_request_reach_its_rows(server):
    # Issue 10: the API takes what the CLI's flags set, and each row records what it was measured with.
    reply = start_run(server, models=["bert-tiny", "vit-tiny"], batch_sizes=[2], progressive_mode=False,
                      timing="latency", attn_implementation="eager", threads=1, image_size=64)
    wait_for(server, reply["run_id"], lambda s: s["status"] in TERMINAL)
    results = httpx.get(f"{server.url}/api/benchmark/results/{reply['run_id']}", timeout=30).json()
    assert results["config"]["timing"] == "latency" and results["config"]["threads"] == 1
    rows = {row["model_name"]: row for row in results["results"]}
    assert set(rows) == {"bert-tiny", "vit-tiny"}, results["failures"]
    for row in rows.values():
        assert (row["timing"], row["attn_implementation"], row["threads"]) == ("latency", "eager", 1)
        assert row["throughput_items_per_second"] == pytest.approx(
            2 * row["n_samples"] * row["calls_per_sample"] / row["total_timed_seconds"], rel=0.01)
        assert row["load_memory_peak_mb"] is not None and row["contended"] in (True, False)
        assert (row["p99_ci_high_ms"] is None) == (row["n_samples"] < 299)
    assert (rows["vit-tiny"]["image_size"], rows["bert-tiny"]["image_size"]) == (64, None)


@pytest.mark.parametrize(("body", "field", "reason"), [
    ({"timing": "fast"}, "timing", "must be one of latency, throughput"),
    ({"attn_implementation": "flash"}, "attn_implementation", "must be one of sdpa, eager, flash_attention_2"),
    ({"threads": 0}, "threads", "must be at least 1"),
    ({"image_size": -1}, "image_size", "must be at least 1"),
])
def test_bad_timing_attention_threads_or_image_size_is_400_naming_it(server, body, field, reason):
    reply = httpx.post(f"{server.url}/api/benchmark/run", json={"models": ["bert-tiny"], **body}, timeout=30)
    assert reply.status_code == 400, reply.text
    assert reply.json()["field"] == field and reason in reply.json()["reason"]


def test_the_server_process_never_calls_torch_cuda(tmp_path, monkeypatch):
    """Issue 10, defect 6, through the server's own wiring (Services) in this process: planning,
    the free-memory check, a CPU config measured by a real worker, and a config on a GPU.

    No GPU exists here, so the GPU is mocked where a real one answers: a CUDA build of torch, a
    probe that finds one, and NVML (pynvml). Its worker, a real process, cannot start without a
    device, so that config fails; what is checked is that this process never touched torch.cuda."""
    from types import SimpleNamespace

    import msgspec
    import subprocess
    import torch

    from engine import hardware, nvml
    from engine.hardware import HardwareInfo, detect_hardware
    from engine.runs import RunRequest
    from webapp.wiring.services import Services
    from webapp.wiring.settings import Settings

    calls = []
    for name in ("is_available", "device_count", "get_device_properties", "mem_get_info", "_lazy_init", "init",
                 "set_device", "synchronize", "memory_allocated"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, _name=name, **k: calls.append(_name) or 1 / 0)
    gpu = HardwareInfo(name="cuda:0", type="cuda", device="NVIDIA H100", memory_gb=80.0, compute_capability="9.0",
                       precisions=["fp32", "fp16", "bf16"], torch_device="cuda:0", uuid="GPU-1")
    real_run = subprocess.run

    def run(command, *args, **kwargs):
        if command[1:] == ["-m", "engine.hardware", "--probe"]:
            return subprocess.CompletedProcess(command, 0, stdout=msgspec.json.encode([gpu]).decode(), stderr="")
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(hardware.subprocess, "run", run)
    monkeypatch.setattr(hardware, "_in_process", False)
    monkeypatch.setattr(nvml, "pynvml", SimpleNamespace(
        nvmlInit=lambda: None, nvmlDeviceGetHandleByUUID=lambda uuid: "h",
        nvmlDeviceGetMemoryInfo=lambda handle: SimpleNamespace(free=40 * 1024**3)))
    nvml.available.cache_clear()
    detect_hardware.cache_clear()
    services = Services(Settings(db_path=str(tmp_path / "b.duckdb"), results_dir=str(tmp_path / "results"),
                                 max_seconds=0.3, prestart_workers=False, resume=False))
    try:
        assert services._free_memory_bytes("cuda:0") == 40 * 1024**3
        run_state = services.start_run(RunRequest(models=["bert-tiny"], hardware=["cpu", "cuda:0"], batch_sizes=[1],
                                                  force=True))
        services.scheduler.wait(run_state.run_id, timeout=240)
        outcome = services.run_results(run_state.run_id)
    finally:
        services.close()
        detect_hardware.cache_clear()
        nvml.available.cache_clear()
    assert [row.hardware for row in outcome.results] == ["cpu"]
    assert [(f.hardware, f.error_type) for f in outcome.failures] == [("cuda:0", "worker_start_failed")]
    assert calls == []
