"""A real benchboard server in a subprocess on a free loopback port, for integration tests.

    server = start_server(tmp_path, max_seconds=0.3, token="secret")
    httpx.get(server.url + "/api/benchmark/hardware")
    server.kill()      # SIGKILL: the crash a client must survive
    server.restart()   # same port, same database: interrupted runs resume

Settings become ``BENCHBOARD_*`` environment variables, so the server reads them the
way it does in production. The server runs uvicorn directly so these tests do not
depend on the CLI.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_PATH = "/api/benchmark/hardware"
# Hardware detection and opening DuckDB take a few seconds on a busy 2-core machine.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# A `benchboard` executable to serve with instead (`benchboard serve`, reading the same variables): set
# when the client tests run from a venv that has only benchboard-client (.ci/run), not the server.
SERVER_BIN_VARIABLE = "BENCHBOARD_TEST_SERVER_BIN"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_environment(tmp_path: Path, settings: dict) -> dict[str, str]:
    defaults = {
        "db_path": tmp_path / "benchmarks.duckdb",
        "results_dir": tmp_path / "results",
        "log_dir": tmp_path / "logs",
        "max_seconds": 0.3,
        # A test that measures starts its worker with its first run; the others start none.
        "prestart_workers": False,
    }
    # Inherited BENCHBOARD_* variables (a developer's token, say) must not leak into a test server.
    env = {name: value for name, value in os.environ.items() if not name.startswith("BENCHBOARD_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    for name, value in {**defaults, **settings}.items():
        if value is not None:
            env[f"BENCHBOARD_{name.upper()}"] = ",".join(value) if isinstance(value, list) else str(value)
    return env


class ServerStartError(RuntimeError):
    pass


class ServerProcess:
    """One server; ``restart`` brings it back on the same port and database."""

    def __init__(self, tmp_path: Path, settings: dict):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "server-output.log"
        self._env = server_environment(tmp_path, settings)
        # With a token, reads need it too, the readiness probe's included.
        token = settings.get("token")
        self._ready_headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._popen: subprocess.Popen | None = None
        # Every process group this server ever led is swept at stop(). Workers run in
        # sessions of their own and end by themselves once their server is gone.
        self._process_groups: list[int] = []

    @property
    def pid(self) -> int:
        return self._popen.pid

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> ServerProcess:
        command = [sys.executable, "-m", "uvicorn", "--factory", "webapp.app:create_app",
                   "--host", "127.0.0.1", "--port", str(self.port)]
        if os.environ.get(SERVER_BIN_VARIABLE):
            command = [os.environ[SERVER_BIN_VARIABLE], "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log_path, "ab") as log:
            self._popen = subprocess.Popen(command, cwd=REPO_ROOT, env=self._env, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        self._process_groups.append(self._popen.pid)
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServerStartError(f"server exited with {self._popen.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + READY_PATH, headers=self._ready_headers, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise ServerStartError(f"server did not answer within {START_TIMEOUT_S:.0f}s:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL the server alone, as a crash would; its workers are left orphaned."""
        if self.alive():
            self._popen.send_signal(signal.SIGKILL)
            self._popen.wait()

    def stop(self) -> None:
        """Graceful shutdown, then sweep every process group this server ever started."""
        if self.alive():
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        for group in self._process_groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._process_groups.clear()

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_server(tmp_path: Path, **settings) -> ServerProcess:
    """Start a server whose database, results and logs live under ``tmp_path``.

    ``settings`` are ``webapp.wiring.settings.Settings`` field names (``token="s"``,
    ``max_seconds=1.0``); a value of None leaves the variable unset.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    return ServerProcess(Path(tmp_path), settings).start()
