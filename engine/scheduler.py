"""Runs wait in a priority queue; each device measures one config at a time.

One dispatcher thread per device pulls the next config of the best run
(critical > high > medium > low, FIFO within a priority; a run keeps its device
until its configs there are done), checks incremental skips and memory, hands the
config to that device's long-lived worker process and hands the result to the
recorder (engine.recorder), which stores it and publishes the run's new status while the
worker goes on with the next config. The scheduler never runs a model in its own process.

By default the machine measures one config at a time, whatever the device: a CPU
worker uses every core while a GPU worker is launch-bound on the same CPU, so two
devices measuring at once disturb each other. ``parallel_devices=True`` lets each
device measure on its own (each run records which it was). ``machine_of`` says which
machine a device is on (a Ray cluster's devices are on their nodes' hosts); devices of
different machines measure at the same time.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from engine.config import BenchmarkConfig, Job, MeasurementSettings
from engine.errors import UnknownRunError
from engine.recorder import Recorder
from engine.ports import EventSink, ResultStore
from engine.repeats import pool as pool_repeats
from engine.resources import refusal_reason
from engine import result as config_outcome
from engine import runs as run_states
from engine.result import REFUSED, Measurement
from engine.runs import CANCELLED, PRIORITY_RANK, QUEUED, RUNNING, RunRecord, RunState, RunStatus, utc_now

log = logging.getLogger(__name__)

INCREMENTAL_MAX_AGE_DAYS = 30
# A larger batch that gains less than this much throughput has plateaued.
PLATEAU_GAIN = 1.05
ESCALATION_STOPPERS = ("oom", "timeout", "worker_crashed")
FINISHED_RUN_MEMORY = timedelta(minutes=15)
UNAVAILABLE_POLL_S = 1.0  # how often a device that cannot measure for now is asked again


def _escalation_key(config: BenchmarkConfig) -> tuple:
    """The configs one progressive escalation climbs the batch sizes of: a generate escalation
    stops at its own OOM (its KV cache grows with the batch), not at a forward one's."""
    return (config.model_name, config.hardware, config.precision, config.sequence_length,
            config.scenario, config.new_tokens)


class Scheduler:
    def __init__(
        self,
        *,
        store: ResultStore,
        sink: EventSink,
        worker_factory: Callable[[str], object],
        parameters_million: Callable[[str], float],
        free_memory_bytes: Callable[[str], int],
        settings: MeasurementSettings | None = None,
        config_timeout_s: float | None = None,
        models_dir: str | None = None,
        custom_benchmarks_dir: str | None = None,
        parallel_devices: bool = False,
        machine_of: Callable[[str], str | None] | None = None,
    ):
        self._store = store
        self._sink = sink
        self._worker_factory = worker_factory
        self._parameters_million = parameters_million
        self._free_memory_bytes = free_memory_bytes
        self.settings = settings or MeasurementSettings()
        self._config_timeout_s = config_timeout_s or self.settings.max_seconds * 3 + 120
        self._models_dir = models_dir
        self._custom_benchmarks_dir = custom_benchmarks_dir
        self.parallel_devices = parallel_devices
        # Held while a config is measured, unless devices may measure at the same time.
        self._machine = threading.Lock()
        self._machine_of = machine_of  # None: every device is on this machine
        self._machines: dict[str, threading.Lock] = {}  # other machines' locks, by machine
        self._lock = threading.Condition()
        # Stores results and runs' rows and tells the sink, one at a time, in order; a run's end
        # (its reports) is told on a thread of its own, so no write and no submit waits for it.
        self._recorder = Recorder()
        self._ends = Recorder("run-ends")
        self._runs: dict[str, RunState] = {}
        self._sequence = itertools.count()
        self._threads: dict[str, threading.Thread] = {}
        self._workers: dict[str, object] = {}
        self._in_flight: dict[str, tuple[str, str]] = {}  # device -> (run_id, config key)
        self._recording: set[tuple[str, str]] = set()  # (run_id, config key) measured, not yet stored
        self._sticky: dict[str, str] = {}  # device -> run_id it is working through
        self._stopping = False

    # ---- public API -------------------------------------------------------------

    def submit(self, run: RunState) -> RunState:
        """Queue a planned run (or one to resume, whose ``finished_keys`` are already set)."""
        with self._lock:
            self._forget_finished_runs()
            run.status = QUEUED
            run.sequence = next(self._sequence)
            self._runs[run.run_id] = run
            for device in {c.hardware for c in run.configs}:
                self._ensure_device_thread(device)
            self._lock.notify_all()
        self._publish(run, wait=True)  # stored before the caller hands out its id
        if not run.configs or run.completed_configs == run.total_configs:
            self._finish_if_done(run)
        return run

    def resume(self, run: RunState) -> RunState:
        """Re-queue a run that was active when the process died; its stored configs are skipped."""
        run.finished_keys = self._store.finished_keys(run.run_id)
        return self.submit(run)

    def prestart(self, devices: list[str]) -> None:
        """Start the devices' workers in the background, so the first run does not wait
        for torch's import. ``ping`` holds the worker's request lock, so a run that
        arrives meanwhile waits for the start instead of racing it."""
        for device in devices:
            threading.Thread(target=self._worker(device).ping, name=f"prestart-{device}", daemon=True).start()

    def get(self, run_id: str) -> RunState | None:
        with self._lock:
            return self._runs.get(run_id)

    def status(self, run_id: str) -> RunStatus:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                raise UnknownRunError(run_id)
            return run.status_now()

    def cancel(self, run_id: str) -> RunStatus:
        """Stop a run: the config in flight is killed, results already stored stay."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                raise UnknownRunError(run_id)
            if run.terminal:
                return run.status_now()
            run.status = CANCELLED
            run.current_step = None
            run.completed_at = utc_now()
            devices = [d for d, (rid, _) in self._in_flight.items() if rid == run_id]
            workers = [self._workers[d] for d in devices if d in self._workers]
            self._lock.notify_all()
        for worker in workers:
            worker.cancel()
        # Returns once the results measured before the cancel are stored, and the cancel with them.
        return self._publish(run, wait=True)

    def wait(self, run_id: str, timeout: float | None = None) -> RunState:
        """The run once it is terminal and its listeners have heard so (reports written),
        or as it is when ``timeout`` passes."""
        with self._lock:
            run = self._runs[run_id]
        run.finished.wait(timeout)
        return run

    def shutdown(self) -> None:
        """Stop dispatching, kill configs in flight and close the workers.

        Runs still active stay ``running``/``queued`` in storage, so the next start resumes them.
        """
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
            workers = list(self._workers.values())
            threads = list(self._threads.values())
        for worker in workers:
            worker.cancel()
        for thread in threads:
            thread.join(timeout=30)
        self._recorder.close()  # what was measured is stored before the caller closes the store
        self._ends.close()
        for worker in workers:
            worker.close()

    def _forget_finished_runs(self) -> None:
        """A long-lived server must not keep every run ever made; storage has the finished ones."""
        cutoff = utc_now() - FINISHED_RUN_MEMORY
        for run_id in [rid for rid, run in self._runs.items() if run.terminal and run.completed_at < cutoff]:
            del self._runs[run_id]

    # ---- dispatching ------------------------------------------------------------

    def _ensure_device_thread(self, device: str) -> None:
        if device not in self._threads:
            thread = threading.Thread(target=self._device_loop, args=(device,), name=f"device-{device}", daemon=True)
            self._threads[device] = thread
            thread.start()

    def _next(self, device: str) -> tuple[RunState, BenchmarkConfig] | None:
        """Best run with work for ``device``; waits until there is one. None when stopping."""
        while not self._stopping:
            candidates = [
                run for run in self._runs.values()
                if not run.terminal and self._pending(run, device)
            ]
            if candidates:
                sticky = self._runs.get(self._sticky.get(device, ""))
                run = sticky if sticky in candidates else min(
                    candidates, key=lambda r: (PRIORITY_RANK[r.priority], r.sequence)
                )
                self._sticky[device] = run.run_id
                return run, self._pending(run, device)[0]
            self._lock.wait()
        return None

    def _pending(self, run: RunState, device: str) -> list[BenchmarkConfig]:
        in_flight = {key for rid, key in [*self._in_flight.values(), *self._recording] if rid == run.run_id}
        return [c for c in run.pending(device) if c.key() not in in_flight]

    def _device_loop(self, device: str) -> None:
        while True:
            with self._lock:
                previous_run = self._sticky.get(device)
                picked = self._next(device)
                if picked is None:
                    return
                run, config = picked
                waiting = self._unavailable(device)
                if waiting is not None:
                    # The device cannot measure for now (its Ray cluster is unreachable): the run
                    # keeps its place and says why, and goes on once the device is back (issue 13).
                    announce = run.current_step != waiting
                    run.current_step = waiting
                else:
                    self._in_flight[device] = (run.run_id, config.key())
                    starting = run.status == QUEUED
                    if starting:
                        run.status = RUNNING
                        run.started_at = run.started_at or utc_now()
                    run.current_step = f"{config.model_name} on {config.hardware}, batch size {config.batch_size} ({config.precision})"
            if waiting is not None:
                if announce:
                    self._publish(run)
                with self._lock:
                    if not self._stopping:
                        self._lock.wait(timeout=UNAVAILABLE_POLL_S)
                continue
            # Which config is measuring is live state, read from memory by the API and the pages;
            # storing it too would cost a commit per config (issue 16). The row is stored when the
            # run starts, and the config's result stores it again with the step.
            self._publish(run, store=starting)
            if run.run_id != previous_run:
                # The end of this device's last run (its reports) is written before this run
                # measures, so the two do not overlap. A config's own write does overlap the next
                # config's build and warm-up (at least warmup_seconds), which it is usually far
                # shorter than (~7 ms on a quiet machine, 20-60 ms on a loaded one). Another
                # device's run may still end during this one, as before.
                self._recorder.drain()
                self._ends.drain()
            try:
                self._execute(run, config, device)
            except Exception:  # a storage or sink failure must fail this config, not the device thread
                self._fail_unless_counted(run, config, "failed outside the worker")
            finally:
                with self._lock:
                    self._in_flight.pop(device, None)
                    self._lock.notify_all()
            if self._stopping:
                return
            self._finish_if_done(run)

    def _execute(self, run: RunState, config: BenchmarkConfig, device: str) -> None:
        fingerprint = run.fingerprints[device]
        request = run.request
        if request.incremental and not request.force and self._store.has_recent_result(
            config.key(), fingerprint, INCREMENTAL_MAX_AGE_DAYS
        ):
            self._finish_config(run, config, measured_seconds=None, skipped=True)
            return

        with self._one_config_per_machine(device):
            reason = refusal_reason(
                config, self._parameters_million(config.model_name), self._free_memory_bytes(device)
            )
            if reason is not None:
                result = Measurement.failure(config, REFUSED, "insufficient_memory", reason)
            else:
                with self._lock:
                    if run.status == CANCELLED or self._stopping:
                        return  # cancelled while this config was being picked
                started = time.monotonic()
                job = self._job(config, run.settings)
                result = self._measure(run, device, job)
                result.wall_seconds = result.wall_seconds or time.monotonic() - started

        with self._lock:
            killed_by_us = run.status == CANCELLED or self._stopping
        if killed_by_us and not result.ok:
            # Our own kill (a cancel, or a shutdown whose restart will measure it again).
            return

        stopped_by = self._escalation_stop(run, config, result) if request.progressive_mode else None
        result.stop_reason = stopped_by
        with self._lock:
            self._recording.add((run.run_id, config.key()))
        recorded = self._recorder.submit(self._record, run, config, result, fingerprint, stopped_by)
        if stopped_by:
            recorded.result()  # the escalation's larger batch sizes are skipped before the next pick

    def _record(
        self, run: RunState, config: BenchmarkConfig, result: Measurement, fingerprint: str, stopped_by: str | None,
    ) -> None:
        """On the recorder: store a measured config, skip what its escalation stop rules out,
        and end the run if that was its last config."""
        try:
            self._record_and_publish(
                run, config, result, fingerprint,
                measured_seconds=result.wall_seconds if result.status in (config_outcome.OK, config_outcome.FAILED) else None,
            )
            if stopped_by:
                self._skip_rest_of_escalation(run, config, stopped_by)
        except Exception:  # a storage or sink failure fails this config, not the recorder
            self._fail_unless_counted(run, config, "could not be recorded")
        finally:
            with self._lock:
                self._recording.discard((run.run_id, config.key()))
                self._lock.notify_all()
        if not self._stopping:
            self._finish_if_done(run)

    def _fail_unless_counted(self, run: RunState, config: BenchmarkConfig, what: str) -> None:
        """Log the failure in hand and count the config as failed, unless it was counted already."""
        log.exception("config %s of run %s %s", config.key(), run.run_id, what)
        with self._lock:
            counted = config.key() in run.finished_keys
        if not counted:
            self._finish_config(run, config, measured_seconds=None, failed=True)

    def _one_config_per_machine(self, device: str | None = None):
        if self.parallel_devices:
            return contextlib.nullcontext()
        machine = self._machine_of(device) if self._machine_of is not None and device is not None else None
        if machine is None:
            return self._machine
        with self._lock:
            return self._machines.setdefault(machine, threading.Lock())

    def _measure(self, run: RunState, device: str, job: Job) -> Measurement:
        """``job`` measured in the device's worker; with ``repeats`` R > 1, once in each of R fresh
        worker processes, the samples pooled (engine.repeats). A failed repeat is the result."""
        worker = self._worker(device)
        if run.request.repeats <= 1:
            return worker.run(job, timeout_s=self._config_timeout_s)
        measured = []
        for _ in range(run.request.repeats):
            with self._lock:
                if run.status == CANCELLED or self._stopping:
                    return Measurement.failure(job.config, config_outcome.FAILED, "cancelled", "cancelled between repeats")
            if hasattr(worker, "recycle"):  # a worker that cannot restart (a Ray actor) repeats in place
                worker.recycle()
            result = worker.run(job, timeout_s=self._config_timeout_s)
            if not result.ok:
                return result
            measured.append(result)
        return pool_repeats(measured, job.settings)

    def _unavailable(self, device: str) -> str | None:
        """Why the device's worker cannot take a config now, if it can say (a Ray cluster's
        device while the connection is down); None otherwise."""
        ask = getattr(self._worker(device), "unavailable", None)
        if ask is None:
            return None
        try:
            reason = ask()
            return reason if isinstance(reason, str) else None
        except Exception:  # noqa: BLE001 - a question, never a reason to stop the device
            log.exception("could not ask whether %s can measure", device)
            return None

    def worker(self, device: str):
        """The device's worker (made on first use, not started): for questions only it can answer."""
        return self._worker(device)

    def _worker(self, device: str):
        with self._lock:
            if device not in self._workers:
                self._workers[device] = self._worker_factory(device)
            return self._workers[device]

    def _job(self, config: BenchmarkConfig, settings: MeasurementSettings | None = None) -> Job:
        return Job(
            config=config,
            settings=settings or self.settings,
            models_dir=self._models_dir,
            custom_benchmarks_dir=self._custom_benchmarks_dir,
        )

    # ---- progressive mode -------------------------------------------------------

    @staticmethod
    def _escalation(run: RunState, config: BenchmarkConfig) -> list[BenchmarkConfig]:
        return [
            c for c in run.configs
            if _escalation_key(c) == _escalation_key(config)
        ]

    def _escalation_stop(self, run: RunState, config: BenchmarkConfig, result: Measurement) -> str | None:
        """Why escalating this model/hardware/precision past ``config`` is pointless, if it is."""
        larger = [c for c in self._escalation(run, config) if c.batch_size > config.batch_size]
        if not larger:
            return None
        if not result.ok:
            if result.error_type in ESCALATION_STOPPERS or result.status == REFUSED:
                return f"stopped after batch size {config.batch_size}: {result.error_type}"
            return None
        if result.ci_met is False:
            # An unconverged median cannot show a plateau: escalate on, and judge the next
            # converged result against the last converged one (issue 14).
            return None
        previous = run.last_throughput.get(_escalation_key(config))
        run.last_throughput[_escalation_key(config)] = (
            config.batch_size, result.throughput_items_per_second
        )
        if previous and result.throughput_items_per_second < previous[1] * PLATEAU_GAIN:
            return (
                f"stopped after batch size {config.batch_size}: throughput plateau "
                f"({result.throughput_items_per_second:.1f} items/s vs {previous[1]:.1f} at batch size {previous[0]})"
            )
        return None

    def _skip_rest_of_escalation(self, run: RunState, config: BenchmarkConfig, reason: str) -> None:
        for skipped in self._escalation(run, config):
            if skipped.batch_size > config.batch_size and skipped.key() not in run.finished_keys:
                self._store.record_progressive_stop(run.run_id, skipped, reason)
                self._finish_config(run, skipped, measured_seconds=None, skipped=True)

    # ---- bookkeeping ------------------------------------------------------------

    def _publish(self, run: RunState, *, store: bool = True, wait: bool = False) -> RunStatus:
        """The run's status now; the recorder stores its row (unless ``store`` is false) and
        tells the sink, after what was handed to it before (``wait``: return once it has).

        Snapshots are versioned under the scheduler's lock, so one taken on another thread and
        handed over late never overwrites a newer one (a ``running`` row written over
        ``cancelled``). The snapshot that announces the run's end (``_snapshot``) goes on to
        ``run_finished`` (reports) on the run-ends thread, which then sets ``run.finished``.
        Never raises: a storage or sink failure is logged, and the run goes on.
        """
        with self._lock:
            version, status, record, finishing = self._snapshot(run)
        handed = (self._deliver, run, version, status, record, finishing, store)
        self._recorder.call(*handed) if wait else self._recorder.submit(*handed)
        return status

    def _deliver(self, run: RunState, version: int, status: RunStatus, record: RunRecord, finishing: bool,
                 store: bool) -> None:
        try:
            if store and version > run.stored_version:
                self._store.save_run(record)
                run.stored_version = version
            if version > run.published_version:
                run.published_version = version
                self._sink.run_updated(run.run_id, status)
        except Exception:
            log.exception("could not publish the state of run %s", run.run_id)
        self._announce_end(run, status, finishing)

    def _snapshot(self, run: RunState) -> tuple[int, RunStatus, RunRecord, bool]:
        """The run's next version, status and row, and whether it announces the run's end (under
        the scheduler's lock): the first terminal one with none of the run's configs measuring
        or being stored. A cancel's end waits for the config it killed, or the result that
        config finished with just before: the reports and ``wait`` then see every result."""
        run.version += 1
        status = run.status_now()
        finishing = run.terminal and not run.finishing and not self._busy(run)
        run.finishing = run.finishing or finishing
        return run.version, status, run.record(status), finishing

    def _busy(self, run: RunState) -> bool:
        """Whether a config of the run is measuring, or measured and not yet stored (under the lock)."""
        return any(rid == run.run_id for rid, _ in [*self._in_flight.values(), *self._recording])

    def _record_and_publish(
        self, run: RunState, config: BenchmarkConfig, result: Measurement, fingerprint: str, *,
        measured_seconds: float | None,
    ) -> None:
        """On the recorder: store a config's result and the run's row that counts it in one
        transaction (one commit per config, issue 16), then tell the sink: the result, then the
        run's state.

        Taken on the recorder, this snapshot is newer than every one handed over before it. The
        run's counters move before the snapshot and move back if the write fails, which raises:
        the caller then fails the config, as when a result could not be stored on its own. So
        does the claim on announcing the run's end that the snapshot may have taken.
        """
        failed = not result.ok
        with self._lock:
            counted = config.key() not in run.finished_keys
            self._count_finished(run, config, measured_seconds=measured_seconds, skipped=False, failed=failed)
            version, status, record, finishing = self._snapshot(run)
        try:
            self._store.record_result(run.run_id, result, fingerprint, run=record)
        except BaseException:
            with self._lock:
                if counted:
                    run.finished_keys.discard(config.key())
                self._count_finished(
                    run, config, measured_seconds=measured_seconds, skipped=False, failed=failed, sign=-1,
                )
                # This snapshot claimed the run's end (a cancel landed meanwhile) but will not
                # announce it: the next publish must, or run_finished and ``wait`` never come.
                run.finishing = run.finishing and not finishing
            raise
        run.stored_version = run.published_version = version
        try:
            self._sink.result_recorded(run.run_id, result)
            self._sink.run_updated(run.run_id, status)
        except Exception:
            log.exception("could not publish the state of run %s", run.run_id)
        self._announce_end(run, status, finishing)

    def _announce_end(self, run: RunState, status: RunStatus, finishing: bool) -> None:
        if finishing:
            self._ends.submit(self._tell_end, run, status)

    def _tell_end(self, run: RunState, status: RunStatus) -> None:
        try:
            self._sink.run_finished(run.run_id, status)
        except Exception:
            log.exception("a listener failed on the end of run %s", run.run_id)
        finally:
            run.finished.set()

    def _finish_config(
        self, run: RunState, config: BenchmarkConfig, *, measured_seconds: float | None,
        skipped: bool = False, failed: bool = False,
    ) -> None:
        with self._lock:
            self._count_finished(run, config, measured_seconds=measured_seconds, skipped=skipped, failed=failed)
        self._publish(run)

    @staticmethod
    def _count_finished(
        run: RunState, config: BenchmarkConfig, *, measured_seconds: float | None, skipped: bool, failed: bool,
        sign: int = 1,
    ) -> None:
        """Count ``config`` as finished (``sign`` -1: take that back; the caller removes its key)."""
        if sign > 0:
            run.finished_keys.add(config.key())
        if measured_seconds is not None:
            run.measured_seconds += sign * measured_seconds
            run.measured_configs += sign
        run.skipped_configs += sign * skipped
        run.failed_configs += sign * failed

    def _finish_if_done(self, run: RunState) -> None:
        """End the run if its last config is stored; announce a cancel's end once its last
        config is (each is called after a config leaves ``_in_flight`` or ``_recording``)."""
        with self._lock:
            if self._busy(run) or run.finishing:
                return  # a config is measuring or being stored: the last of those ends the run
            if not run.terminal:
                if run.completed_configs < run.total_configs:
                    return
                self._complete(run)
                self._lock.notify_all()
        self._publish(run)

    @staticmethod
    def _complete(run: RunState) -> None:
        """Under the lock: every config of the run is stored, so it is completed (or failed)."""
        all_failed = run.total_configs > 0 and run.failed_configs == run.total_configs
        run.status = run_states.FAILED if all_failed else run_states.COMPLETED
        if all_failed:
            failed = "its only config" if run.total_configs == 1 else f"all {run.total_configs} configs"
            run.error = f"{failed} failed; each one's reason is in the run's failures"
        run.current_step = None
        run.completed_at = utc_now()
