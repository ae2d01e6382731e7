"""A real two-node Ray cluster on loopback (tests/integration/ray_local.py) and a real server
driving it (``BENCHBOARD_RAY_ADDRESS``): every node's devices listed, each node's measuring
worker at its node's niceness and thread settings (not Ray's), a run over both nodes, the head stopped and a new cluster started at its address while a run waits, a node
SIGKILLed mid-config. Nothing is mocked; the cluster is stopped by PID even when a test
fails. Also, without the flag the server never imports Ray, without Ray the flag says how
to install it, and a ray:// address is refused naming the flag.

The tests of this module share one cluster and one server and run in file order: the
fourth restarts the cluster (the one restart), the fifth kills a node. To keep them short on
a 2-core CI box: the second node starts while the server does, and again while the server
joins the restarted head; the nodes run no Ray process that nothing here uses; the app
without a Ray address starts in its own interpreter while the cluster does.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time

import httpx
import psutil
import pytest

from engine.nodes import ray_installed
from tests.integration.server import REPO_ROOT, start_server

needs_ray = pytest.mark.skipif(not ray_installed(), reason="needs the [ray] extra (pip install 'benchboard[ray]')")
TERMINAL = {"completed", "failed", "cancelled"}
API = "/api/benchmark"

# Workloads that build at once, except on the node called "second": there one leaves a
# marker next to this file and hangs, so the test knows that node is mid-config, and the
# other kills its worker process, as a segfault or an OOM kill would. The third hangs the
# first time it is built on the "head" node (a marker again), then builds at once.
SLOW_ON_SECOND = textwrap.dedent(
    """
    import os, time
    from pathlib import Path
    import torch
    from engine.models.spec import ModelSpec

    MARKER = Path(__file__).with_name("second-is-building")

    def build():
        if os.environ.get("BENCHBOARD_NODE_NAME") == "second":
            MARKER.touch()
            time.sleep(300)
        return torch.nn.Identity()

    def crash():
        if os.environ.get("BENCHBOARD_NODE_NAME") == "second":
            os._exit(3)
        return torch.nn.Identity()

    HEAD_MARKER = Path(__file__).with_name("head-is-building")

    def stall_once_on_head():
        if os.environ.get("BENCHBOARD_NODE_NAME") == "head" and not HEAD_MARKER.exists():
            HEAD_MARKER.touch()
            time.sleep(300)
        return torch.nn.Identity()

    def inputs(batch_size, sequence_length, image_size):
        return {"input": torch.zeros(batch_size, 4)}

    MODELS = [
        ModelSpec("slow-on-second", "test", "custom", "tabular", 0.0, build, inputs),
        ModelSpec("crash-on-second", "test", "custom", "tabular", 0.0, crash, inputs),
        ModelSpec("stall-once-on-head", "test", "custom", "tabular", 0.0, stall_once_on_head, inputs),
    ]
    """
)


def wait_until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} within {timeout_s:g} s"
        time.sleep(0.2)


def finished(server, run_id: str, timeout_s: float = 120.0) -> dict:
    def terminal():
        status = httpx.get(f"{server.url}{API}/status/{run_id}", timeout=10).json()
        return status if status["status"] in TERMINAL else None

    wait_until(terminal, timeout_s, f"run {run_id} did not finish")
    return httpx.get(f"{server.url}{API}/results/{run_id}", timeout=10).json()


def start_run(server, **body) -> str:
    body = {"batch_sizes": [1], "precision": "fp32", "force": True, "progressive_mode": False, **body}
    response = httpx.post(f"{server.url}{API}/run", json=body, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()["run_id"]


def hardware(server) -> dict[str, dict]:
    return {hw["name"]: hw for hw in httpx.get(f"{server.url}{API}/hardware", timeout=10).json()}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, server_without_ray):
    from tests.integration.ray_local import LocalRayCluster

    # The second node starts while the server starts (ray_server waits for it).
    running = LocalRayCluster(tmp_path_factory.mktemp("ray"), ["head", "second"]).start(wait=False)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def custom_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("custom")
    (folder / "slow_on_second.py").write_text(SLOW_ON_SECOND)
    return folder


@pytest.fixture(scope="module")
def ray_server(cluster, custom_dir, tmp_path_factory):
    # prestart_workers: each node's actor and worker start at once, in parallel, while the
    # first test looks at /hardware.
    with start_server(tmp_path_factory.mktemp("ray-server"), ray_address=cluster.address,
                      custom_benchmarks_dir=custom_dir, max_seconds=0.3, prestart_workers=True) as server:
        cluster.wait_started()  # the server joined when the head was up; the second joins meanwhile
        wait_until(lambda: {"head/cpu", "second/cpu"} <= set(hardware(server)), 120, "both nodes' CPUs were not listed")
        yield server


@needs_ray
@pytest.mark.timeout(240)
def test_hardware_lists_each_nodes_devices_with_node_host_and_liveness(ray_server):
    listed = hardware(ray_server)
    for node in ("head", "second"):
        cpu = listed[f"{node}/cpu"]
        assert (cpu["node"], cpu["host"], cpu["alive"], cpu["type"]) == (node, socket.gethostname(), True, "cpu")
    assert listed["cpu"]["node"] is None  # this server's own CPU, as without a cluster
    page = httpx.get(f"{ray_server.url}/runs", timeout=30).text  # the run form lists them too
    assert 'value="second/cpu"' in page and f"node second on {socket.gethostname()}" in page


@needs_ray
@pytest.mark.timeout(240)
def test_a_nodes_measuring_worker_runs_with_its_nodes_settings_not_rays(ray_server, cluster):
    # Ray starts its workers at nice 15 and with OMP_NUM_THREADS set; the measuring worker an
    # actor starts gets its node's values back, as a worker started by hand there would have.
    def measuring_worker(node):
        for process in cluster.processes(node):
            try:
                if "engine.worker" in " ".join(process.cmdline()):
                    return process
            except psutil.Error:  # a Ray worker that has just exited (a detection task's)
                pass
        return None

    for node in ("head", "second"):
        worker = wait_until(lambda node=node: measuring_worker(node), 180,
                            f"the measuring worker of {node} never started")  # prestarted by the server
        raylet = cluster.raylet(node)
        assert worker.parent().parent().pid == raylet.pid  # engine.worker <- the actor <- the raylet
        assert worker.nice() == raylet.nice() == 0
        assert "OMP_NUM_THREADS" not in worker.environ()
        assert worker.environ()["BENCHBOARD_NODE_NAME"] == node


@needs_ray
@pytest.mark.timeout(240)
def test_a_run_over_both_nodes_completes_with_rows_from_each(ray_server):
    # On the second node the first config kills its worker: that config fails as it would
    # locally, and the next one gets a fresh worker there. The server's own CPU measures too.
    outcome = finished(ray_server, start_run(ray_server, models=["crash-on-second", "bert-tiny"],
                                             hardware=["cpu", "*/cpu"]))
    assert outcome["status"] == "completed", outcome["failures"]
    rows = {(row["model_name"], row["hardware"]): row for row in outcome["results"]}
    assert set(rows) == {("crash-on-second", "cpu"), ("bert-tiny", "cpu"), ("crash-on-second", "head/cpu"),
                         ("bert-tiny", "head/cpu"), ("bert-tiny", "second/cpu")}
    for node in ("head", "second"):
        row = rows[("bert-tiny", f"{node}/cpu")]
        assert (row["node"], row["host"]) == (node, socket.gethostname())
        assert row["n_samples"] > 0 and row["p50_latency_ms"] > 0
    # The run names no threads: each node's worker measured with the default a local worker has
    # on this machine (Ray's OMP_NUM_THREADS=1 for its own workers does not reach it).
    assert {rows[("bert-tiny", hw)]["threads"] for hw in ("cpu", "head/cpu", "second/cpu")} == {
        rows[("bert-tiny", "cpu")]["threads"]}
    [crashed] = outcome["failures"]
    assert (crashed["model_name"], crashed["hardware"], crashed["node"]) == ("crash-on-second", "second/cpu", "second")
    assert crashed["error_type"] == "worker_crashed" and "code 3" in crashed["error_message"]


@needs_ray
@pytest.mark.timeout(300)
def test_a_run_waits_while_the_head_is_gone_and_completes_on_the_cluster_started_again(
    ray_server, cluster, custom_dir
):
    # A config is in flight on the head when the head goes away as a machine that dies does
    # (SIGKILL, by PID): its GCS, its raylet, its actor and the worker measuring there.
    in_flight = start_run(ray_server, models=["stall-once-on-head"], hardware=["head/cpu"])
    wait_until((custom_dir / "head-is-building").exists, 120, "the head never started its config")
    cluster.stop_node("head", graceful=False)
    wait_until(lambda: "lost the Ray cluster at" in ray_server.output(), 60, "the server never noticed the head left")

    # A run asked for now is accepted, and waits: nothing fails while the cluster is away.
    run_id = start_run(ray_server, models=["bert-tiny"], hardware=["head/cpu", "second/cpu"])

    def status():
        return httpx.get(f"{ray_server.url}{API}/status/{run_id}", timeout=10).json()

    def waiting_for_the_cluster():
        now = status()
        return now if "waiting for the Ray cluster" in (now["current_step"] or "") else None

    waiting = wait_until(waiting_for_the_cluster, 30, "the run never said it waits for the cluster")
    assert waiting["status"] == "queued" and cluster.address in waiting["current_step"]
    time.sleep(1.5)  # still waiting a while later (the server looked for the head again meanwhile): queued, not failed
    assert status()["status"] == "queued" and status()["completed_configs"] == 0

    # A new cluster at the same address, under the same node names: the server joins it,
    # detects its nodes again, starts new actors there, and the run completes on both nodes.
    # The second node starts while the server joins the new head.
    cluster.restart(wait=False)
    outcome = finished(ray_server, run_id, timeout_s=240)
    cluster.wait_started()
    assert ray_server.alive()  # Ray's driver did not take the server down with the old cluster
    # The config the drop cut off was measured again on the new head, not failed.
    again = finished(ray_server, in_flight, timeout_s=60)
    assert again["status"] == "completed" and not again["failures"], [
        (row["error_type"], row["error_message"]) for row in again["failures"]]
    assert [(row["model_name"], row["hardware"]) for row in again["results"]] == [("stall-once-on-head", "head/cpu")]
    assert outcome["status"] == "completed", outcome["failures"]
    assert not outcome["failures"]
    assert {(row["hardware"], row["node"]) for row in outcome["results"]} == {
        ("head/cpu", "head"), ("second/cpu", "second")}
    listed = hardware(ray_server)
    assert listed["head/cpu"]["alive"] and listed["second/cpu"]["alive"]
    assert "reconnected to the Ray cluster at" in ray_server.output()


@needs_ray
@pytest.mark.timeout(240)
def test_a_node_killed_mid_config_fails_only_its_config_as_node_lost(ray_server, cluster, custom_dir):
    run_id = start_run(ray_server, models=["bert-tiny", "slow-on-second"], hardware=["head/cpu", "second/cpu"])
    wait_until((custom_dir / "second-is-building").exists, 120, "the second node never started its slow config")
    cluster.kill_raylet("second")
    outcome = finished(ray_server, run_id)

    assert outcome["status"] == "completed"
    head_rows = {row["model_name"] for row in outcome["results"] if row["hardware"] == "head/cpu"}
    assert head_rows == {"bert-tiny", "slow-on-second"}  # the head's configs all completed
    lost = {row["model_name"]: row for row in outcome["failures"] if row["hardware"] == "second/cpu"}
    assert lost["slow-on-second"]["error_type"] == "node_lost"
    assert lost["slow-on-second"]["node"] == "second"
    # Whatever else was left for the second node could not run there either.
    assert all(row["error_type"] == "node_lost" for row in lost.values())
    assert not [row for row in outcome["failures"] if row["hardware"] == "head/cpu"]

    # The node is listed as gone, and a run naming it is refused with the reason.
    wait_until(lambda: not hardware(ray_server)["second/cpu"]["alive"], 30, "the lost node was still listed alive")
    refused = httpx.post(f"{ray_server.url}{API}/run", json={"models": ["bert-tiny"], "hardware": ["second/cpu"]})
    assert refused.status_code == 400
    assert "hardware" in refused.text and "left the cluster" in refused.text


NO_RAY_SCRIPT = """
import sys
from litestar.testing import TestClient
from webapp.app import create_app
from webapp.wiring.settings import Settings

folder = sys.argv[1]
settings = Settings(db_path=f"{folder}/db.duckdb", results_dir=f"{folder}/results", log_dir=f"{folder}/logs",
                    prestart_workers=False, resume=False,
                    allowed_hosts=["testserver.local"])  # the Host that Litestar's TestClient sends
with TestClient(create_app(settings)) as client:
    assert client.get("/api/benchmark/hardware").status_code == 200
    refused = client.post("/api/benchmark/run", json={"models": ["bert-tiny"], "hardware": ["gpu-a/cuda:0"]})
    assert refused.status_code == 400, refused.text
print("ray imported" if "ray" in sys.modules else "ray not imported")
"""


@pytest.fixture(scope="module")
def server_without_ray(tmp_path_factory):
    """A fresh interpreter running the app without a Ray address, started before the cluster
    (``cluster`` asks for it) so that its imports overlap the cluster's start; its test reads
    what it printed."""
    folder = tmp_path_factory.mktemp("no-ray")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env = {name: value for name, value in env.items() if not name.startswith("BENCHBOARD_")}
    with open(folder / "out", "w") as out, open(folder / "err", "w") as err:
        probe = subprocess.Popen([sys.executable, "-c", NO_RAY_SCRIPT, str(folder)], cwd=REPO_ROOT, env=env,
                                 stdout=out, stderr=err, text=True)
    try:
        yield probe, folder
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()


def test_a_server_without_a_ray_address_never_imports_ray(server_without_ray):
    """In a fresh interpreter: the app's whole lifespan, /hardware and a planned run, then sys.modules."""
    probe, folder = server_without_ray
    assert probe.wait(timeout=180) == 0, (folder / "err").read_text()[-2000:]
    assert (folder / "out").read_text().strip().splitlines()[-1] == "ray not imported"


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_ray_client_address_is_refused_naming_the_flag(how):
    # Ray Client ends a session's actors once its connection is down for 30 s (Ray's docs):
    # refused before anything starts, exit 2.
    argv = ["hardware"] + (["--ray-address", "ray://127.0.0.2:10001"] if how == "flag" else [])
    env = {name: value for name, value in os.environ.items() if not name.startswith("BENCHBOARD_")}
    if how == "environment":
        env["BENCHBOARD_RAY_ADDRESS"] = "ray://127.0.0.2:10001"
    done = subprocess.run([sys.executable, "-c", f"import sys; from webapp.cli.main import main; sys.exit(main({argv!r}))"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "--ray-address ray://127.0.0.2:10001" in done.stderr and "Ray Client" in done.stderr
    assert ("BENCHBOARD_RAY_ADDRESS" in done.stderr) == (how == "environment")


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_ray_address_without_ray_installed_exits_2_saying_how_to_install_it(tmp_path, how):
    # Ray is installed here; None in sys.modules makes it absent to this interpreter.
    argv = ["hardware"] + (["--ray-address", "127.0.0.2:1"] if how == "flag" else [])
    script = (
        "import sys; sys.modules['ray'] = None\n"
        "from webapp.cli.main import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("BENCHBOARD_")}
    if how == "environment":
        env["BENCHBOARD_RAY_ADDRESS"] = "127.0.0.2:1"
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pip install 'benchboard[ray]'" in done.stderr
