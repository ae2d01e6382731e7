"""Node names and cluster device names (engine.nodes), and one config at a time per machine
across machines (the scheduler's ``machine_of``). No Ray here: tests/integration/test_ray_cluster.py
runs a real cluster."""

from __future__ import annotations

import threading
import time

import pytest

from engine.config import MeasurementSettings
from engine.errors import InvalidRequestError, UnknownHardwareError
from engine.models.registry import ModelRegistry
from engine.nodes import ClusterDevice, NodeIdentity, StampedWorker, assign_names, clean_name, resolve
from engine.planning import plan_run
from engine.result import Measurement
from engine.runs import RunRequest
from engine.scheduler import Scheduler

A, B, C, D = ("a1b2c3d4e5f6" + "0" * 44, "bbbbbb" + "1" * 50, "cccccc" + "2" * 50, "dddddd" + "3" * 50)


def node(node_id, hostname, node_name=None):
    return NodeIdentity(node_id=node_id, hostname=hostname, node_name=node_name)


def test_a_node_is_called_by_its_benchboard_node_name_else_its_hostname():
    names = assign_names([node(A, "box-1", "GPU A"), node(B, "box-2")])
    assert names == {A: "gpu-a", B: "box-2"}


def test_repeated_hostnames_get_a_short_node_id_suffix_each():
    names = assign_names([node(A, "worker"), node(B, "worker"), node(C, "solo")])
    assert names == {A: "worker-a1b2c3", B: "worker-bbbbbb", C: "solo"}


def test_a_chosen_name_is_not_counted_as_a_repeated_hostname():
    assert assign_names([node(A, "worker", "head"), node(B, "worker")]) == {A: "head", B: "worker"}


def test_names_stay_with_their_nodes_when_others_join():
    first = assign_names([node(A, "worker")])
    assert first == {A: "worker"}
    later = assign_names([node(A, "worker"), node(B, "worker")], first)
    assert later[A] == "worker" and later[B] == "worker-bbbbbb"


def test_a_second_node_claiming_a_taken_name_is_suffixed():
    names = assign_names([node(A, "x", "gpu"), node(B, "y", "gpu")])
    assert sorted(names.values()) == ["gpu", "gpu-bbbbbb"]


def test_node_names_never_hold_a_slash_or_blanks():
    assert clean_name("  My Box/2 ") == "my-box-2"
    assert clean_name("///") == "node"


CLUSTER = [
    ClusterDevice(name="gpu-a/cpu", node="gpu-a", device="cpu", type="cpu"),
    ClusterDevice(name="gpu-a/cuda:0", node="gpu-a", device="cuda:0", type="cuda"),
    ClusterDevice(name="gpu-a/cuda:1", node="gpu-a", device="cuda:1", type="cuda"),
    ClusterDevice(name="gpu-b/cuda:0", node="gpu-b", device="cuda:0", type="cuda"),
    ClusterDevice(name="mac-1/mps", node="mac-1", device="mps", type="mps"),
    ClusterDevice(name="gone/cuda:0", node="gone", device="cuda:0", type="cuda", alive=False),
]


def local(names):
    present = {"cpu": "cpu"}
    for name in names:
        if name not in present:
            raise UnknownHardwareError(name, list(present))
    return [present[name] for name in names]


def resolved(*names):
    return resolve(list(names), local=local, local_names=["cpu"], cluster=CLUSTER)


def test_requests_name_own_devices_node_devices_and_every_nodes_devices():
    assert resolved("cpu", "mac-1/mps") == ["cpu", "mac-1/mps"]
    assert resolved("gpu-b/cuda") == ["gpu-b/cuda:0"]  # NODE/cuda is cuda:0, as locally
    assert resolved("*/cuda") == ["gpu-a/cuda:0", "gpu-a/cuda:1", "gpu-b/cuda:0"]  # live nodes only
    assert resolved("*/cuda:1") == ["gpu-a/cuda:1"]
    assert resolved("GPU-A/CPU", "gpu-a/cpu", "*/cpu") == ["gpu-a/cpu"]


@pytest.mark.parametrize("name", ["gpu-c/cpu", "gpu-a/xpu:0", "*/xpu", "cuda"])
def test_an_unknown_device_is_refused_with_everything_that_exists(name):
    with pytest.raises(UnknownHardwareError) as refused:
        resolved(name)
    assert "gpu-a/cuda:1" in str(refused.value) and "cpu" in refused.value.available
    assert "gone/cuda:0" not in refused.value.available


def test_a_device_of_a_node_that_left_is_refused_saying_so():
    with pytest.raises(InvalidRequestError) as refused:
        resolved("gone/cuda:0")
    assert refused.value.field == "hardware" and "left the cluster" in refused.value.reason


def test_a_stamped_worker_records_where_its_results_were_measured():
    class Worker:
        device = "cpu"

        def run(self, job, timeout_s=None):
            return Measurement(model_name="m", hardware="cpu", batch_size=1)

    stamped = StampedWorker(Worker(), node=None, host="box-1")
    result = stamped.run(object())
    assert (result.node, result.host) == (None, "box-1") and stamped.device == "cpu"


class Probe:
    """Stands in for the workers of four devices on two machines (this machine has one CPU):
    each config takes a moment and records which ran at the same time."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running: set[str] = set()
        self.overlaps: set[frozenset[str]] = set()

    def worker(self, device):
        probe = self

        class Worker:
            def run(self, job, timeout_s=None):
                with probe.lock:
                    probe.running.add(device)
                    if len(probe.running) > 1:
                        probe.overlaps.add(frozenset(probe.running))
                time.sleep(0.3)  # long enough for the other devices' threads to try to start
                with probe.lock:
                    probe.running.discard(device)
                return Measurement.of(job.config, n_samples=1, p50_latency_ms=1.0, throughput_items_per_second=1.0,
                                      ci_met=True)

            def cancel(self):
                return False

            def close(self):
                pass

        return Worker()


def test_one_config_at_a_time_per_machine_holds_per_machine_across_a_cluster():
    machines = {"a/cpu": "host-a", "a/cuda:0": "host-a", "b/cpu": "host-b", "b/cuda:0": "host-b"}
    devices = list(machines)
    run = plan_run(RunRequest(models=["bert-tiny"], hardware=devices, batch_sizes=[1, 2], progressive_mode=False),
                   registry=ModelRegistry(), resolve_hardware=lambda names: devices,
                   environment=lambda device: {"hardware": device})
    probe = Probe()
    scheduler = Scheduler(
        store=_Store(), sink=_Sink(), worker_factory=probe.worker, parameters_million=lambda name: 0.2,
        free_memory_bytes=lambda device: 1024**4, settings=MeasurementSettings(max_seconds=0.3),
        machine_of=machines.get,
    )
    try:
        scheduler.submit(run)
        assert scheduler.wait(run.run_id, timeout=60).status == "completed"
    finally:
        scheduler.shutdown()
    assert probe.overlaps, "the two machines never measured at the same time"
    for overlap in probe.overlaps:  # never two devices of one machine at once
        assert len({machines[device] for device in overlap}) == len(overlap)


class _Store:
    def __init__(self):
        self.results = []

    def has_recent_result(self, config_key, fingerprint, max_age_days):
        return False

    def finished_keys(self, run_id):
        return set()

    def record_result(self, run_id, result, fingerprint, *, run=None):
        self.results.append(result)

    def record_progressive_stop(self, run_id, config, reason):
        pass

    def save_run(self, record):
        pass


class _Sink:
    def run_updated(self, run_id, status):
        pass

    def result_recorded(self, run_id, result):
        pass

    def run_finished(self, run_id, status):
        pass


@pytest.mark.parametrize("address", ["10.0.0.5:6379", "head.ray.svc:6379", "auto", " 127.0.0.2:6379 "])
def test_the_heads_gcs_address_or_auto_is_taken(address):
    from engine.nodes import unsupported_ray_address

    assert unsupported_ray_address(address) is None


@pytest.mark.parametrize("address, says", [
    ("ray://head:10001", "Ray Client (ray://) is not supported"),
    ("RAY://head:10001", "Ray Client (ray://) is not supported"),
    ("http://head:8265", "expected the head's GCS address"),
    ("local", "would start a Ray cluster of its own"),
])
def test_addresses_the_server_cannot_use_are_refused_naming_the_flag(address, says):
    from engine.nodes import unsupported_ray_address

    refused = unsupported_ray_address(address)
    assert refused.startswith("--ray-address") and says in refused and "HOST:PORT" in refused
