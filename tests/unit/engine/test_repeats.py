"""Repeats: one config measured in several worker processes, pooled into one result."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.config import BenchmarkConfig, MeasurementSettings
from engine.hardware import environment, resolve_hardware
from engine.models.registry import ModelRegistry
from engine.planning import plan_run
from engine.repeats import between_process_cv, pool
from engine.result import FAILED, OK, Measurement
from engine.runs import RunRequest
from engine.scheduler import Scheduler
from engine.stats import summarize, throughput_ci

CONFIG = BenchmarkConfig(model_name="bert-tiny", hardware="cpu", batch_size=2)
SETTINGS = MeasurementSettings()


def measured(median: float, n: int = 200, seed: int = 0, **fields) -> Measurement:
    samples = [float(x) for x in np.random.default_rng(seed).normal(median, median * 0.01, n)]
    stats = summarize(samples, sum(samples) / 1000, SETTINGS.ci_target)
    items = CONFIG.batch_size * n / stats.total_timed_seconds
    return Measurement.of(CONFIG, **{name: getattr(stats, name) for name in stats.__struct_fields__}, status=OK,
                          samples_ms=samples, throughput_items_per_second=items, load_time_ms=100.0 + seed,
                          memory_peak_mb=10.0 + seed, wall_seconds=1.0, **fields)


def test_between_process_cv_is_the_spread_of_the_medians():
    assert between_process_cv([10.0, 10.0, 10.0]) == 0.0
    assert between_process_cv([9.0, 10.0, 11.0]) == pytest.approx(0.1)
    assert between_process_cv([10.0]) is None


def test_pooling_merges_the_samples_and_records_the_spread():
    results = [measured(10.0, seed=1), measured(11.0, seed=2), measured(12.0, seed=3)]
    pooled = pool(results, SETTINGS)
    assert pooled.repeats == 3
    assert pooled.between_process_cv == pytest.approx(between_process_cv([r.p50_latency_ms for r in results]))
    assert pooled.n_samples == 600 and len(pooled.samples_ms) == 600
    assert pooled.p50_latency_ms == pytest.approx(11.0, abs=0.2)
    assert pooled.min_latency_ms == min(r.min_latency_ms for r in results)
    assert pooled.total_timed_seconds == pytest.approx(sum(r.total_timed_seconds for r in results))
    # Items over the summed timed seconds, not a mean of rates.
    items = sum(r.throughput_items_per_second * r.total_timed_seconds for r in results)
    assert pooled.throughput_items_per_second == pytest.approx(items / pooled.total_timed_seconds)
    # The CI is the pooled throughput's (from the pooled samples' mean), not the first process's.
    assert (pooled.throughput_ci_low_items_per_second, pooled.throughput_ci_high_items_per_second) == pytest.approx(
        throughput_ci(pooled.throughput_items_per_second, pooled.samples_ms)
    )
    assert pooled.throughput_ci_low_items_per_second < pooled.throughput_items_per_second
    assert pooled.throughput_items_per_second < pooled.throughput_ci_high_items_per_second
    assert pooled.memory_peak_mb == 13.0  # the highest peak
    assert pooled.load_time_ms == 101.0  # the first process's
    assert pooled.wall_seconds == pytest.approx(3.0)


def test_pooling_keeps_at_most_keep_samples_and_is_contended_if_any_process_was():
    results = [measured(10.0, n=300, seed=1, contended=False), measured(10.0, n=300, seed=2, contended=True)]
    pooled = pool(results, MeasurementSettings(keep_samples=100))
    assert len(pooled.samples_ms) == 100
    assert pooled.contended is True


class FakeWorker:
    """Counts processes: ``recycle`` ends one, the next ``run`` 'starts' another."""

    def __init__(self, medians, fail_at=None):
        self.medians, self.fail_at = list(medians), fail_at
        self.processes, self.runs, self._running = 0, 0, False

    def recycle(self):
        self._running = False

    def run(self, job, timeout_s=None):
        if not self._running:
            self.processes += 1
            self._running = True
        self.runs += 1
        if self.fail_at == self.runs:
            return Measurement.failure(job.config, FAILED, "worker_crashed", "boom")
        return measured(self.medians[self.runs - 1], seed=self.runs)

    def cancel(self):
        pass

    def close(self):
        pass


class Store:
    def __init__(self):
        self.results, self.lock = [], threading.Lock()

    def has_recent_result(self, *args):
        return False

    def finished_keys(self, run_id):
        return set()

    def record_result(self, run_id, result, fingerprint, *, run=None):
        self.results.append(result)

    def record_progressive_stop(self, *args):
        pass

    def save_run(self, record):
        pass


class Sink:
    def run_updated(self, *args):
        pass

    def result_recorded(self, *args):
        pass

    def run_finished(self, *args):
        pass


def schedule(worker, repeats, status="completed"):
    store = Store()
    scheduler = Scheduler(store=store, sink=Sink(), worker_factory=lambda device: worker,
                          parameters_million=lambda name: 4.4, free_memory_bytes=lambda device: 2**40)
    request = RunRequest(models=["bert-tiny"], batch_sizes=[2], progressive_mode=False, force=True, repeats=repeats)
    run = plan_run(request, registry=ModelRegistry(), resolve_hardware=resolve_hardware, environment=environment)
    try:
        scheduler.submit(run)
        assert scheduler.wait(run.run_id, timeout=60).status == status
    finally:
        scheduler.shutdown()
    return store.results


def test_the_scheduler_measures_each_config_in_r_fresh_processes_and_records_one_pooled_result():
    worker = FakeWorker([10.0, 10.5, 11.0])
    (result,) = schedule(worker, repeats=3)
    assert worker.processes == 3 and worker.runs == 3
    assert result.repeats == 3 and result.n_samples == 600
    assert result.between_process_cv == pytest.approx(between_process_cv([10.0, 10.5, 11.0]), rel=0.05)


def test_one_repeat_is_a_plain_measurement_in_the_long_lived_worker():
    worker = FakeWorker([10.0])
    (result,) = schedule(worker, repeats=1)
    assert worker.processes == 1 and result.repeats is None and result.between_process_cv is None


def test_a_failed_repeat_fails_the_config():
    worker = FakeWorker([10.0, 10.0, 10.0], fail_at=2)
    (result,) = schedule(worker, repeats=3, status="failed")
    assert result.status == FAILED and result.error_type == "worker_crashed"
    assert worker.runs == 2


def test_repeats_are_part_of_the_request_and_bounded():
    from engine.errors import InvalidRequestError
    from engine.runs import run_request

    assert run_request({"repeats": 3}).repeats == 3
    assert RunRequest().repeats == 1
    for bad in (0, 21):
        with pytest.raises(InvalidRequestError) as refused:
            run_request({"repeats": bad})
        assert refused.value.field == "repeats"
