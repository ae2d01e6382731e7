"""A config's result is stored by the recorder while the worker measures the next config (issue
16), and nothing measured is lost to that: a cancel or a shutdown returns once it is stored."""

from __future__ import annotations

import threading
import time

from engine.result import Measurement
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


def test_a_run_is_not_completed_before_its_last_result_is_stored(make_scheduler, registry):
    scheduler, store, _ = make_scheduler(store=HeldStore())
    submit = scheduler._recorder.submit

    def hand_over_and_wait_for_the_write(fn, *args):
        # The device thread looks whether the run is done only once the recorder has counted
        # its last config and is writing it: on a busy machine that order happens by itself.
        handed = submit(fn, *args)
        if fn == scheduler._record:
            assert store.writing.wait(120)
        return handed

    scheduler._recorder.submit = hand_over_and_wait_for_the_write
    run = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[1], progressive_mode=False))
    try:
        assert store.writing.wait(120)
        time.sleep(0.3)  # time for the device thread to look
        assert scheduler.status(run.run_id).status == "running" and store.results == []
    finally:
        store.release.set()
    assert scheduler.wait(run.run_id, timeout=120).status == "completed" and len(store.results) == 1


def test_submitting_a_run_does_not_wait_for_another_runs_reports(make_scheduler, registry):
    scheduler, _, events = make_scheduler()
    events.run_finished = lambda run_id, status: time.sleep(2.0)  # reports that take a while
    first = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[1], progressive_mode=False))
    wait_for(lambda: first.terminal, "the first run did not end")
    time.sleep(0.05)  # its reports are being written
    started = time.monotonic()
    second = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[2], progressive_mode=False))
    assert time.monotonic() - started < 0.5 and not first.finished.is_set()
    assert scheduler.wait(second.run_id, timeout=120).status == "completed"


class InstantWorker:
    """Stands in for a worker so that the test can hold the device thread at one exact point:
    a real worker's measurement cannot be paused there."""

    def run(self, job, timeout_s=None):
        time.sleep(0.05)
        return Measurement.of(job.config, throughput_items_per_second=100.0, p50_latency_ms=1.0, wall_seconds=0.05)

    def cancel(self):
        pass

    def close(self):
        pass


def test_a_cancel_is_stored_even_when_a_newer_unstored_state_was_told_first(registry):
    """The cancel's snapshot is taken before the next config's start (told, not stored) but
    handed to the recorder after it: its row must still be stored."""
    store = MemoryStore()
    scheduler = Scheduler(store=store, sink=StatusLog(), worker_factory=lambda device: InstantWorker(),
                          parameters_million=lambda name: 0.2, free_memory_bytes=lambda device: 1024**4, settings=FAST)
    cancel_taken, start_handed = threading.Event(), threading.Event()
    publish, call = scheduler._publish, scheduler._recorder.call
    held = []

    def publish_in_that_order(run, *, store=True, wait=False):
        if not store and not held and threading.current_thread().name.startswith("device-"):
            held.append(run)  # the second config's start: after the cancel's snapshot
            assert cancel_taken.wait(30)
            status = publish(run, store=store, wait=wait)
            start_handed.set()
            return status
        return publish(run, store=store, wait=wait)

    def hand_over_after_the_start(fn, *args):
        if threading.current_thread().name == "canceller":
            cancel_taken.set()
            assert start_handed.wait(30)
        return call(fn, *args)

    scheduler._publish, scheduler._recorder.call = publish_in_that_order, hand_over_after_the_start
    try:
        run = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[1, 2], progressive_mode=False))
        wait_for(lambda: held, "the second config never started", timeout=30)
        canceller = threading.Thread(target=scheduler.cancel, args=(run.run_id,), name="canceller")
        canceller.start()
        canceller.join(30)
        assert scheduler.wait(run.run_id, timeout=30).finished.is_set()
    finally:
        scheduler.shutdown()
    assert store.runs[run.run_id].status == "cancelled"


class FinishesAsItIsCancelled:
    """A worker whose measurement ends well just as the run is cancelled (a real one's kill
    cannot be timed to land there)."""

    def __init__(self):
        self.measuring, self.cancelled = threading.Event(), threading.Event()

    def run(self, job, timeout_s=None):
        self.measuring.set()
        assert self.cancelled.wait(30)
        time.sleep(0.1)  # the cancel's own state goes out first
        return Measurement.of(job.config, throughput_items_per_second=100.0, p50_latency_ms=1.0, wall_seconds=0.1)

    def cancel(self):
        self.cancelled.set()

    def close(self):
        pass


def test_a_result_that_ends_as_its_run_is_cancelled_is_stored_before_the_run_is_told_ended(registry):
    store, worker = MemoryStore(), FinishesAsItIsCancelled()
    stored_when_ended = []
    events = StatusLog()
    events.run_finished = lambda run_id, status: stored_when_ended.append(len(store.results))
    scheduler = Scheduler(store=store, sink=events, worker_factory=lambda device: worker,
                          parameters_million=lambda name: 0.2, free_memory_bytes=lambda device: 1024**4, settings=FAST)
    try:
        run = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[1, 2], progressive_mode=False))
        assert worker.measuring.wait(30)
        assert scheduler.cancel(run.run_id).status == "cancelled"
        assert scheduler.wait(run.run_id, timeout=30).finished.is_set()
    finally:
        scheduler.shutdown()
    assert stored_when_ended == [1] and store.runs[run.run_id].status == "cancelled"
