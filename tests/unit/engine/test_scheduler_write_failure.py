"""A config whose result and run row cannot be stored (issue 16: one transaction) fails, and
the run still ends as it would have: told once to its listeners, ``wait`` returning."""

from __future__ import annotations

import threading

from engine.models.registry import ModelRegistry
from engine.planning import plan_run
from engine.result import Measurement
from engine.runs import RunRequest
from engine.scheduler import Scheduler
from test_scheduler import FAST, FlakyStore, StatusLog


class CancelledAsItFinishes:
    """A worker whose measurement ends just as the run is cancelled: ``cancel`` lets the
    measurement return its (good) result, and returns once the store has refused it, so the
    scheduler's snapshot of the cancelled run is taken by the device thread, before the
    cancel's own."""

    def __init__(self, store: FlakyStore):
        self.measuring, self.cancelled, self.store = threading.Event(), threading.Event(), store

    def run(self, job, timeout_s=None):
        self.measuring.set()
        assert self.cancelled.wait(10)
        return Measurement.of(job.config, n_samples=1, p50_latency_ms=1.0, throughput_items_per_second=1.0,
                              ci_met=True)

    def cancel(self):
        self.cancelled.set()
        assert self.store.refused.wait(10)
        return True

    def close(self):
        pass


class RefusingStore(FlakyStore):
    def __init__(self):
        super().__init__()
        self.refused = threading.Event()

    def record_result(self, run_id, result, fingerprint, *, run=None):
        try:
            super().record_result(run_id, result, fingerprint, run=run)
        except OSError:
            self.refused.set()
            raise


def test_a_run_cancelled_while_its_last_result_fails_to_store_is_still_told_finished():
    store, events = RefusingStore(), StatusLog()
    worker = CancelledAsItFinishes(store)
    scheduler = Scheduler(store=store, sink=events, worker_factory=lambda device: worker,
                          parameters_million=lambda name: 0.2, free_memory_bytes=lambda device: 1024**4,
                          settings=FAST)
    try:
        run = scheduler.submit(plan_run(
            RunRequest(models=["bert-tiny"], hardware=["cpu"], batch_sizes=[1], progressive_mode=False),
            registry=ModelRegistry(), resolve_hardware=lambda names: ["cpu"],
            environment=lambda device: {"hardware": device},
        ))
        assert worker.measuring.wait(10)
        assert scheduler.cancel(run.run_id).status == "cancelled"
        assert scheduler.wait(run.run_id, timeout=5).finished.is_set()
    finally:
        scheduler.shutdown()
    assert [status.status for _, status in events.finished] == ["cancelled"]
    assert run.failed_configs == 1 and store.results == []
