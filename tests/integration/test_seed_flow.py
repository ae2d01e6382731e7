"""The seed's "Running a Complete Example", as written: start ./run_benchmark_api_server.sh, run
the example, then ./run_benchmark_dashboard.sh, which finds the dashboard already served
instead of failing on the database the first server holds. And ``benchboard serve`` on a
database that some other process holds says who in one line, without a traceback.

Real scripts, real servers on loopback, a real DuckDB file held by a real second process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.server import REPO_ROOT, free_port

EXAMPLE = REPO_ROOT / "examples" / "benchmark_integration_example.py"
START_TIMEOUT_S = 60.0  # hardware detection and DuckDB on a busy 2-core machine
SCRIPT_TIMEOUT_S = 60.0


def environment() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("BENCHBOARD_")}
    # The scripts find `benchboard` on PATH, as after the README's install.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=environment(), capture_output=True, text=True,
                          timeout=SCRIPT_TIMEOUT_S, check=False)


@pytest.fixture
def api_server(tmp_path):
    """./run_benchmark_api_server.sh on a free port, in tmp_path (its database, results and logs)."""
    port = free_port()
    with open(tmp_path / "api-server.out", "wb") as output:
        process = subprocess.Popen(
            [str(REPO_ROOT / "run_benchmark_api_server.sh"), "--host", "127.0.0.1", "--port", str(port),
             "--db-path", "benchmarks.duckdb", "--results-dir", "results", "--log-dir", "logs", "--max-seconds", "0.3"],
            cwd=tmp_path, env=environment(), stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            assert process.poll() is None, (tmp_path / "api-server.out").read_text()
            try:
                if httpx.get(url + "/api/benchmark/hardware", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API server did not start"
            time.sleep(0.2)
        yield process, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_seeds_complete_example_runs_as_written(api_server, tmp_path):
    process, url = api_server
    example = subprocess.run([sys.executable, str(EXAMPLE), "--url", url], cwd=tmp_path, env=environment(),
                             capture_output=True, text=True, timeout=180, check=False)
    assert example.returncode == 0, example.stderr
    assert "completed" in example.stdout

    # The seed's dashboard script, with the seed's --api-url: the dashboard is that server.
    dashboard = run([str(REPO_ROOT / "run_benchmark_dashboard.sh"), "--port", str(free_port()),
                     "--api-url", url, "--db-path", "benchmarks.duckdb"], cwd=tmp_path)
    assert dashboard.returncode == 0, dashboard.stderr
    assert f"already served at {url}/" in dashboard.stdout
    assert "Traceback" not in dashboard.stderr

    # Nothing at --api-url, but the server holds the database: found through the lock's holder.
    nowhere = f"http://127.0.0.1:{free_port()}"
    by_database = run([str(REPO_ROOT / "run_benchmark_dashboard.sh"), "--port", str(free_port()),
                       "--api-url", nowhere, "--db-path", "benchmarks.duckdb"], cwd=tmp_path)
    assert by_database.returncode == 0, by_database.stderr
    assert f"already served at {url}/ by process {process.pid}" in by_database.stdout

    # A plain `benchboard serve` on the held database names the server instead of a traceback.
    second = run([sys.executable, "-m", "webapp.cli", "serve", "--port", str(free_port()),
                  "--db-path", "benchmarks.duckdb"], cwd=tmp_path)
    assert second.returncode == 2
    assert second.stderr.strip().count("\n") == 0 and "Traceback" not in second.stderr
    assert f"process {process.pid}" in second.stderr and f"benchboard server at {url}/" in second.stderr


HOLD = """
import sys, time
from storage.database import Database
db = Database(sys.argv[1])
print("holding", flush=True)
time.sleep(120)
"""


def test_serving_a_database_another_process_holds_exits_2_naming_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "held.duckdb")], cwd=REPO_ROOT,
                              env=environment(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        nowhere = f"http://127.0.0.1:{free_port()}"
        for command in (
            [sys.executable, "-m", "webapp.cli", "serve", "--port", str(free_port()), "--db-path", "held.duckdb"],
            [str(REPO_ROOT / "run_benchmark_dashboard.sh"), "--api-url", nowhere, "--port", str(free_port()),
             "--db-path", "held.duckdb"],
        ):
            refused = run(command, cwd=tmp_path)
            assert refused.returncode == 2, refused.stderr
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1, refused.stderr
            assert lines[0].startswith("error: the database held.duckdb is in use by process ")
            assert str(holder.pid) in lines[0]
            assert "Traceback" not in refused.stderr and refused.stdout == ""
    finally:
        holder.kill()
        holder.wait()
