"""Scheduler behaviour with real worker processes and tiny models.

Storage is the engine's ResultStore port; here it is a small in-memory implementation
(the DuckDB adapter is exercised by the integration tests), so these tests need no
database, as DESIGN.md intends for the engine.
"""

from __future__ import annotations

import threading
import time

import msgspec
import pytest

from engine.config import MeasurementSettings
from engine.hardware import environment, free_memory_bytes, resolve_hardware
from engine.models.registry import ModelRegistry
from engine.planning import plan_run
from engine.runs import RunRequest, RunStatus
from engine.scheduler import Scheduler
from engine.worker_client import WorkerProcess

FAST = MeasurementSettings(warmup_iterations=1, min_iterations=5, min_seconds=0.05, max_seconds=0.3)
# ci_target 0 can never be met, so every config takes its whole max_seconds: a slow run.
SLOW = MeasurementSettings(warmup_iterations=1, min_iterations=5, min_seconds=1.0, max_seconds=1.0, ci_target=0.0)


class MemoryStore:
    def __init__(self):
        self.results, self.stops, self.runs = [], [], {}
        self.recent: set[tuple[str, str]] = set()
        self.lock = threading.Lock()

    def has_recent_result(self, config_key, fingerprint, max_age_days):
        return (config_key, fingerprint) in self.recent

    def finished_keys(self, run_id):
        return {r.config.key() for rid, r, _ in self.results if rid == run_id} | {
            c.key() for rid, c, _ in self.stops if rid == run_id
        }

    def record_result(self, run_id, result, fingerprint, *, run=None):
        with self.lock:
            self.results.append((run_id, result, fingerprint))
            if result.ok:
                self.recent.add((result.config.key(), fingerprint))
            if run is not None:
                self.runs[run.run_id] = run

    def record_progressive_stop(self, run_id, config, reason):
        self.stops.append((run_id, config, reason))

    def save_run(self, record):
        self.runs[record.run_id] = record


class StatusLog:
    def __init__(self):
        self.statuses: list[RunStatus] = []
        self.finished: list[tuple[int, RunStatus]] = []  # (statuses published before it, the status)

    def run_updated(self, run_id, status):
        self.statuses.append(status)

    def result_recorded(self, run_id, result):
        pass

    def run_finished(self, run_id, status):
        self.finished.append((len(self.statuses), status))

    def first_running(self, run_id) -> int:
        return next(i for i, s in enumerate(self.statuses) if s.run_id == run_id and s.status == "running")


@pytest.fixture
def registry():
    return ModelRegistry()


class KeptWorker:
    """A scheduler's worker whose process outlives the scheduler: ``close`` leaves it running for
    the next test's scheduler, so the module pays torch's start-up once rather than per test.
    Everything else is the real WorkerProcess (a cancel or a shutdown still kills the config in
    flight, and the next run starts a fresh process)."""

    def __init__(self, process: WorkerProcess):
        self._process = process

    def __getattr__(self, name):
        return getattr(self._process, name)

    def close(self):
        pass


@pytest.fixture(scope="module")
def kept_workers():
    workers: dict[str, WorkerProcess] = {}
    yield lambda device: KeptWorker(workers.setdefault(device, WorkerProcess(device)))
    for worker in workers.values():
        worker.close()


@pytest.fixture
def make_scheduler(registry, kept_workers):
    made = []

    def make(settings=FAST, free_memory=free_memory_bytes, store=None):
        store, events = store or MemoryStore(), StatusLog()
        scheduler = Scheduler(
            store=store, sink=events, worker_factory=kept_workers,
            parameters_million=lambda name: registry.get(name).parameters_million,
            free_memory_bytes=free_memory, settings=settings,
        )
        made.append(scheduler)
        return scheduler, store, events

    yield make
    for scheduler in made:
        scheduler.shutdown()


def plan(registry, settings=FAST, **request):
    """A run planned with ``settings``: a run is measured with the settings it was planned with,
    whatever the scheduler's own are."""
    return plan_run(RunRequest(**request), registry=registry, resolve_hardware=resolve_hardware,
                    environment=environment, settings=settings)


def test_run_completes_with_one_result_per_config_and_rising_progress(make_scheduler, registry):
    scheduler, store, events = make_scheduler()
    run = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[1, 2], progressive_mode=False))
    assert scheduler.wait(run.run_id, timeout=120).status == "completed"
    assert sorted(r.config.batch_size for _, r, _ in store.results) == [1, 2]
    progress = [s.progress for s in events.statuses if s.run_id == run.run_id]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert store.runs[run.run_id].status == "completed"
    # The end of the run is told once, after its terminal status was published.
    (published_before, finished), = events.finished
    assert finished.status == "completed" and finished == events.statuses[published_before - 1]


class CommitLog(MemoryStore):
    """Every commit of the run's row: saved alone, or with a config's result."""

    def __init__(self):
        super().__init__()
        self.commits: list[tuple[str, str, int]] = []  # (how, status, completed configs)

    def record_result(self, run_id, result, fingerprint, *, run=None):
        super().record_result(run_id, result, fingerprint, run=run)
        self.commits.append(("with a result", run.status, run.completed_configs))

    def save_run(self, record):
        super().save_run(record)
        self.commits.append(("alone", record.status, record.completed_configs))


def test_a_config_costs_one_commit_and_its_start_is_published_not_stored(make_scheduler, registry):
    scheduler, store, events = make_scheduler(store=CommitLog())
    run = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[1, 2, 4], progressive_mode=False))
    assert scheduler.wait(run.run_id, timeout=120).status == "completed"
    # Before the first result: the run's row as submitted and as started (one write, when the
    # device thread started it before submit's write went out); then one commit a config.
    first_result = next(i for i, commit in enumerate(store.commits) if commit[0] == "with a result")
    assert store.commits[first_result:] == [
        ("with a result", "running", 1),
        ("with a result", "running", 2),
        ("with a result", "running", 3),
        ("alone", "completed", 3),
    ]
    assert 1 <= first_result <= 2 and all(how == "alone" and done == 0 for how, _, done in store.commits[:first_result])
    # Each config's start still reaches the API and the pages, before its result.
    steps = [s.current_step for s in events.statuses if s.current_step]
    for batch_size in (1, 2, 4):
        assert any(f"batch size {batch_size} " in step for step in steps)
    assert store.runs[run.run_id].status == "completed"


def test_higher_priority_run_starts_before_an_earlier_lower_one(make_scheduler, registry):
    scheduler, _, events = make_scheduler(settings=SLOW)
    slow = scheduler.submit(plan(registry, SLOW, models=["bert-tiny"], batch_sizes=[1, 2], priority="medium"))
    deadline = time.monotonic() + 60
    while slow.status != "running" and time.monotonic() < deadline:  # the others queue behind it
        time.sleep(0.01)
    low = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[1], priority="low"))
    critical = scheduler.submit(plan(registry, models=["gpt2-tiny"], batch_sizes=[1], priority="critical"))
    for run in (slow, low, critical):
        assert scheduler.wait(run.run_id, timeout=180).status == "completed"
    assert events.first_running(slow.run_id) < events.first_running(critical.run_id) < events.first_running(low.run_id)


def test_cancelled_run_keeps_measured_results_and_frees_the_worker(make_scheduler, registry):
    scheduler, store, _ = make_scheduler(settings=SLOW)
    run = scheduler.submit(plan(registry, SLOW, models=["bert-tiny"], batch_sizes=[1, 2, 3, 4], progressive_mode=False))
    deadline = time.monotonic() + 120
    while not store.results and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scheduler.cancel(run.run_id).status == "cancelled"
    assert scheduler.wait(run.run_id, timeout=5).status == "cancelled"
    measured = [r for rid, r, _ in store.results if rid == run.run_id]
    assert measured and all(r.ok for r in measured) and len(measured) < 4

    follow_up = scheduler.submit(plan(registry, models=["gpt2-tiny"], batch_sizes=[1]))
    assert scheduler.wait(follow_up.run_id, timeout=120).status == "completed"
    assert store.runs[run.run_id].status == "cancelled"  # no later, staler row overwrote it


def test_config_too_big_for_free_memory_is_refused_with_a_reason(make_scheduler, registry):
    import psutil

    from engine.resources import estimate_memory_bytes

    # The largest request the API accepts: its estimate (terabytes) exceeds the RAM of any machine
    # this suite runs on, so the refusal holds on a big box too; the real free memory is asked.
    scheduler, store, _ = make_scheduler()
    planned = plan(registry, models=["bert-base-uncased"], batch_sizes=[4096], sequence_length=32768)
    (config,) = planned.configs
    assert estimate_memory_bytes(config, registry.get("bert-base-uncased").parameters_million) > 10 * (
        psutil.virtual_memory().total
    )
    run = scheduler.submit(planned)
    ended = scheduler.wait(run.run_id, timeout=60)
    assert ended.status == "failed"
    assert ended.error == "its only config failed; each one's reason is in the run's failures"
    (_, result, _), = store.results
    assert result.status == "refused"
    assert "needs ~" in result.error_message and "GB free" in result.error_message


def test_incremental_run_skips_configs_with_recent_results_unless_forced(make_scheduler, registry):
    scheduler, store, _ = make_scheduler()
    first = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[1]))
    scheduler.wait(first.run_id, timeout=120)
    second = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[1]))
    assert scheduler.wait(second.run_id, timeout=60).status == "completed"
    assert second.skipped_configs == 1
    forced = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[1], force=True))
    scheduler.wait(forced.run_id, timeout=120)
    assert forced.skipped_configs == 0
    assert len([1 for rid, _, _ in store.results if rid == forced.run_id]) == 1


def test_resumed_run_measures_only_what_it_had_not_finished(make_scheduler, registry):
    scheduler, store, _ = make_scheduler()
    original = plan(registry, models=["bert-tiny"], batch_sizes=[1, 2], progressive_mode=False)
    done = original.configs[0]
    store.stops.append((original.run_id, done, "measured before the restart"))
    resumed = plan(registry, models=["bert-tiny"], batch_sizes=[1, 2], progressive_mode=False)
    resumed.run_id = original.run_id
    scheduler.resume(resumed)
    assert scheduler.wait(resumed.run_id, timeout=120).status == "completed"
    assert [r.config.key() for _, r, _ in store.results] == [original.configs[1].key()]


def test_progressive_mode_stops_escalating_after_a_failure(make_scheduler, registry):
    # 1 GB of "free memory" admits batch size 1 of bert-tiny but refuses 2048 at sequence length 512.
    scheduler, store, _ = make_scheduler(free_memory=lambda device: 1024**3)
    run = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[1, 2048, 4096], sequence_length=512,
                                progressive_mode=True))
    scheduler.wait(run.run_id, timeout=120)
    measured = [(r.config.batch_size, r.status) for _, r, _ in store.results]
    assert measured == [(1, "ok"), (2048, "refused")]
    (_, skipped, reason), = store.stops
    assert skipped.batch_size == 4096 and "stopped after batch size 2048" in reason


def test_runs_finished_long_ago_are_forgotten_by_the_scheduler(make_scheduler, registry):
    from datetime import timedelta

    from engine.runs import utc_now

    scheduler, _, _ = make_scheduler()
    old = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[1]))
    scheduler.wait(old.run_id, timeout=120)
    assert scheduler.get(old.run_id) is old
    old.completed_at = utc_now() - timedelta(hours=1)
    fresh = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[1]))
    assert scheduler.get(old.run_id) is None and scheduler.get(fresh.run_id) is fresh


class FlakyStore(MemoryStore):
    """Storage whose first result write fails, as a full disk would."""

    def __init__(self):
        super().__init__()
        self.failures_left = 1

    def record_result(self, run_id, result, fingerprint, *, run=None):
        if self.failures_left:
            self.failures_left -= 1
            raise OSError("disk full")
        super().record_result(run_id, result, fingerprint, run=run)


def test_a_storage_failure_fails_one_config_and_the_device_keeps_working(make_scheduler, registry):
    scheduler, store, _ = make_scheduler(store=FlakyStore())
    first = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[1, 2], progressive_mode=False))
    assert scheduler.wait(first.run_id, timeout=120).status == "completed"
    assert first.failed_configs == 1 and len(store.results) == 1
    second = scheduler.submit(plan(registry, models=["gpt2-tiny"], batch_sizes=[1]))
    assert scheduler.wait(second.run_id, timeout=120).status == "completed"


def test_shutdown_mid_config_records_nothing_for_it_so_a_restart_measures_it(make_scheduler, registry):
    # SLOW configs each take their whole second, so the shutdown lands inside the second config:
    # the status names it as the current step once its measurement is under way.
    scheduler, store, events = make_scheduler(settings=SLOW)
    run = scheduler.submit(plan(registry, SLOW, models=["bert-tiny"], batch_sizes=[1, 2, 3], progressive_mode=False))
    first, second, third = run.configs
    deadline = time.monotonic() + 120
    while not (store.results and run.current_step and f"batch size {second.batch_size} " in run.current_step):
        assert time.monotonic() < deadline, "the second config never started"
        time.sleep(0.02)
    scheduler.shutdown()
    assert [result.config.key() for _, result, _ in store.results] == [first.key()]
    assert all(result.ok for _, result, _ in store.results)
    assert store.finished_keys(run.run_id) == {first.key()}  # the killed config left nothing behind
    assert store.runs[run.run_id].status == "running"  # resumed at the next start

    # The restart: a new scheduler on the same store resumes the run, as the server does at start
    # (services.resume_interrupted_runs: planned again under its stored id).
    restarted, _, _ = make_scheduler(store=store)
    again = plan(registry, models=["bert-tiny"], batch_sizes=[1, 2, 3], progressive_mode=False)
    again.run_id = run.run_id
    restarted.resume(again)
    assert restarted.wait(run.run_id, timeout=120).status == "completed"
    measured = [result.config.key() for rid, result, _ in store.results if rid == run.run_id]
    assert measured == [first.key(), second.key(), third.key()]  # the interrupted config, measured once
    assert store.runs[run.run_id].status == "completed"


class ConcurrencyProbe:
    """Stands in for the workers of two devices (this machine has one, the CPU): each run
    records how many configs were measuring at once, and holds its device until another
    device's run has joined it, or for ``alone_s`` when none does."""

    def __init__(self, alone_s: float = 0.3):
        self.lock = threading.Condition()
        self.running = self.most = 0
        self.jobs = []
        self.alone_s = alone_s

    def worker(self, device):
        probe = self

        class Worker:
            def run(self, job, timeout_s=None):
                from engine.result import Measurement

                with probe.lock:
                    probe.running += 1
                    probe.most = max(probe.most, probe.running)
                    probe.jobs.append(job)
                    probe.lock.notify_all()
                    probe.lock.wait_for(lambda: probe.most > 1, timeout=probe.alone_s)
                    probe.running -= 1
                return Measurement.of(job.config, n_samples=1, p50_latency_ms=1.0, throughput_items_per_second=1.0,
                                      ci_met=True)

            def cancel(self):
                return False

            def close(self):
                pass

        return Worker()


def two_device_run(registry, **request):
    devices = ["cpu", "gpu-stand-in:0"]
    return plan_run(RunRequest(models=["bert-tiny"], hardware=devices, batch_sizes=[1, 2], progressive_mode=False,
                               **request),
                    registry=registry, resolve_hardware=lambda names: devices,
                    environment=lambda device: {"hardware": device})


@pytest.mark.parametrize(("parallel_devices", "most"), [(False, 1), (True, 2)])
def test_one_config_at_a_time_per_machine_unless_devices_may_measure_in_parallel(registry, parallel_devices, most):
    # In parallel, a config waits (up to a minute, for a loaded machine) for the other device's to
    # start, so overlapping is not a race against 0.3 s; one at a time, each waits its 0.3 s alone,
    # room for the other device's thread to start one if the scheduler let it.
    probe = ConcurrencyProbe(alone_s=60 if parallel_devices else 0.3)
    scheduler = Scheduler(store=MemoryStore(), sink=StatusLog(), worker_factory=probe.worker,
                          parameters_million=lambda name: 0.2, free_memory_bytes=lambda device: 1024**4,
                          settings=FAST, parallel_devices=parallel_devices)
    try:
        run = scheduler.submit(two_device_run(registry))
        assert scheduler.wait(run.run_id, timeout=60).status == "completed"
    finally:
        scheduler.shutdown()
    assert len(probe.jobs) == 4 and probe.most == most


def test_a_run_is_measured_with_its_own_settings(registry):
    probe = ConcurrencyProbe()
    scheduler = Scheduler(store=MemoryStore(), sink=StatusLog(), worker_factory=probe.worker,
                          parameters_million=lambda name: 0.2, free_memory_bytes=lambda device: 1024**4,
                          settings=FAST)
    try:
        run = two_device_run(registry, threads=1)
        run.settings = msgspec.structs.replace(FAST, threads=1)
        scheduler.wait(scheduler.submit(run).run_id, timeout=60)
    finally:
        scheduler.shutdown()
    assert {job.settings.threads for job in probe.jobs} == {1}


class UnreachableWorker(KeptWorker):
    """A worker that says, as a Ray cluster's device does while its cluster is unreachable
    (engine.ray_executor), that it cannot take a config now; ``back`` ends that."""

    REASON = "waiting for the Ray cluster at 127.0.0.2:6379 (unreachable since 12:00:00 UTC)"

    def __init__(self, process: WorkerProcess):
        super().__init__(process)
        self.back = threading.Event()

    def unavailable(self):
        return None if self.back.is_set() else self.REASON


def test_a_run_waits_queued_saying_why_while_its_device_cannot_measure(registry, kept_workers):
    made: dict[str, UnreachableWorker] = {}
    store, events = MemoryStore(), StatusLog()
    scheduler = Scheduler(
        store=store, sink=events,
        worker_factory=lambda device: made.setdefault(device, UnreachableWorker(kept_workers(device)._process)),
        parameters_million=lambda name: registry.get(name).parameters_million,
        free_memory_bytes=free_memory_bytes, settings=FAST,
    )
    try:
        run = scheduler.submit(plan(registry, models=["bert-tiny"], batch_sizes=[1]))
        deadline = time.monotonic() + 30
        while scheduler.status(run.run_id).current_step != UnreachableWorker.REASON:
            assert time.monotonic() < deadline, "the run never said why it waits"
            time.sleep(0.05)
        time.sleep(1.5)  # a while later (the scheduler asks again every second): still waiting, nothing failed
        waiting = scheduler.status(run.run_id)
        assert waiting.status == "queued" and waiting.completed_configs == 0 and not store.results
        made["cpu"].back.set()
        assert scheduler.wait(run.run_id, timeout=120).status == "completed"
        (_, result, _), = store.results
        assert result.ok
    finally:
        scheduler.shutdown()
