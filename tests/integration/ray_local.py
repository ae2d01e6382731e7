"""A real Ray cluster of several nodes on this machine, for tests and perf/ray_overhead.py.

    with LocalRayCluster(tmp_path, ["head", "second"]) as cluster:
        cluster.address          # what --ray-address takes
        cluster.kill_raylet("second")   # SIGKILL: the node is lost
        cluster.stop_node("head")       # the head goes away (its GCS with it); graceful=False: SIGKILL
        cluster.restart()               # a new cluster at the same address, the same node names
        cluster.restart(wait=False)     # ... returning once the head is up; the others start meanwhile
        cluster.wait_started()          # ... until they have

Each node is ``ray start --block`` in a process group of its own, with its own
``BENCHBOARD_NODE_NAME``, one CPU, a small object store, and none of the Ray processes that
nothing here uses (the dashboard's UI, the autoscaler's monitor, the log monitor: the server
reads no Ray worker logs), so a node starts sooner on a busy machine. The head keeps its
session under a temporary directory of ours, and Ray's health checks are fast, so a killed
node is declared dead within a couple of seconds. ``stop`` ends every process the
nodes started, by PID, even when a test failed; nothing is stopped by name and ``ray
stop`` (which would end every Ray cluster of this user) is never called.

Loopback: Ray rewrites 127.0.0.1 and localhost into the machine's routable address, both in
``--node-ip-address`` and in ``--address``; 127.0.0.2, which Linux routes over loopback
too, it keeps. So every node advertises 127.0.0.2 and every connection between nodes, and
from the server, stays on loopback. (Ray's gRPC servers listen on every interface whatever
the address; nothing here connects to them elsewhere.) So each port a node is given is one
free on every address, and one that another process takes before Ray binds it is read in
the GCS's or a raylet's log: that node starts again on fresh ports.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

LOOPBACK = "127.0.0.2"
START_TIMEOUT_S = 120.0
START_ATTEMPTS = 3  # of one node's start, the retries being for the failures _wait_started_or_retry names
OBJECT_STORE_BYTES = 80 * 1024**2
# Fast failure detection: a node that misses 3 health checks 0.5 s apart is dead.
HEAD_ENV = {
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}
# The ports each node is given (the head's GCS port aside: that one is the cluster's address).
NODE_PORT_OPTIONS = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
                     "metrics-export-port", "node-manager-port", "object-manager-port")
QUIET_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1", "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    """A port that no socket holds on any address. Ray's gRPC servers (the GCS, the raylet's
    node and object managers) listen on 0.0.0.0, so the probe binds the wildcard address too,
    as Ray's own port picker does: a probe of 127.0.0.2 alone is handed ports that another
    socket holds on 127.0.0.1 (a test server of the other pytest process, or any client
    connection's source port: connections to 127.0.0.2 leave from 127.0.0.1 too), and the
    node then failed to bind them."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def ray_command() -> list[str]:
    ray = Path(sys.executable).with_name("ray")
    return [str(ray)] if ray.exists() else [sys.executable, "-m", "ray.scripts.scripts"]


class LocalRayCluster:
    def __init__(self, root: Path, node_names: list[str], *, num_cpus: int = 1, extra_env: dict | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.node_names = node_names
        self.num_cpus = num_cpus
        self.extra_env = extra_env or {}
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        # Short: Ray's Unix socket paths live under it (at most 107 characters).
        self.temp_dir = tempfile.mkdtemp(prefix="bbray-", dir="/tmp")
        self._nodes: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, Path] = {}
        self._ports: dict[str, list[int]] = {}  # the ports each node was given at its last start
        self._address_given_out = False  # once the head has started, its GCS port stays (restart)
        self._seen: dict[int, psutil.Process] = {}  # every process of ours ever seen, by PID
        self._starting: list[str] = []  # nodes started but not yet waited for (start(wait=False))

    # -- lifecycle -----------------------------------------------------------------

    def start(self, wait: bool = True) -> LocalRayCluster:
        """The head, then the other nodes together (each takes seconds to start). ``wait=False``
        returns once the head is up, so that the caller's own start (a server's imports, say)
        overlaps the others'; ``wait_started`` then waits for them."""
        if not os.path.isdir(self.temp_dir):  # stopped before: a fresh session directory
            self.temp_dir = tempfile.mkdtemp(prefix="bbray-", dir="/tmp")
        try:
            head, *others = self.node_names
            self._start_node(head, head=True)
            self._wait_started_or_retry(head, head=True)
            self._address_given_out = True
            for name in others:
                self._start_node(name, head=False)
            self._starting = list(others)
        except BaseException:
            self.stop()
            raise
        if wait:
            self.wait_started()
        return self

    def wait_started(self) -> LocalRayCluster:
        """Wait for the nodes that ``start(wait=False)`` left starting; the cluster is stopped if one fails."""
        try:
            while self._starting:
                self._wait_started_or_retry(self._starting[0], head=False)
                self._starting.pop(0)
        except BaseException:
            self.stop()
            raise
        return self

    def _node_args(self, name: str, head: bool) -> list[str]:
        ports = {option: free_port() for option in NODE_PORT_OPTIONS}
        self._ports[name] = [*ports.values(), *([self.port] if head else [])]
        args = [
            "start", "--block", f"--node-ip-address={LOOPBACK}", f"--num-cpus={self.num_cpus}", "--num-gpus=0",
            f"--object-store-memory={OBJECT_STORE_BYTES}", "--disable-usage-stats",
            "--include-log-monitor=false", *(f"--{option}={port}" for option, port in ports.items()),
        ]
        if head:
            return [*args, "--head", f"--port={self.port}", "--include-dashboard=false", "--no-monitor",
                    f"--temp-dir={self.temp_dir}"]
        return [*args, f"--address={self.address}"]

    def _start_node(self, name: str, head: bool) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCHBOARD_", "RAY_"))}
        env.update(QUIET_ENV, BENCHBOARD_NODE_NAME=name, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **self.extra_env)
        if head:
            env.update(HEAD_ENV)
        log = self.root / f"ray-{name}.log"
        self._logs[name] = log
        with open(log, "w") as out:
            self._nodes[name] = subprocess.Popen(
                [*ray_command(), *self._node_args(name, head)], env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_started(self, name: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        popen = self._nodes[name]
        while "Ray runtime started" not in self._logs[name].read_text(errors="replace"):
            if taken := self._port_taken(name):  # else the head hangs on its GCS, Ray waits 30 s for a raylet
                port, log, line = taken
                raise RuntimeError(f"ray node {name} could not bind port {port}, already in use "
                                   f"({log}: {line}); its log: {self.log_tail(name)}")
            if popen.poll() is not None:
                raise RuntimeError(f"ray node {name} exited with {popen.returncode}: {self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"ray node {name} did not start in {START_TIMEOUT_S:g} s: {self.log_tail(name)}")
            time.sleep(0.2)
        self._remember()

    def _port_taken(self, name: str) -> tuple[int, str, str] | None:
        """gRPC's line in the GCS's or a raylet's log saying that a port this node was given was
        already in use, e.g. ``No address added out of total 1 resolved for '0.0.0.0:33925'
        {... Address already in use ...}``: whichever process then holds it, a start with
        fresh ports gets past it. Returns the port, the log's name and (the start of) that line."""
        for log in Path(self.temp_dir).glob("session_*/logs/*.err"):
            if log.name.startswith(("gcs_server", "raylet")):
                for line in log.read_text(errors="replace").splitlines():
                    for port in self._ports[name]:
                        if "Address already in use" in line and f"for '0.0.0.0:{port}'" in line:
                            return port, log.name, line[:200]
        return None

    def _wait_started_or_retry(self, name: str, head: bool) -> None:
        """Two failures of a node's start are ours to get past, so the node is ended (by PID)
        and started again, saying so on stderr; any other failure, or a third, is raised with
        the node's log tail:
        - a port it was given was taken meanwhile: free_port() releases its probe, and until
          Ray binds the port, any socket of any process may get it (a client connection's
          source port, say). The node starts again on fresh ports; the head on a fresh GCS
          port too, unless it is a restart, whose address the server holds.
        - Ray gives a raylet 30 s to register with the GCS, a fixed limit (node.py,
          ``raylet_start_wait_time_s``) that a loaded 2-core machine can miss."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return self._wait_started(name)
            except RuntimeError as error:
                taken = self._port_taken(name)
                timed_out = "timed out during startup" in self.log_tail(name, 200)
                if attempt == START_ATTEMPTS or not (taken or timed_out):
                    raise
                if taken and taken[0] == self.port and head:
                    if self._address_given_out:
                        raise RuntimeError(f"{error}\nthe address {self.address} is taken") from error
                    self.port = free_port()
                    self.address = f"{LOOPBACK}:{self.port}"
                what = "a port was taken" if taken else "timed out during its start"
                print(f"ray node {name}: {what} ({error}); starting it again (attempt {attempt + 1} of "
                      f"{START_ATTEMPTS})", file=sys.stderr)
                self.stop_node(name, graceful=False)
                self._start_node(name, head=head)

    def log_tail(self, name: str, lines: int = 20) -> str:
        return "\n".join(self._logs[name].read_text(errors="replace").splitlines()[-lines:])

    def _remember(self) -> None:
        for popen in self._nodes.values():
            try:
                root = psutil.Process(popen.pid)
                for process in [root, *root.children(recursive=True)]:
                    self._seen.setdefault(process.pid, process)
            except psutil.NoSuchProcess:
                pass

    def processes(self, name: str) -> list[psutil.Process]:
        """The node's ``ray start`` process and everything it started (raylet, workers, agents)."""
        try:
            root = psutil.Process(self._nodes[name].pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def raylet(self, name: str) -> psutil.Process:
        self._remember()
        return next(p for p in self.processes(name) if p.name() == "raylet")

    def kill_raylet(self, name: str) -> None:
        """SIGKILL the node's raylet: to the cluster, the node is lost (its workers then end too)."""
        self.raylet(name).send_signal(signal.SIGKILL)

    def stop_node(self, name: str, graceful: bool = True) -> None:
        """Stop one node by PID: as ``ray stop`` would (SIGTERM to its ``ray start --block``), or
        as a machine that dies (``graceful=False``: SIGKILL to each of its processes); then
        SIGKILL to whatever of that node is left. Stopping the head takes its GCS away."""
        self._remember()
        processes = self.processes(name)
        popen = self._nodes[name]
        if not graceful:
            # Deepest first: the measuring worker dies a moment before its actor, raylet and GCS,
            # the order in which a dying machine's news can reach the server.
            for process in reversed(processes):
                try:
                    process.kill()
                except psutil.NoSuchProcess:
                    pass
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
        for process in processes:
            try:
                if process.is_running():
                    process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(processes, timeout=10)

    def restart(self, wait: bool = True) -> LocalRayCluster:
        """Every node ended (SIGKILL: how the old cluster ends does not matter), then a new
        cluster started at the same address under the same names (``wait``: as in ``start``)."""
        self.stop(graceful=False)
        return self.start(wait=wait)

    def stop(self, graceful: bool = True) -> None:
        """End every process of every node: SIGTERM to ``ray start --block`` (which stops its
        node), then SIGKILL to whatever of ours is left, by PID."""
        self._starting = []
        self._remember()
        for popen in reversed(list(self._nodes.values())):
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        deadline = time.monotonic() + 20
        for popen in self._nodes.values():
            try:
                popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
        self._remember()
        for process in self._seen.values():
            try:
                if process.is_running():  # compares the start time too: never a reused PID
                    process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(list(self._seen.values()), timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)  # the session's sockets, logs and spilled objects

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
