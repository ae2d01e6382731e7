"""A cancel or a close that arrives while a worker process is still starting (importing
torch, before its "ready" line) ends that process and is answered as such."""

from __future__ import annotations

import threading
import time

from engine.config import BenchmarkConfig, Job, MeasurementSettings
from engine.worker_client import WorkerProcess

JOB = Job(config=BenchmarkConfig(model_name="bert-tiny", hardware="cpu", batch_size=1, sequence_length=8),
          settings=MeasurementSettings(max_seconds=0.2))


def starting_process(worker: WorkerProcess, timeout_s: float = 60):
    """The worker's process once it exists. The caller acts within milliseconds, while the
    process is still importing torch (seconds), before its "ready" line."""
    deadline = time.monotonic() + timeout_s
    while worker._process is None:
        assert time.monotonic() < deadline, "the worker process never started"
        time.sleep(0.005)
    return worker._process


def test_a_cancel_while_the_worker_starts_fails_the_job_as_cancelled_and_kills_it():
    worker = WorkerProcess("cpu")
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(result=worker.run(JOB, timeout_s=120)))
    runner.start()
    process = starting_process(worker)
    assert process.alive()
    assert worker.cancel()
    runner.join(60)
    assert not runner.is_alive()
    result = outcome["result"]
    assert (result.status, result.error_type) == ("failed", "cancelled")
    process.popen.wait(timeout=30)
    assert process.popen.returncode is not None
    worker.close()


def test_a_close_while_the_worker_starts_leaves_no_process_behind():
    worker = WorkerProcess("cpu")
    answers = {}
    pinger = threading.Thread(target=lambda: answers.update(alive=worker.ping()))
    pinger.start()
    process = starting_process(worker)
    worker.close()
    pinger.join(60)
    assert answers == {"alive": False}
    process.popen.wait(timeout=30)
    assert process.popen.returncode is not None
    assert worker.pid is None
