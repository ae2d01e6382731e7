"""Measuring on the devices of a Ray cluster's nodes (``--ray-address``, the ``[ray]`` extra).

The server becomes a Ray driver. For each node it runs the engine's hardware detection on
that node (a short task pinned there), names the node (engine.nodes) and lists its devices
as ``NODE/DEVICE``. Each device of each node then gets one long-lived actor, pinned to the
node with ``NodeAffinitySchedulingStrategy`` (CUDA actors reserve ``num_gpus=1``), that
holds the same worker loop as a local device: a ``python -m engine.worker`` process started
on the actor's node through ``WorkerProcess``. So torch is imported once per node and
device, and a worker crash there behaves as it does locally: only the config in flight
fails, with its reason, and the next config gets a fresh worker.

Jobs go to the actor and results come back to the driver as the worker pipe's JSON; the
server stays the only DuckDB writer. A node that dies mid-config fails that config with
``node_lost``; configs still to run there fail the same way, and the run goes on elsewhere.
A monitor thread follows the cluster's node table: nodes that join are detected and listed,
nodes that leave are listed as not alive.

The connection to the cluster may drop (the head stopped, its GCS dead). The server then
waits: configs still to run on the cluster's devices wait, their runs saying so
(``unavailable``), and the monitor looks for the head on a backoff. A head that comes back
with its state (Ray's GCS fault tolerance) is the same cluster, and the connection goes on. A
head started afresh at the address is a new cluster: the server leaves the old one
(``ray.shutdown``), joins the new one (``ray.init``), detects its nodes again (a node back
under its ``BENCHBOARD_NODE_NAME`` keeps its name) and starts new actors, and the waiting
configs run. A config whose result the drop cut off is measured again once the cluster is
back; nodes that were in the cluster before the drop get ``node_lost_grace_s`` to rejoin.

Ray's own driver aborts the whole process when a call to the head's GCS that it made
before the drop is answered by a different cluster. So the node table is read through a
GCS client of ours, with a timeout, which raises instead; and while the connection is down
nothing here calls Ray's driver about the cluster (no actor is created, no task submitted).

Nothing here imports torch at module level: actor processes import this module, and only
the worker process they start pays for torch.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec
import psutil

# With the connection down, a Ray call must raise rather than start a cluster of its own.
os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")

import ray  # noqa: E402
from ray._raylet import GcsClient  # noqa: E402 - the client Ray's own libraries use for the GCS
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: E402

from engine.config import Job
from engine.errors import EngineError
from engine.nodes import (
    NODE_NAME_VARIABLE, SEPARATOR, ClusterDevice, NodeIdentity, assign_names, split, unsupported_ray_address,
)
from engine.result import FAILED, Measurement
from engine.worker_client import WorkerProcess

if TYPE_CHECKING:
    from engine.hardware import HardwareInfo

log = logging.getLogger(__name__)

NAMESPACE = "benchboard"
REFRESH_S = 2.0  # how often the monitor looks at ray.nodes()
DETECT_TIMEOUT_S = 300.0  # a node's first task starts a Python process that imports torch
ACTOR_START_TIMEOUT_S = 300.0  # placing the actor and starting its worker (torch's import)
POLL_S = 0.25  # how often a config in flight checks for a cancel and for its node
CANCEL_GRACE_S = 15.0
# How long a dead actor's node may take to be declared dead by Ray's health checks
# (health_check_period_ms x health_check_failure_threshold, 3 s x 5 by default).
NODE_LOST_GRACE_S = 30.0
CALL_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
GCS_CALL_TIMEOUT_S = 10.0  # one read of the node table
# Consecutive failed reads of the node table (REFRESH_S apart) after which the connection is
# down; a refused connection, or an answer from another cluster, counts at once.
FAILURES_TO_DROP = 2
RECONNECT_BACKOFF_S = (1.0, 2.0, 3.0, 5.0)  # between looks for the head (a TCP connect), then 5 s each
# How long the server, as Ray's driver, waits for the head's GCS to come back before Ray ends
# the process (Ray's own default is 60 s). Meanwhile configs in flight go on (a driver talks
# to its actors directly), queued ones wait, and nodes are not declared lost.
GCS_RECONNECT_S = 7 * 24 * 3600
# Ray sets these in its worker processes (OMP_NUM_THREADS=1 for actors that reserve no CPU);
# the measuring worker gets the node's own values, as a worker started by hand there would.
THREAD_VARIABLES = ("OMP_NUM_THREADS",)
# Ray's raylet also starts its workers at nice 15 (its ``worker_niceness``), and the measuring
# worker would inherit that: a lower CPU priority than a worker started by hand on the node, so
# under any load it is the first to wait. The actor takes its raylet's niceness back before it
# starts the worker; where it may not (no CAP_SYS_NICE), it says so and how to start the node.
NICENESS_HINT = "start the node with RAY_worker_niceness=0 in the environment of `ray start`"
# A GPU actor sees every GPU of its node, so cuda:N means what detection found there;
# Ray still counts the GPU the actor reserved.
GPU_ACTOR_ENV = {
    "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1",
    "RAY_EXPERIMENTAL_NOSET_HIP_VISIBLE_DEVICES": "1",
}
GPU_TYPES = ("cuda", "rocm")
ALIVE = 0  # GcsNodeInfo.GcsNodeState.ALIVE in Ray's gcs.proto
UNREACHABLE = "cluster_unreachable"  # a config the connection's drop cut off: measured again
# Failures that the head's death can cause as well: before one is final, SETTLE_S later, the
# head is asked whether it is still there.
SUSPECT_ERRORS = ("worker_crashed", "worker_start_failed", "node_lost", "timeout")
SETTLE_S = 1.0


class ClusterError(EngineError):
    """The Ray cluster cannot be reached or used."""


class NodeReport(msgspec.Struct, kw_only=True):
    """What detection on a node found: its hostname, its raylet's BENCHBOARD_NODE_NAME, its devices
    (engine.hardware.HardwareInfo, by their names there) and each device's environment."""

    hostname: str
    node_name: str | None = None
    devices: list[dict] = []
    environments: dict[str, dict] = {}


class _Node(msgspec.Struct, kw_only=True):
    node_id: str
    name: str
    host: str
    env_name: str | None  # BENCHBOARD_NODE_NAME of its raylet
    ip: str | None
    alive: bool
    devices: list  # HardwareInfo of the node, names as the node calls them
    environments: dict[str, dict]


class Binding(msgspec.Struct, frozen=True, kw_only=True):
    """Where a cluster device lives now."""

    name: str  # NODE/DEVICE
    node_id: str
    node: str
    host: str
    device: str  # the node's own name for it
    type: str
    uuid: str | None = None
    memory_bytes: int = 0
    alive: bool = True


# ---- on the nodes --------------------------------------------------------------------


def _raylet() -> psutil.Process | None:
    """This node's raylet, when it is our parent (we are a Ray worker), else None."""
    try:
        parent = psutil.Process(os.getppid())
        if "raylet" in parent.name():
            return parent
    except (psutil.Error, OSError):
        pass
    return None


def _raylet_environment() -> dict[str, str]:
    """The environment ``ray start`` gave this node's raylet (a Ray worker's parent), else ours."""
    raylet = _raylet()
    if raylet is not None:
        try:
            return raylet.environ()
        except (psutil.Error, OSError):
            pass
    return dict(os.environ)


def _node_process_settings() -> None:
    """Undo what Ray set for its own worker process and the node itself did not ask for: the
    thread variables and the niceness, which the measuring worker this process starts inherits."""
    raylet = _raylet_environment()
    for variable in THREAD_VARIABLES:
        if variable in raylet:
            os.environ[variable] = raylet[variable]
        else:
            os.environ.pop(variable, None)
    _restore_niceness()


def _restore_niceness() -> None:
    """Every thread of this process at its raylet's niceness (Linux keeps a nice value per thread,
    and a child process gets the one of the thread that starts it); a warning where not allowed."""
    raylet = _raylet()
    if raylet is None or not hasattr(os, "setpriority"):
        return
    try:
        wanted = raylet.nice()
    except (psutil.Error, OSError):
        return
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]  # this thread only
    try:
        for tid in threads:
            if os.getpriority(os.PRIO_PROCESS, tid) != wanted:
                os.setpriority(os.PRIO_PROCESS, tid, wanted)
    except PermissionError:
        log.warning("this Ray worker runs at nice %d and may not take its raylet's nice %d back, so the node's "
                    "measuring worker runs at a lower CPU priority than one started by hand there; %s",
                    os.getpriority(os.PRIO_PROCESS, 0), wanted, NICENESS_HINT)
    except (ProcessLookupError, OSError):
        pass  # a thread that ended meanwhile


def detect_node() -> bytes:
    """Run on a node: its name variable, hostname, devices and their environments, as JSON."""
    _node_process_settings()  # before torch's import: its default thread count reads them
    from engine.hardware import detect_hardware, environment

    raylet = _raylet_environment()
    devices = detect_hardware()
    report = NodeReport(
        hostname=socket.gethostname(),
        node_name=(raylet.get(NODE_NAME_VARIABLE) or "").strip() or None,
        devices=[msgspec.to_builtins(hw) for hw in devices],
        environments={hw.name: environment(hw.name) for hw in devices},
    )
    return msgspec.json.encode(report)


class DeviceActor:
    """One device of one node: its long-lived ``engine.worker`` and the questions only it can answer.

    Threaded (``max_concurrency``), so that ``cancel`` reaches a ``run`` in flight.
    """

    def __init__(
        self, device: str, hardware_type: str, uuid: str | None, node_name: str,
        models_dir: str | None, custom_benchmarks_dir: str | None,
    ):
        _node_process_settings()
        self._device = device
        self._type = hardware_type
        self._uuid = uuid
        # ``env`` is read now, after the thread settings above; the worker gets the node's name too.
        self._worker = WorkerProcess(
            device, models_dir=models_dir, custom_benchmarks_dir=custom_benchmarks_dir,
            env={NODE_NAME_VARIABLE: node_name},
        )

    def run(self, job_json: bytes, timeout_s: float | None) -> bytes:
        job = msgspec.json.decode(job_json, type=Job)
        _restore_niceness()  # Ray's pool threads, one of which may start the worker now, included
        return msgspec.json.encode(self._worker.run(job, timeout_s))

    def ping(self, timeout_s: float) -> bool:
        _restore_niceness()
        return self._worker.ping(timeout_s)

    def cancel(self) -> bool:
        return self._worker.cancel()

    def free_memory_bytes(self) -> int | None:
        if self._type not in ("cuda", "rocm", "xpu"):
            return int(psutil.virtual_memory().available)  # CPU, and MPS's unified memory
        if self._type == "cuda":
            from engine import nvml

            _, _, index = self._device.partition(":")
            free = nvml.free_memory_bytes(nvml.device_handle(self._uuid, int(index) if index.isdigit() else None))
            if free is not None:
                return free
        ask = getattr(self._worker, "free_memory_bytes", None)
        return ask() if ask is not None else None

    def where(self) -> dict:
        return {"pid": os.getpid(), "hostname": socket.gethostname(), "worker_pid": self._worker.pid,
                "nice": os.getpriority(os.PRIO_PROCESS, 0)}

    def close(self) -> None:
        self._worker.close()


_remote_detect = None
_remote_actor = None


def _detect_task():
    global _remote_detect
    if _remote_detect is None:
        # A fresh process each time (max_calls=1): torch's memory goes when detection is done.
        _remote_detect = ray.remote(num_cpus=0, max_calls=1, max_retries=0)(detect_node)
    return _remote_detect


def _actor_class():
    global _remote_actor
    if _remote_actor is None:
        _remote_actor = ray.remote(num_cpus=0, max_concurrency=4, max_restarts=0)(DeviceActor)
    return _remote_actor


# ---- on the server -------------------------------------------------------------------


class RayCluster:
    """The cluster's nodes and devices as the server sees them; ``worker(name)`` for the scheduler."""

    def __init__(
        self,
        address: str,
        *,
        models_dir: str | None = None,
        custom_benchmarks_dir: str | None = None,
        refresh_s: float = REFRESH_S,
        node_lost_grace_s: float = NODE_LOST_GRACE_S,
    ):
        self.address = address
        self._models_dir = models_dir
        self._custom_benchmarks_dir = custom_benchmarks_dir
        self._refresh_s = refresh_s
        self.node_lost_grace_s = node_lost_grace_s
        self._lock = threading.RLock()
        self._nodes: dict[str, _Node] = {}  # node id -> node, every node detected
        self._names: dict[str, str] = {}  # node id -> name, sticky
        self._alive: dict[str, bool] = {}  # node id -> alive, as ray.nodes() last said
        self._failed_detections: dict[str, float] = {}  # node id -> when to try again
        self._workers: dict[str, RayDeviceWorker] = {}
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        # The connection: our own client of the head's GCS (node table reads, with a timeout),
        # the cluster it belongs to, and whether it is up. ``losses`` counts the drops, so a
        # config can tell that one cut it off.
        self._gcs = None
        self._gcs_address = address
        self._cluster_id: str | None = None
        self._connected = False
        self._connection = threading.Condition(self._lock)
        self.losses = 0
        self._down_since: float | None = None  # time.time() of the drop
        self._rejoining: set[str] = set()  # node names alive when the connection dropped
        self._rejoin_until = 0.0  # monotonic: until when those nodes' configs wait for them
        self._restart_after_rejoin: list[RayDeviceWorker] = []

    # -- lifecycle ---------------------------------------------------------------------

    def connect(self) -> RayCluster:
        """Join the cluster as its driver and detect every live node; raises ClusterError."""
        refused = unsupported_ray_address(self.address)
        if refused is not None:
            raise ClusterError(refused)
        _check_reachable(self.address)  # ray.init retries an unreachable address for minutes
        os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", str(GCS_RECONNECT_S))
        try:
            from ray._private import auto_init_hook  # where Ray read RAY_ENABLE_AUTO_CONNECT

            auto_init_hook.enable_auto_connect = False
        except (ImportError, AttributeError):
            pass
        try:
            self._join()
        except Exception as error:  # noqa: BLE001 - Ray raises several kinds; all mean "not reachable"
            raise ClusterError(f"cannot connect to the Ray cluster at {self.address}: {error}") from None
        self.refresh()
        with self._lock:
            self._connected = True
        self._monitor = threading.Thread(target=self._follow, name="ray-nodes", daemon=True)
        self._monitor.start()
        log.info("connected to Ray at %s: %s", self.address, ", ".join(
            f"{node.name} ({'alive' if node.alive else 'gone'})" for node in self._nodes.values()
        ) or "no nodes")
        return self

    def _join(self) -> None:
        """``ray.init`` as the cluster's driver (unless joined already), and a GCS client of ours."""
        if not ray.is_initialized():
            ray.init(
                address=self.address, namespace=NAMESPACE, log_to_driver=False,
                logging_level=logging.WARNING, configure_logging=False,
            )
        # The address as given, where it names one: a head that comes back elsewhere (a new pod
        # behind the same Service name) is found again under it. ``auto``: the one Ray found.
        gcs_address = ray.get_runtime_context().gcs_address if self.address == "auto" else self.address
        gcs = GcsClient(address=gcs_address)  # asks the GCS for its cluster id
        with self._lock:
            self._gcs, self._gcs_address, self._cluster_id = gcs, gcs_address, gcs.cluster_id.hex()

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    def wait_connected(self, timeout_s: float) -> bool:
        with self._connection:
            self._connection.wait_for(lambda: self._connected or self._stop.is_set(), timeout_s)
            return self._connected

    def unavailable(self, name: str) -> str | None:
        """Why the device cannot measure now (the connection is down, or its node has not
        rejoined yet after a reconnection); None when it can."""
        with self._lock:
            if not self._connected:
                since = time.strftime("%H:%M:%S", time.gmtime(self._down_since or time.time()))
                return (f"waiting for the Ray cluster at {self.address} (unreachable since {since} UTC); "
                        "its configs run once it is back")
            parts = split(name)
            if parts is not None and parts[0] in self._rejoining and time.monotonic() < self._rejoin_until:
                node = self._current().get(parts[0])
                if node is None or not node.alive:
                    return f"waiting for node {parts[0]} to rejoin the Ray cluster at {self.address}"
        return None

    def dropped_since(self, losses: int) -> bool:
        """Whether the connection dropped after ``losses`` was read. When the head refuses
        connections but the monitor has not said so yet, waits for it to."""
        with self._connection:
            if self.losses != losses or not self._connected:
                return True
        try:
            _check_reachable(self._gcs_address)
            return False
        except ClusterError:
            pass
        with self._connection:
            self._connection.wait_for(lambda: self.losses != losses or self._stop.is_set(),
                                      FAILURES_TO_DROP * self._refresh_s + GCS_CALL_TIMEOUT_S)
            return self.losses != losses

    def _lost(self, error: Exception) -> None:
        with self._lock:
            if not self._connected:
                return
            self._connected = False
            self.losses += 1
            self._down_since = time.time()
            self._rejoining = {node.name for node in self._nodes.values() if node.alive}
            self._connection.notify_all()
        log.warning("lost the Ray cluster at %s (%s); its configs wait, and the server looks for it again",
                    self.address, str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)

    def _rejoin(self) -> bool:
        """One look for the head: True once connected again (to the same cluster, or a new one)."""
        try:
            _check_reachable(self._gcs_address)
            probe = GcsClient(address=self._gcs_address)
            cluster_id = probe.cluster_id.hex()
        except Exception:  # noqa: BLE001 - not back yet
            return False
        fresh = cluster_id != self._cluster_id
        if fresh:
            # A new cluster: our actors, tasks and objects belonged to the old one. Leaving it
            # now, before anything of ours asks the new GCS, is what keeps Ray from aborting.
            log.warning("the Ray cluster at %s is a new one: joining it", self.address)
            with self._lock:
                workers = list(self._workers.values())
            self._restart_after_rejoin += [worker for worker in workers if worker.forget_actor()]
            try:
                ray.shutdown()
            except Exception as error:  # noqa: BLE001
                log.warning("leaving the old Ray cluster: %s", error)
            with self._lock:
                self._alive = {}  # the old cluster's nodes are gone; those that come back are new nodes
                for node in self._nodes.values():
                    node.alive = False
        try:
            if fresh:
                self._join()
            else:
                with self._lock:
                    self._gcs = probe
            self.refresh()
        except Exception as error:  # noqa: BLE001 - not ready yet (its raylet still starting): try again
            log.info("the Ray cluster at %s is not ready yet: %s", self.address, error)
            with self._lock:
                self._connected = False
            return False
        with self._lock:
            self._connected = True
            self._down_since = None
            self._rejoin_until = time.monotonic() + self.node_lost_grace_s
            self._connection.notify_all()
        log.warning("reconnected to the Ray cluster at %s (%s): %s", self.address,
                    "a new cluster" if fresh else "the same cluster",
                    ", ".join(f"{n.name} ({'alive' if n.alive else 'gone'})" for n in self._nodes.values()))
        # The devices that had actors get them again at once, in parallel, as at the server's
        # start: the configs waiting for them do not each pay for a worker's start in turn.
        restart, self._restart_after_rejoin = self._restart_after_rejoin, []
        for worker in restart:
            threading.Thread(target=self._restart_worker, args=(worker,), name=f"restart-{worker.device}",
                             daemon=True).start()
        return True

    def _restart_worker(self, worker: RayDeviceWorker) -> None:
        while time.monotonic() < self._rejoin_until and not self._stop.is_set():
            found = self.binding(worker.device)
            if found is not None and found.alive:
                worker.ping()
                return
            self._stop.wait(self._refresh_s)  # its node has not rejoined yet

    def close(self) -> None:
        self._stop.set()
        with self._connection:
            self._connection.notify_all()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.close()
        if self._monitor is not None:
            self._monitor.join(timeout=self._refresh_s + CALL_TIMEOUT_S)
        if ray.is_initialized():
            ray.shutdown()

    # -- nodes -------------------------------------------------------------------------

    def _node_table(self) -> tuple[dict[str, bool], dict[str, str | None]]:
        """node id -> alive, node id -> IP, read from the head's GCS with a timeout. Raises
        when the GCS does not answer, or answers for another cluster."""
        with self._lock:
            gcs, address = self._gcs, self._gcs_address
        if gcs is None:
            raise ClusterError(f"not connected to the Ray cluster at {self.address}")
        _check_reachable(address)  # refused at once when the head is gone
        listed = gcs.get_all_node_info(timeout=GCS_CALL_TIMEOUT_S)
        alive = {node_id.hex(): info.state == ALIVE for node_id, info in listed.items()}
        ips = {node_id.hex(): info.node_manager_address or None for node_id, info in listed.items()}
        return alive, ips

    def refresh(self) -> None:
        """Look at the cluster's nodes now: detect the new ones, mark those that left."""
        alive, ips = self._node_table()
        now = time.monotonic()
        with self._lock:
            self._alive.update(alive)
            for node in self._nodes.values():
                node.alive = self._alive.get(node.node_id, False)
            new = [
                node_id for node_id, up in alive.items()
                if up and node_id not in self._nodes and self._failed_detections.get(node_id, 0.0) <= now
            ]
        if new:
            self._detect(new, ips)

    def _detect(self, node_ids: list[str], ips: dict[str, str | None]) -> None:
        task = _detect_task()
        refs = {
            node_id: task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
            for node_id in node_ids
        }
        reports: dict[str, NodeReport] = {}
        for node_id, ref in refs.items():
            try:
                reports[node_id] = msgspec.json.decode(ray.get(ref, timeout=DETECT_TIMEOUT_S), type=NodeReport)
            except Exception as error:  # noqa: BLE001 - a node that cannot answer is retried later
                log.warning("hardware detection on Ray node %s failed: %s", node_id[:12], error)
                with self._lock:
                    self._failed_detections[node_id] = time.monotonic() + 30.0
        if not reports:
            return
        from engine.hardware import HardwareInfo

        with self._lock:
            identities = [
                NodeIdentity(node_id=node_id, hostname=report.hostname, node_name=report.node_name, ip=ips.get(node_id))
                for node_id, report in reports.items()
            ]
            # A node back under its BENCHBOARD_NODE_NAME takes its name from its dead predecessor.
            comeback = {
                node_id for node_id, name in self._names.items()
                if not self._alive.get(node_id, False)
                and any(identity.node_name and name == identity.node_name.lower() for identity in identities)
            }
            for node_id in comeback:
                del self._names[node_id]
                self._nodes.pop(node_id, None)
            known = [
                NodeIdentity(node_id=node.node_id, hostname=node.host, node_name=node.env_name, ip=node.ip)
                for node in self._nodes.values()
            ]
            self._names = assign_names([*known, *identities], self._names)
            for node_id, report in reports.items():
                self._nodes[node_id] = _Node(
                    node_id=node_id,
                    name=self._names[node_id],
                    host=report.hostname,
                    env_name=report.node_name,
                    ip=ips.get(node_id),
                    alive=self._alive.get(node_id, True),
                    devices=[msgspec.convert(device, HardwareInfo) for device in report.devices],
                    environments=report.environments,
                )
                self._failed_detections.pop(node_id, None)
                log.info("Ray node %s (%s, host %s): %s", self._names[node_id], node_id[:12], report.hostname,
                         ", ".join(hw.name for hw in self._nodes[node_id].devices))

    def _follow(self) -> None:
        failures, attempt, next_look = 0, 0, 0.0

        def pause() -> float:  # the node table every refresh_s; while disconnected, the backoff
            return self._refresh_s if self.connected else max(0.0, next_look - time.monotonic())

        while not self._stop.wait(pause()):
            if not self.connected:
                if self._rejoin():
                    attempt = 0
                else:
                    next_look = time.monotonic() + RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)]
                    attempt += 1
                continue
            try:
                self.refresh()
                failures = 0
            except Exception as error:  # noqa: BLE001 - keep following; the cluster may come back
                failures += 1
                if failures >= FAILURES_TO_DROP or _definitely_gone(error):
                    failures, next_look = 0, 0.0
                    self._lost(error)
                else:
                    log.warning("cannot read the Ray cluster's nodes: %s", error)

    def node_alive(self, node_id: str) -> bool:
        with self._lock:
            return self._alive.get(node_id, False)

    def wait_node_dead(self, node_id: str, timeout_s: float) -> bool:
        """True once Ray says the node is dead, False if it is still alive after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.connected:
                return False  # the cluster itself is unreachable: no verdict on the node
            try:
                listed, _ = self._node_table()
            except Exception:  # noqa: BLE001 - the cluster itself is unreachable: no verdict on the node
                listed = {node_id: True}
            alive = listed.get(node_id, False)
            with self._lock:
                self._alive[node_id] = alive
                if node_id in self._nodes:
                    self._nodes[node_id].alive = alive
            if not alive:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.25)

    # -- devices -----------------------------------------------------------------------

    def _current(self) -> dict[str, _Node]:
        """Node name -> the node that has that name now."""
        with self._lock:
            return {node.name: node for node in self._nodes.values()}

    def devices(self) -> list[ClusterDevice]:
        with self._lock:
            return [
                ClusterDevice(name=f"{node.name}{SEPARATOR}{hw.name}", node=node.name, device=hw.name,
                              type=hw.type, alive=node.alive)
                for node in sorted(self._nodes.values(), key=lambda n: n.name)
                for hw in node.devices
            ]

    def hardware(self) -> list[HardwareInfo]:
        """Every node's devices named NODE/DEVICE, with their node, host and whether it is alive."""
        with self._lock:
            return [
                msgspec.structs.replace(
                    hw, name=f"{node.name}{SEPARATOR}{hw.name}", node=node.name, host=node.host, alive=node.alive
                )
                for node in sorted(self._nodes.values(), key=lambda n: n.name)
                for hw in node.devices
            ]

    @staticmethod
    def owns(name: str) -> bool:
        return split(name) is not None

    def binding(self, name: str) -> Binding | None:
        parts = split(name)
        if parts is None:
            return None
        node_name, device = parts
        with self._lock:
            node = self._current().get(node_name)
            hw = next((hw for hw in node.devices if hw.name == device), None) if node else None
            if hw is None:
                return None
            return Binding(
                name=name, node_id=node.node_id, node=node.name, host=node.host, device=hw.name, type=hw.type,
                uuid=hw.uuid, memory_bytes=int(hw.memory_gb * 1024**3), alive=node.alive,
            )

    def describe(self, name: str) -> HardwareInfo:
        """The device as detected, for hardware_platforms (alive as it was then: not a stored fact)."""
        found = self.binding(name)
        if found is None:
            from engine.errors import UnknownHardwareError

            raise UnknownHardwareError(name, [device.name for device in self.devices()])
        with self._lock:
            node = self._nodes[found.node_id]
            hw = next(hw for hw in node.devices if hw.name == found.device)
            return msgspec.structs.replace(hw, name=name, node=node.name, host=node.host)

    def environment(self, name: str) -> dict:
        """The device's facts as measured on its node (its torch, driver and CUDA versions), plus
        the node and host."""
        found = self.binding(name)
        if found is None:
            from engine.errors import UnknownHardwareError

            raise UnknownHardwareError(name, [device.name for device in self.devices()])
        with self._lock:
            facts = dict(self._nodes[found.node_id].environments.get(found.device, {}))
        return {**facts, "hardware": name, "node": found.node, "host": found.host}

    def machine_of(self, name: str) -> str:
        """The machine a device is on, for one config at a time per machine: its node's host."""
        found = self.binding(name)
        return found.host if found is not None else name

    def worker(self, name: str) -> RayDeviceWorker:
        with self._lock:
            if name not in self._workers:
                self._workers[name] = RayDeviceWorker(self, name)
            return self._workers[name]

    def free_memory_bytes(self, name: str) -> int:
        """Free memory of the device, asked on its node; its total where the node cannot say
        (a lost node then fails the config as node_lost rather than as refused)."""
        found = self.binding(name)
        if found is None:
            return 2**62  # not refused: its run() says the node is gone
        free = self.worker(name).free_memory_bytes() if found.alive else None
        if free is None:
            log.warning("free memory of %s is unknown; assuming its total", name)
            return found.memory_bytes
        return int(free)

    def actor_options(self, found: Binding) -> dict:
        options = {"scheduling_strategy": NodeAffinitySchedulingStrategy(found.node_id, soft=False)}
        if found.type in GPU_TYPES:
            options.update(num_gpus=1, runtime_env={"env_vars": dict(GPU_ACTOR_ENV)})
        return options

    def new_actor(self, found: Binding):
        return _actor_class().options(**self.actor_options(found)).remote(
            found.device, found.type, found.uuid, found.node, self._models_dir, self._custom_benchmarks_dir,
        )


class RayDeviceWorker:
    """The scheduler's worker for one cluster device: ``run``, ``cancel``, ``ping``, ``close``,
    like engine.worker_client.WorkerProcess. ``run`` never raises for what happens on the node."""

    def __init__(self, cluster: RayCluster, name: str):
        self.device = name
        self._cluster = cluster
        self._actor = None
        self._actor_node: str | None = None
        self._actor_losses = 0  # cluster.losses when the actor was made
        self._run_lock = threading.Lock()  # one request at a time, like a worker's pipe
        self._state = threading.Lock()
        self._in_flight = False
        self._cancelled = False
        self._closed = False

    # -- the actor ---------------------------------------------------------------------

    def _actor_for(self, found: Binding):
        with self._state:
            if self._closed:
                raise ClusterError(f"the worker for {self.device} is closed")
            if not self._cluster.connected:
                raise ClusterError(f"the Ray cluster at {self._cluster.address} is unreachable")
            if (self._actor is not None and self._actor_node == found.node_id
                    and self._actor_losses == self._cluster.losses):
                return self._actor
            stale, self._actor = self._actor, None
            if stale is not None and self._actor_losses == self._cluster.losses:
                _kill(stale)  # its node was replaced by one of the same name
            self._actor = self._cluster.new_actor(found)
            self._actor_node = found.node_id
            self._actor_losses = self._cluster.losses
            return self._actor

    def forget_actor(self) -> bool:
        """Let go of the actor without a word to it: it belonged to a cluster that is gone.
        Whether there was one."""
        with self._state:
            had, self._actor = self._actor is not None, None
            return had

    def _drop_actor(self, kill: bool = True) -> None:
        with self._state:
            actor, self._actor = self._actor, None
        if actor is not None and kill:
            _kill(actor)

    # -- requests ----------------------------------------------------------------------

    def unavailable(self) -> str | None:
        """For the scheduler: why this device cannot take a config now (engine.scheduler waits)."""
        return self._cluster.unavailable(self.device)

    def run(self, job: Job, timeout_s: float | None = None) -> Measurement:
        """Measure ``job`` on the device's node; every failure comes back as a FAILED Measurement.

        While the connection to the cluster is down it waits for it; a config that a drop of
        the connection cut off is measured again once the cluster is back.
        """
        with self._run_lock:
            started = time.perf_counter()
            with self._state:
                self._in_flight, self._cancelled = True, False
            try:
                while True:
                    found = None
                    if not self._await_cluster():
                        result = _failure(job, "cancelled", "cancelled while waiting for the Ray cluster")
                        break
                    losses = self._cluster.losses
                    found = self._cluster.binding(self.device)
                    result = self._run(job, found, timeout_s, losses)
                    if not result.ok and result.error_type in SUSPECT_ERRORS and not self._was_cancelled():
                        # A head that dies takes the node's worker with it, and its actor may say so
                        # (worker_crashed) a moment before the head stops answering: look again.
                        time.sleep(SETTLE_S)
                        self._cluster.dropped_since(losses)
                    if result.ok or self._cluster.losses == losses or self._was_cancelled() or self._closed:
                        break
                    log.warning("%s: the connection to the Ray cluster dropped during %s; it is measured again "
                                "once the cluster is back", self.device, job.config.key())
                    started = time.perf_counter()
            finally:
                with self._state:
                    self._in_flight, self._cancelled = False, False
            if result.wall_seconds is None:
                result.wall_seconds = time.perf_counter() - started
            result.hardware = self.device
            if found is not None:
                result.node, result.host = found.node, found.host
            return result

    def _await_cluster(self) -> bool:
        """True once the cluster is connected and the device's node is there, or no longer
        expected back (``unavailable``); False when cancelled or closed meanwhile."""
        while self._cluster.unavailable(self.device) is not None:
            if self._was_cancelled() or self._closed:
                return False
            if self._cluster.connected:
                time.sleep(POLL_S)  # connected: its node is still rejoining
            else:
                self._cluster.wait_connected(POLL_S)
        return True

    def _run(self, job: Job, found: Binding | None, timeout_s: float | None, losses: int) -> Measurement:
        if found is None or not found.alive:
            where = found.node if found else split(self.device)[0]
            return _failure(job, "node_lost", f"node {where} is not in the cluster any more")
        try:
            actor = self._actor_for(found)
            local_job = msgspec.structs.replace(job, config=msgspec.structs.replace(job.config, hardware=found.device))
            ref = actor.run.remote(msgspec.json.encode(local_job), timeout_s)
        except Exception as error:  # noqa: BLE001
            if self._cluster.losses != losses or not self._cluster.connected:
                return _failure(job, UNREACHABLE, f"the Ray cluster at {self._cluster.address} is unreachable")
            return _failure(job, "worker_start_failed", f"could not start the Ray actor for {self.device}: {error}")
        # The actor's own worker enforces timeout_s; this is for an actor that never answers
        # (still waiting for its node's resources, or a node cut off without being declared dead).
        deadline = None if timeout_s is None else time.monotonic() + timeout_s + ACTOR_START_TIMEOUT_S
        cancel_sent_at = None
        while True:
            try:
                done, _ = ray.wait([ref], timeout=POLL_S)
                if done:
                    return msgspec.json.decode(ray.get(ref), type=Measurement)
            except Exception as error:  # noqa: BLE001 - the actor or its node died, or we left the cluster
                return self._actor_failed(job, found, error, losses)
            if self._cluster.losses != losses:
                # The connection dropped and the old cluster was left: this result cannot come.
                return _failure(job, UNREACHABLE, f"the connection to the Ray cluster at {self._cluster.address} "
                                                  "dropped during this config")
            if self._was_cancelled() and cancel_sent_at is None:
                cancel_sent_at = time.monotonic()
                actor.cancel.remote()
            if cancel_sent_at is not None and time.monotonic() - cancel_sent_at > CANCEL_GRACE_S:
                self._drop_actor()
                return _failure(job, "cancelled", "cancelled while it was running")
            if self._cluster.connected and not self._cluster.node_alive(found.node_id):
                self._drop_actor(kill=False)
                return _failure(job, "node_lost", f"node {found.node} ({found.host}) left the cluster during this config")
            if deadline is not None and time.monotonic() > deadline and self._cluster.connected:
                self._drop_actor()
                return _failure(job, "timeout", f"the Ray actor for {self.device} did not answer within "
                                                f"{timeout_s + ACTOR_START_TIMEOUT_S:g} s")

    def _actor_failed(self, job: Job, found: Binding, error: Exception, losses: int) -> Measurement:
        self._drop_actor(kill=False)
        reason = str(error).strip().splitlines()
        detail = next((line.strip() for line in reason if "node" in line.lower() and "died" in line.lower()), None)
        unreachable = _failure(job, UNREACHABLE, f"the Ray cluster at {self._cluster.address} became unreachable "
                                                 f"during this config: {reason[0] if reason else type(error).__name__}")
        if self._cluster.dropped_since(losses):
            return unreachable  # the head went (its node, or the whole cluster with it): not this config's fault
        node_dead = detail is not None or self._cluster.wait_node_dead(found.node_id, self._cluster.node_lost_grace_s)
        if not node_dead and self._cluster.dropped_since(losses):
            return unreachable
        if node_dead:
            return _failure(job, "node_lost", f"node {found.node} ({found.host}) was lost during this config"
                                              + (f": {detail}" if detail else ""))
        if self._was_cancelled():
            return _failure(job, "cancelled", "cancelled while it was running")
        summary = reason[0] if reason else type(error).__name__
        return _failure(job, "worker_crashed", f"the Ray actor for {self.device} died: {summary}")

    def _was_cancelled(self) -> bool:
        with self._state:
            return self._cancelled

    def cancel(self) -> bool:
        """Stop the job in flight (from any thread); its ``run`` returns FAILED "cancelled" promptly."""
        with self._state:
            if not self._in_flight:
                return False
            self._cancelled = True
            return True

    def ping(self, timeout_s: float = 10.0) -> bool:
        """True when the device's actor and worker answer (starting them); False otherwise."""
        with self._run_lock:
            found = self._cluster.binding(self.device)
            if found is None or not found.alive:
                return False
            try:
                actor = self._actor_for(found)
                return bool(ray.get(actor.ping.remote(timeout_s), timeout=ACTOR_START_TIMEOUT_S + timeout_s))
            except Exception as error:  # noqa: BLE001
                log.warning("the worker for %s did not answer: %s", self.device, error)
                return False

    def free_memory_bytes(self) -> int | None:
        found = self._cluster.binding(self.device)
        if found is None or not found.alive or not self._cluster.connected:
            return None
        try:
            actor = self._actor_for(found)
            return ray.get(actor.free_memory_bytes.remote(), timeout=ACTOR_START_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001
            log.warning("free memory of %s could not be read on its node: %s", self.device, error)
            return None

    def close(self) -> None:
        with self._state:
            self._closed = True
            actor, self._actor = self._actor, None
            current = self._actor_losses == self._cluster.losses
        if actor is None or not current or not self._cluster.connected:
            return  # nothing to close, or nothing that can be reached
        try:
            ray.get(actor.close.remote(), timeout=CALL_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - gone already
            pass
        _kill(actor)


def _check_reachable(address: str) -> None:
    """ClusterError at once when a HOST:PORT address does not accept connections."""
    if "://" in address or address in ("auto", "local"):
        return  # Ray Client and autodetection: ray.init says
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as error:
        raise ClusterError(f"cannot reach the Ray cluster at {address} (HOST:PORT of the head's GCS): {error}") from None


def _definitely_gone(error: Exception) -> bool:
    """A failed read of the node table that needs no second try: nothing listens at the
    head's address any more, or another cluster answers there."""
    text = str(error)
    return "Connection refused" in text or "WrongClusterID" in text


def _kill(actor) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # noqa: BLE001 - gone already
        pass


def _failure(job: Job, error_type: str, message: str) -> Measurement:
    return Measurement.failure(job.config, FAILED, error_type, message)


def connect(address: str, **options) -> RayCluster:
    """A connected RayCluster; ClusterError when the address cannot be reached."""
    return RayCluster(address, **options).connect()

