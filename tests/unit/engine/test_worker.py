"""The worker protocol and the client that survives its worker's death, with real subprocesses."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import msgspec
import pytest

from engine.config import BenchmarkConfig, Job, MeasurementSettings
from engine.result import FAILED, OK
from engine.worker_client import WorkerProcess

FAST = MeasurementSettings(
    warmup_iterations=1, warmup_seconds=0, min_seconds=0.05, max_seconds=0.3, threads=1
)
QUICK_JOB = Job(
    config=BenchmarkConfig(model_name="bert-tiny", hardware="cpu", batch_size=1, sequence_length=16),
    settings=FAST,
)

# A custom workload whose build announces itself in a marker file, then hangs:
# the tests know the worker is mid-config when the marker appears.
SLOW_BENCHMARK = textwrap.dedent(
    """
    import os, time
    import torch
    from engine.models.spec import ModelSpec

    def build():
        open(os.environ["BENCHBOARD_TEST_MARKER"], "w").close()
        time.sleep(60)
        return torch.nn.Identity()

    def noisy_build():
        print("a model that prints to stdout")
        os.write(1, b"and one that writes to descriptor 1 directly\\n")
        return torch.nn.Identity()

    def inputs(batch_size, sequence_length, image_size):
        return {"input": torch.zeros(batch_size, 4)}

    MODELS = [
        ModelSpec("slow-build", "test", "custom", "tabular", 0.0, build, inputs),
        ModelSpec("noisy", "test", "custom", "tabular", 0.0, noisy_build, inputs),
    ]
    """
)


@pytest.fixture(scope="module")
def marker(tmp_path_factory):
    return tmp_path_factory.mktemp("marker") / "building"


@pytest.fixture(scope="module")
def shared_worker(tmp_path_factory, marker):
    # One client for the module keeps worker start-ups (about 4 s each) to those
    # the tests cause on purpose; each test gets it running, with no marker.
    custom = tmp_path_factory.mktemp("custom")
    (custom / "slow.py").write_text(SLOW_BENCHMARK)
    with WorkerProcess(
        "cpu", custom_benchmarks_dir=str(custom), env={"BENCHBOARD_TEST_MARKER": str(marker)}
    ) as process:
        yield process


@pytest.fixture
def worker(shared_worker, marker):
    marker.unlink(missing_ok=True)
    shared_worker.start()
    return shared_worker


def slow_job():
    return Job(config=BenchmarkConfig(model_name="slow-build", hardware="cpu", batch_size=1), settings=FAST)


def wait_for(path, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def run_in_thread(worker, job, **kwargs):
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("result", worker.run(job, **kwargs)))
    thread.start()
    return thread, outcome


def start_worker_process() -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.worker", "--device", "cpu"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_worker_speaks_json_lines_answers_ping_and_exits_on_shutdown():
    process = start_worker_process()
    try:
        ready = json.loads(process.stdout.readline())
        assert ready["event"] == "ready" and ready["pid"] == process.pid and ready["device"] == "cpu"
        assert ready["torch_version"]

        process.stdin.write('{"op": "ping"}\nnot json\n{"op": "dance"}\n')
        process.stdin.write('{"op": "run", "job_id": "bad", "job": {"config": {"model": "bert-tiny"}}}\n')
        run_job = {"op": "run", "job_id": "j1", "job": msgspec.to_builtins(QUICK_JOB)}
        process.stdin.write(json.dumps(run_job) + "\n")
        process.stdin.write('{"op": "shutdown"}\n')
        process.stdin.flush()

        assert json.loads(process.stdout.readline()) == {"event": "pong"}
        not_json = json.loads(process.stdout.readline())
        assert not_json["event"] == "error" and "not a request" in not_json["message"]
        unknown_op = json.loads(process.stdout.readline())
        assert unknown_op["event"] == "error" and "Invalid value 'dance' - at `$.op`" in unknown_op["message"]
        malformed = json.loads(process.stdout.readline())
        assert malformed["event"] == "error" and "not a request" in malformed["message"]
        assert "missing required field `model_name` - at `$.job.config`" in malformed["message"]
        assert json.loads(process.stdout.readline()) == {"event": "started", "job_id": "j1"}
        result = json.loads(process.stdout.readline())
        assert result["event"] == "result" and result["job_id"] == "j1"
        assert result["result"]["status"] == OK
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()


def test_worker_exits_cleanly_when_its_input_closes():
    process = start_worker_process()
    assert json.loads(process.stdout.readline())["event"] == "ready"
    process.stdin.close()
    assert process.wait(timeout=30) == 0


def test_client_runs_jobs_in_one_long_lived_worker(worker):
    pid = worker.pid
    assert worker.ping()

    first = worker.run(QUICK_JOB)
    second = worker.run(Job(
        config=BenchmarkConfig(model_name="gpt2-tiny", hardware="cpu", batch_size=2, sequence_length=16),
        settings=FAST,
    ))

    assert first.status == OK and second.status == OK, (first.error_message, second.error_message)
    assert first.p50_latency_ms <= first.p99_latency_ms
    assert worker.pid == pid


def test_stray_output_from_a_model_never_corrupts_the_protocol(worker):
    noisy = BenchmarkConfig(model_name="noisy", hardware="cpu", batch_size=1)
    result = worker.run(Job(config=noisy, settings=FAST))

    assert result.status == OK, result.error_message
    assert worker.run(QUICK_JOB).status == OK


def test_worker_killed_mid_config_fails_that_config_and_the_next_runs_in_a_fresh_worker(worker, marker):
    first_pid = worker.pid
    thread, outcome = run_in_thread(worker, slow_job())
    wait_for(marker)

    os.kill(first_pid, signal.SIGKILL)
    thread.join(timeout=30)

    crashed = outcome["result"]
    assert crashed.status == FAILED
    assert crashed.error_type == "worker_crashed"
    assert crashed.error_message.startswith("worker exited with signal SIGKILL")
    assert crashed.config == slow_job().config

    following = worker.run(QUICK_JOB)
    assert following.status == OK, following.error_message
    assert worker.pid not in (None, first_pid)


def test_config_over_its_time_limit_is_killed_and_reported_as_timeout(worker, marker):
    first_pid = worker.pid
    started = time.monotonic()

    result = worker.run(slow_job(), timeout_s=1)

    # The build hangs for 60 s: an answer well before that is the kill, however loaded the machine.
    assert time.monotonic() - started < 30
    assert result.status == FAILED
    assert result.error_type == "timeout"
    assert result.error_message == "config exceeded its 1 s time limit"
    assert marker.exists()
    assert worker.run(QUICK_JOB).status == OK
    assert worker.pid != first_pid


def test_cancel_from_another_thread_ends_the_config_in_flight_promptly(worker, marker):
    thread, outcome = run_in_thread(worker, slow_job())
    wait_for(marker)

    cancelled_at = time.monotonic()
    assert worker.cancel() is True
    thread.join(timeout=10)

    assert time.monotonic() - cancelled_at < 30  # the build hangs for 60 s: this is the kill
    assert outcome["result"].status == FAILED
    assert outcome["result"].error_type == "cancelled"
    assert worker.cancel() is False  # nothing in flight any more
    assert worker.run(QUICK_JOB).status == OK


def test_the_worker_answers_how_much_memory_its_device_has_free(worker):
    # The server asks its worker (or NVML) instead of opening a CUDA context itself (issue 10).
    import psutil

    free = worker.free_memory_bytes()
    assert 0 < free <= psutil.virtual_memory().total
    assert worker.run(QUICK_JOB).status == OK  # the protocol goes on as before


def test_close_shuts_the_worker_down_gracefully(worker):
    pid, process = worker.pid, worker._process
    worker.close()

    assert worker.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone and reaped
    # It exited by itself on the shutdown request, with status 0: a kill after the grace
    # period would read -SIGKILL here.
    assert process.popen.returncode == 0


def test_worker_for_absent_hardware_fails_to_start_with_what_is_present():
    # A device index no machine has, so this holds on a GPU box too (the CPU is always listed first).
    config = BenchmarkConfig(model_name="bert-tiny", hardware="cuda:97", batch_size=1)
    result = WorkerProcess("cuda:97").run(Job(config=config, settings=FAST))

    assert result.status == FAILED
    assert result.error_type == "worker_start_failed"
    assert "hardware 'cuda:97' is not present on this machine; present: cpu" in result.error_message


def test_worker_exits_when_the_server_that_started_it_is_killed():
    import signal
    import subprocess
    import sys
    import time

    import psutil

    parent = subprocess.Popen(
        [sys.executable, "-c",
         "from engine.worker_client import WorkerProcess; w = WorkerProcess('cpu'); w.start(); "
         "print(w.pid, flush=True); import time; time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )
    worker_pid = int(parent.stdout.readline())
    assert psutil.pid_exists(worker_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 60  # generous for a loaded machine: the loop ends as soon as it is gone
    while time.monotonic() < deadline and psutil.pid_exists(worker_pid):
        if psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.1)
    assert not psutil.pid_exists(worker_pid) or psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE


# A workload whose first build leaves long-lived objects behind, as a model's first config does
# when it imports its transformers module.
LINGERING_BENCHMARK = textwrap.dedent(
    """
    import torch
    from engine.models.spec import ModelSpec

    CACHE = []

    class Entry:
        pass

    def build():
        if not CACHE:
            CACHE.extend(Entry() for _ in range(5000))
        return torch.nn.Linear(4, 4)

    def inputs(batch_size, sequence_length, image_size):
        return {"input": torch.zeros(batch_size, 4)}

    MODELS = [ModelSpec("lingering", "test", "custom", "tabular", 0.0, build, inputs)]
    """
)


def test_what_a_config_leaves_alive_is_frozen_so_later_collections_skip_it(tmp_path):
    """In process (not a subprocess) to read the collector's counts; the freeze is undone after."""
    import gc
    import io

    from engine import worker_protocol as protocol
    from engine.worker import Worker

    (tmp_path / "lingering.py").write_text(LINGERING_BENCHMARK)
    job = Job(config=BenchmarkConfig(model_name="lingering", hardware="cpu", batch_size=1), settings=FAST)
    line = protocol.encode(protocol.RunJob(job_id="j1", job=job)).decode()
    out = io.StringIO()
    worker = Worker("cpu", out, None, str(tmp_path))
    gc.collect()
    gc.freeze()  # as the worker does after its imports
    try:
        assert worker._handle(line)
        tracked_after_first = len(gc.get_objects())
        frozen_after_first = gc.get_freeze_count()
        assert worker._handle(line)
        frozen_growth = gc.get_freeze_count() - frozen_after_first
    finally:
        gc.unfreeze()

    replies = [json.loads(reply) for reply in out.getvalue().splitlines()]
    results = [reply["result"] for reply in replies if reply["event"] == "result"]
    assert [result["status"] for result in results] == [OK, OK], results
    # The 5,000 cached objects are frozen, not left for every later collection to walk.
    assert tracked_after_first < 1000
    # A second config of the same model adds nothing lasting to the frozen set.
    assert frozen_growth < 200
