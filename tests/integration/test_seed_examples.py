"""The user's original document (seed/benchmark-system.md) promises these snippets work; they do.

The snippets are copied as written, except that the server's address and run id are filled in,
and the tiny test models stand in for "bert" and "gpt2" (which name the full base sizes) to keep
the suite fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from benchmark_api_client import BenchmarkAPIClient
from tests.integration.server import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "benchmark_integration_example.py"
TINY = ["bert-tiny", "gpt2-tiny"]


def test_the_api_client_example(server, capsys):
    # --- seed: "API Client Example", with progressive_mode from "Progressive Complexity Mode" ---
    client = BenchmarkAPIClient(server.url)

    run_data = client.start_benchmark(
        priority="high",
        hardware=["cpu"],
        models=TINY,
        batch_sizes=[1, 8],
        precision="fp32",
        progressive_mode=True,
    )

    run_id = run_data["run_id"]

    def progress_callback(status):
        print(f"Progress: {status['progress']:.1%}")
        print(f"Step: {status['current_step']}")

    client.monitor_progress(run_id, progress_callback)

    results = client.get_results(run_id)
    # --- end of the seed's code ---

    printed = capsys.readouterr().out.splitlines()
    assert printed[-2:] == ["Progress: 100.0%", "Step: None"]
    assert any(line.startswith("Step: ") and "on cpu" in line for line in printed)
    assert results["status"] == "completed"
    assert results["config"]["batch_sizes"] == [1, 8]
    # Batch size 1 may be skipped as recent (incremental mode), so look at batch size 8.
    assert sorted(row["model_name"] for row in results["results"] if row["batch_size"] == 8) == TINY, (
        results["failures"], printed)


def test_the_websocket_integration_snippet_with_websocket_client(server, capsys):
    with BenchmarkAPIClient(server.url) as client:
        run_id = client.start_benchmark(models=TINY, batch_sizes=[1], force=True)["run_id"]

    # --- seed: "WebSocket Integration" ---
    import websocket

    def on_message(ws, message):
        data = json.loads(message)
        print(f"Progress: {data['progress']:.1%}")
        print(f"Current step: {data['current_step']}")
        print(f"Models: {data['completed_models']}/{data['total_models']}")

    ws = websocket.WebSocketApp(
        f"{server.ws_url}/api/benchmark/ws/{run_id}",
        on_message=on_message
    )
    # --- end of the seed's code, whose ws.run_forever() runs below with a safety timeout ---

    follower = threading.Thread(target=ws.run_forever)
    follower.start()
    follower.join(60)
    if follower.is_alive():
        ws.close()
        raise AssertionError("the server did not close the socket after the run ended")

    printed = capsys.readouterr().out.splitlines()
    assert printed[-3:] == ["Progress: 100.0%", "Current step: None", "Models: 2/2"]
    assert "Models: 0/2" in printed


def run_example(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=120,
                          cwd=Path.cwd())


def test_the_integration_example_runs_a_benchmark_end_to_end(server):
    done = run_example("--url", server.url, "--force")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "hardware: cpu" in out
    assert "started run" in out and "completed in" in out
    assert "100.0%  completed" in out
    table = out[out.index("model_name"):]
    assert "bert-tiny" in table and "gpt2-tiny" in table
    run_id = out.split("started run ", 1)[1].split(":", 1)[0]
    assert f"* {run_id}  completed" in out
    assert f"{server.url}/api/benchmark/reports/{run_id}/report.html" in out


def test_the_integration_example_fails_cleanly(server):
    refused = run_example("--url", server.url, "--models", "no-such-model")
    assert refused.returncode == 1
    assert "error: models: unknown model 'no-such-model'" in refused.stderr
    assert "Traceback" not in refused.stderr

    unreachable = run_example("--url", "http://127.0.0.1:9")
    assert unreachable.returncode == 1
    assert "error: cannot reach server at http://127.0.0.1:9" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
