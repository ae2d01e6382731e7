"""A config's result is stored by the recorder while the worker measures the next config (issue
16), and nothing measured is lost to that: a cancel or a shutdown returns once it is stored."""

from __future__ import annotations

import threading
import time

from engine.scheduler import Scheduler
from test_scheduler import FAST, SLOW, MemoryStore, StatusLog, kept_workers, make_scheduler, plan, registry  # noqa: F401


class HeldStore(MemoryStore):
    """Storage whose first result write waits until the test lets it go, as a slow disk would."""

    def __init__(self):
        super().__init__()
        self.writing, self.release = threading.Event(), threading.Event()

    def record_result(self, run_id, result, fingerprint, *, run=None):
        if not self.writing.is_set():
            self.writing.set()
            assert self.release.wait(60)
        super().record_result(run_id, result, fingerprint, run=run)


def wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_the_worker_measures_the_next_config_while_the_last_result_is_being_stored(make_scheduler, registry):
    scheduler, store, events = make_scheduler(store=HeldStore())
    run = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[1, 2], progressive_mode=False))
    try:
        assert store.writing.wait(120)
        wait_for(lambda: run.current_step and "batch size 2 " in run.current_step,
                 "the second config waited for the first one's write")
        assert store.results == []
    finally:
        store.release.set()
    assert scheduler.wait(run.run_id, timeout=120).status == "completed"
    assert [r.config.batch_size for _, r, _ in store.results] == [1, 2]
    (published_before, finished), = events.finished
    assert finished == events.statuses[published_before - 1] and finished.completed_configs == 2


def test_a_cancel_returns_once_the_results_measured_before_it_are_stored(make_scheduler, registry):
    scheduler, store, _ = make_scheduler(settings=SLOW, store=HeldStore())
    run = scheduler.submit(plan(registry, SLOW, models=["bert-tiny"], batch_sizes=[1, 2, 3], progressive_mode=False))
    assert store.writing.wait(120)
    threading.Timer(0.3, store.release.set).start()
    assert scheduler.cancel(run.run_id).status == "cancelled"
    assert [r.config.batch_size for rid, r, _ in store.results if rid == run.run_id] == [1]
    assert scheduler.wait(run.run_id, timeout=5).finished.is_set()
    assert store.runs[run.run_id].status == "cancelled"  # the result's row did not overwrite it


def test_shutdown_stores_what_was_measured_before_it_returns(make_scheduler, registry):
    scheduler, store, _ = make_scheduler(settings=SLOW, store=HeldStore())
    run = scheduler.submit(plan(registry, SLOW, models=["bert-tiny"], batch_sizes=[1, 2, 3], progressive_mode=False))
    assert store.writing.wait(120)
    threading.Timer(0.3, store.release.set).start()
    scheduler.shutdown()
    assert [r.config.batch_size for rid, r, _ in store.results if rid == run.run_id] == [1]
    assert store.runs[run.run_id].status == "running"  # resumed at the next start


class SlowReports(StatusLog):
    """Listeners whose end-of-run work (the reports) takes a while."""

    def __init__(self):
        super().__init__()
        self.reports_done: list[float] = []

    def run_finished(self, run_id, status):
        time.sleep(0.3)
        super().run_finished(run_id, status)
        self.reports_done.append(time.monotonic())


def test_the_last_runs_reports_are_written_before_the_next_run_measures(registry, kept_workers):
    handed: list[float] = []

    class LoggedWorker:
        def __init__(self, worker):
            self._worker = worker

        def __getattr__(self, name):
            return getattr(self._worker, name)

        def run(self, job, timeout_s=None):
            handed.append(time.monotonic())
            return self._worker.run(job, timeout_s=timeout_s)

    events = SlowReports()
    scheduler = Scheduler(
        store=MemoryStore(), sink=events, worker_factory=lambda device: LoggedWorker(kept_workers(device)),
        parameters_million=lambda name: registry.get(name).parameters_million,
        free_memory_bytes=lambda device: 1024**4, settings=FAST,
    )
    try:
        first = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[1], progressive_mode=False))
        second = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[2], progressive_mode=False))
        for run in (first, second):
            assert scheduler.wait(run.run_id, timeout=120).status == "completed"
    finally:
        scheduler.shutdown()
    assert len(handed) == 2 and handed[1] > events.reports_done[0]
