"""Progressive mode calls a throughput plateau only on converged results (issue 14).

A median whose confidence interval never tightened (``ci_met`` false) can be off by a
factor of ten on a busy machine, so it must not stop an escalation. The decision is
checked on given throughputs first (the rule itself), then end to end with a real worker
whose timing can never converge.
"""

from __future__ import annotations

from engine.config import BenchmarkConfig, MeasurementSettings
from engine.hardware import environment, free_memory_bytes, resolve_hardware
from engine.models.registry import ModelRegistry
from engine.planning import plan_run
from engine.result import Measurement
from engine.runs import RunRequest, RunState
from engine.scheduler import Scheduler
from engine.worker_client import WorkerProcess

BATCH_SIZES = [1, 2, 4, 8]


class NullStore:
    def __init__(self):
        self.results, self.stops = [], []

    def has_recent_result(self, config_key, fingerprint, max_age_days):
        return False

    def finished_keys(self, run_id):
        return set()

    def record_result(self, run_id, result, fingerprint, *, run=None):
        self.results.append(result)

    def record_progressive_stop(self, run_id, config, reason):
        self.stops.append((config, reason))

    def save_run(self, record):
        pass


class NullSink:
    def run_updated(self, run_id, status):
        pass

    def result_recorded(self, run_id, result):
        pass

    def run_finished(self, run_id, status):
        pass


def no_worker(device):
    raise AssertionError("deciding a plateau needs no worker")


def scheduler(**kwargs) -> Scheduler:
    return Scheduler(
        store=kwargs.pop("store", NullStore()), sink=NullSink(), worker_factory=kwargs.pop("worker_factory", no_worker),
        parameters_million=lambda name: 1.0, free_memory_bytes=lambda device: 2**40, **kwargs,
    )


def configs() -> list[BenchmarkConfig]:
    return [BenchmarkConfig(model_name="bert-tiny", hardware="cpu", batch_size=size) for size in BATCH_SIZES]


def run_state() -> RunState:
    return RunState(request=RunRequest(models=["bert-tiny"], batch_sizes=BATCH_SIZES), configs=configs())


def measured(config: BenchmarkConfig, items_per_second: float, *, converged: bool) -> Measurement:
    return Measurement.of(config, throughput_items_per_second=items_per_second, ci_met=converged, n_samples=10)


def decide(steps: list[tuple[float, bool]]) -> list[str | None]:
    """The stop reason after each batch size, fed in order: (items/s, converged) per step."""
    deciding, run = scheduler(), run_state()
    return [
        deciding._escalation_stop(run, config, measured(config, items, converged=converged))
        for config, (items, converged) in zip(run.configs, steps, strict=False)
    ]


def test_a_converged_plateau_still_stops_the_escalation():
    reasons = decide([(100.0, True), (101.0, True)])
    assert reasons[0] is None
    assert reasons[1] is not None and "throughput plateau" in reasons[1]
    assert "at batch size 1" in reasons[1]


def test_an_unconverged_result_never_declares_a_plateau():
    # Today's bug: 101 items/s against 100 reads as a plateau although its CI was never met.
    assert decide([(100.0, True), (101.0, False)]) == [None, None]


def test_an_unconverged_first_result_is_not_the_baseline_of_a_plateau():
    # The noisy 1,000 items/s at batch 1 would make 200 at batch 2 look like a collapse.
    assert decide([(1000.0, False), (200.0, True), (400.0, True)]) == [None, None, None]


def test_the_next_converged_result_is_judged_against_the_last_converged_one():
    reasons = decide([(100.0, True), (30.0, False), (102.0, True)])
    assert reasons[:2] == [None, None]
    assert reasons[2] is not None and "vs 100.0 at batch size 1" in reasons[2]


def test_a_rising_converged_escalation_goes_on():
    assert decide([(100.0, True), (180.0, True), (300.0, True), (320.0, True)]) == [None, None, None, None]


def test_a_progressive_run_whose_timing_never_converges_measures_every_batch_size():
    """End to end with a real worker: ci_target 0 can never be met, so every result is
    unconverged, and none of them may cut the escalation short."""
    never_converges = MeasurementSettings(warmup_iterations=1, min_iterations=3, min_seconds=0.02,
                                          max_seconds=0.1, ci_target=0.0)
    registry, store = ModelRegistry(), NullStore()
    running = scheduler(store=store, worker_factory=lambda device: WorkerProcess(device), settings=never_converges)
    try:
        run = running.submit(plan_run(
            RunRequest(models=["bert-tiny"], batch_sizes=[1, 2, 4], progressive_mode=True, incremental=False),
            registry=registry, resolve_hardware=resolve_hardware, environment=environment,
            settings=never_converges,  # a run is measured with the settings it was planned with
        ))
        assert running.wait(run.run_id, timeout=240).status == "completed"
    finally:
        running.shutdown()
    assert store.stops == []
    assert sorted(result.batch_size for result in store.results) == [1, 2, 4]
    outcomes = [(result.batch_size, result.status, result.ci_met, result.stop_reason, result.error_message)
                for result in store.results]
    assert all(result.ok and result.ci_met is False and result.stop_reason is None for result in store.results), outcomes
