"""The server's (and the headless CLI's) resources, wired once: storage, registry, hardware, scheduler."""

from __future__ import annotations

import logging
import socket
import sys

import msgspec

from engine.config import MeasurementSettings
from engine.errors import EngineError, InvalidRequestError, ModelLoadError, UnknownRunError
from engine.hardware import (
    HardwareInfo, adopt_hardware, detect_hardware, environment, free_memory_bytes, resolve_hardware, use_facts_probe,
)
from engine.models.spec import ModelInfo, ModelSpec
from engine.nodes import RAY_MISSING, StampedWorker, ray_installed
from engine.nodes import resolve as resolve_with_cluster
from engine.planning import plan_run
from engine.ports import EventSink
from engine.result import ResultRow
from engine.runs import FAILED, RunRecord, RunRequest, RunResults, RunState, RunStatus, RunStatusName, utc_now
from engine.scheduler import Scheduler
from engine.worker_client import WorkerProcess
from engine.worker_protocol import PlanFacts
from storage import results as result_rows
from storage import runs as run_rows
from storage.database import Database
from storage.runs import ACTIVE_STATUSES
from webapp.wiring.adapters import StorageResultStore
from webapp.wiring.events import EventFanout
from webapp.reporting.reports import ReportWriter
from webapp.wiring.settings import Settings

log = logging.getLogger(__name__)


def refuse_oversized(run: RunState, limit: int) -> None:
    """A run of more than ``limit`` configs is refused with its count, blaming its largest factor."""
    if run.total_configs <= limit:
        return
    factors = {
        "batch_sizes": len(run.request.batch_sizes),
        "models": len(run.model_names()),
        "hardware": len({config.hardware for config in run.configs}),
    }
    field = max(factors, key=factors.__getitem__)
    raise InvalidRequestError(field, (
        f"this run would have {run.total_configs:,} configs ({factors['models']} models, {factors['hardware']} devices, "
        f"{factors['batch_sizes']} batch sizes); a run may have at most {limit:,} (the server's --max-configs-per-run): "
        f"ask for fewer {field.replace('_', ' ')}"
    ))


def connect_cluster(settings: Settings):
    """The Ray cluster at ``settings.ray_address`` (issue 13), joined as its driver; Ray is
    imported here and nowhere else."""
    if not ray_installed():
        raise EngineError(RAY_MISSING)
    from engine.ray_executor import connect

    return connect(
        settings.ray_address, models_dir=settings.models_dir, custom_benchmarks_dir=settings.custom_benchmarks_dir
    )


def _built_in_the_worker(*_args, **_kwargs):
    raise EngineError("this model was described by the worker; it is built and fed there")


class PlannedModels:
    """The registry planning uses when a worker described the models (issue 16): the ones its
    PlanQuery named, as engine.models.spec.ModelSpec without a builder (the worker builds them)."""

    def __init__(self, facts: PlanFacts):
        self._error = facts.models_error
        self._specs = {
            planned.info.name: ModelSpec(
                name=planned.info.name, family=planned.info.family, architecture=planned.info.type,
                modality=planned.info.modality, parameters_million=planned.parameters_million,
                build=_built_in_the_worker, make_inputs=_built_in_the_worker, source=planned.info.source,
                weights=planned.info.weights, tier=planned.info.tier, image_size=planned.image_size,
                chooses_attention=planned.chooses_attention, scenarios=tuple(planned.info.scenarios),
            )
            for planned in facts.models
        }

    def _names(self) -> list[str]:
        if self._error is not None:
            raise ModelLoadError(self._error)
        return list(self._specs)

    def resolve(self, names: list[str]) -> list[str]:
        return self._names()

    def tier(self, priority: str) -> list[str]:
        return self._names()

    def get(self, name: str) -> ModelSpec:
        return self._specs[name]

    def list(self) -> list[ModelSpec]:
        return list(self._specs.values())


class Services:
    def __init__(
        self, settings: Settings, *, listeners: list[EventSink] | None = None, allow_model_paths: bool = False,
        workers: dict[str, WorkerProcess] | None = None, facts: dict[str, PlanFacts] | None = None,
    ):
        """``workers``: local workers already started (the CLI starts them before it imports
        and plans, issue 16); the scheduler takes each for its device, ``close`` ends the rest.
        ``facts``: what those workers answered a PlanQuery, by device: then the devices, the
        environments and the models come from them and this process imports neither torch
        nor transformers (it plans one run: the models are those the query named)."""
        self.settings = settings
        self._prestarted = dict(workers or {})
        self._environments = {device: answer.environment for device, answer in (facts or {}).items()}
        self.db = Database(settings.db_path, threads=settings.db_threads)
        if facts:
            adopt_hardware(next(iter(facts.values())).hardware)
            self.registry = PlannedModels(next(iter(facts.values())))
        else:
            # Neither imports torch or transformers (issue 16): the registry lists the built-ins
            # from their stated facts and imports transformers for a checkpoint or user code only;
            # the devices and their environments come from a probe process, at first use.
            use_facts_probe()
            from engine.models.registry import ModelRegistry

            self.registry = ModelRegistry(
                settings.models_dir, settings.custom_benchmarks_dir, allow_paths=allow_model_paths
            )
        # --ray-address: every node's devices too, named NODE/DEVICE (engine.ray_executor).
        try:
            self.cluster = connect_cluster(settings) if settings.ray_address else None
        except Exception:
            self.db.close()
            raise
        self.reports = ReportWriter(self.db, settings.results_path, reused_of=self.reused_results)
        self.events = EventFanout([self.reports, *(listeners or [])])
        self.scheduler = Scheduler(
            store=StorageResultStore(self.db, self.describe_model, self.describe_hardware),
            sink=self.events,
            worker_factory=self._worker,
            parameters_million=lambda name: self.registry.get(name).parameters_million,
            free_memory_bytes=self._free_memory_bytes,
            settings=MeasurementSettings(max_seconds=settings.max_seconds, threads=settings.threads),
            models_dir=settings.models_dir,
            custom_benchmarks_dir=settings.custom_benchmarks_dir,
            parallel_devices=settings.parallel_devices,
            machine_of=self._machine_of if self.cluster is not None else None,
        )

    @property
    def local_hardware(self) -> list[HardwareInfo]:
        """This machine's devices, detected at the first question (then cached by engine.hardware)."""
        return detect_hardware()

    @property
    def _hardware_by_name(self) -> dict[str, HardwareInfo]:
        return {hw.name: hw for hw in self.local_hardware}

    @property
    def hardware(self) -> list[HardwareInfo]:
        """This machine's devices, then the Ray cluster's (with node, host and whether it is alive)."""
        return [*self.local_hardware, *(self.cluster.hardware() if self.cluster is not None else [])]

    def _on_cluster(self, device: str) -> bool:
        return self.cluster is not None and self.cluster.owns(device)

    def _machine_of(self, device: str) -> str:
        return self.cluster.machine_of(device) if self._on_cluster(device) else socket.gethostname()

    def _resolve_hardware(self, names: list[str]) -> list[str]:
        if self.cluster is None:
            return resolve_hardware(names)
        return resolve_with_cluster(
            names, local=resolve_hardware, local_names=list(self._hardware_by_name), cluster=self.cluster.devices()
        )

    def _environment(self, device: str) -> dict:
        if self._on_cluster(device):
            return self.cluster.environment(device)
        return self._environments[device] if device in self._environments else environment(device)

    def _free_memory_bytes(self, device: str) -> int:
        if self._on_cluster(device):
            return self.cluster.free_memory_bytes(device)  # asked on the device's node
        # NVML or the device's own worker: this process never opens a CUDA context (issue 10).
        return free_memory_bytes(device, ask_worker=lambda: self.scheduler.worker(device).free_memory_bytes())

    def _worker(self, device: str) -> WorkerProcess:
        # Not started here: its first run() starts it, outside the scheduler's lock.
        if self._on_cluster(device):
            return self.cluster.worker(device)
        process = self._prestarted.pop(device, None) or WorkerProcess(
            device, models_dir=self.settings.models_dir, custom_benchmarks_dir=self.settings.custom_benchmarks_dir
        )
        return StampedWorker(process, node=None, host=socket.gethostname())

    def describe_model(self, name: str) -> ModelInfo:
        return self.registry.get(name).describe()

    def describe_hardware(self, name: str) -> HardwareInfo:
        if self._on_cluster(name):
            return self.cluster.describe(name)
        return self._hardware_by_name[name]

    # ---- runs -------------------------------------------------------------------

    def plan(self, request: RunRequest) -> RunState:
        """Validate and expand a request; raises engine.errors.InvalidRequestError naming the field."""
        run = plan_run(
            request, registry=self.registry, resolve_hardware=self._resolve_hardware, environment=self._environment,
            settings=self.scheduler.settings, parallel_devices=self.settings.parallel_devices,
        )
        refuse_oversized(run, self.settings.max_configs_per_run)
        return run

    def start_run(self, request: RunRequest) -> RunState:
        return self.scheduler.submit(self.plan(request))

    def resume_interrupted_runs(self) -> list[str]:
        """Queue again every run that was active when the last process stopped."""
        resumed = []
        for record in run_rows.list_runs(self.db, RunRecord, statuses=ACTIVE_STATUSES, limit=10_000):
            try:
                if record.request is None:  # stored by another writer: nothing to plan again from
                    raise InvalidRequestError("request", "the run's request was not stored, so its configs are unknown")
                run = self.plan(record.request)
            except Exception as error:  # its models or hardware may be gone since
                run_rows.save_run(self.db, msgspec.structs.replace(
                    record, status=FAILED, completion_time=utc_now(), current_step=None,
                    error=f"could not resume after restart: {error}",
                ))
                continue
            run.run_id, run.created_at, run.started_at = record.run_id, record.created_at, record.start_time
            self.scheduler.resume(run)
            resumed.append(run.run_id)
        if resumed:
            log.info("resumed %d interrupted run(s): %s", len(resumed), ", ".join(resumed))
        return resumed

    def live_status(self, run_id: str) -> RunStatus | None:
        """The scheduler's status of a run it holds, None otherwise; never touches storage
        (the API answers it on the event loop)."""
        try:
            return self.scheduler.status(run_id)
        except UnknownRunError:
            return None

    def run_status(self, run_id: str) -> RunStatus:
        """Live status from the scheduler, or the stored one for a run of an earlier process."""
        if self.scheduler.get(run_id) is not None:
            return self.scheduler.status(run_id)
        return self._stored_run(run_id, RunStatus)

    def run_record(self, run_id: str) -> RunRecord:
        return self._stored_run(run_id, RunRecord)

    def run_results(self, run_id: str, *, with_samples: bool = False) -> RunResults:
        """The run's results (with their raw samples where ``with_samples``: the API's listing
        leaves them out, a run's --json output and results.json keep them), failures and what
        it reused."""
        # The run's row is read once, and is its status too when the scheduler does not hold
        # it (a RunRecord is a RunStatus); read after asking the scheduler, as run_status does,
        # so a run the scheduler has just let go of is read with its final status.
        live = self.live_status(run_id)
        record = self.run_record(run_id)
        status = live or record
        results = result_rows.results_for_run(self.db, run_id, ResultRow, with_samples=with_samples)
        failures = result_rows.failures_for_run(self.db, run_id, ResultRow)
        return RunResults(
            run_id=run_id,
            status=status.status,
            config=record.request,
            results=results,
            failures=failures,
            start_time=status.start_time,
            completion_time=status.completion_time,
            reused=self._reused_of_record(record, {row.config.key() for row in results + failures}),
        )

    def reused_results(self, run_id: str, shown: set[str] | None = None) -> list[ResultRow]:
        """The earlier results a run stood on instead of measuring its configs again (incremental
        mode), each with the run that measured it; ``shown``: the keys of its own results and
        failures (read from storage when not given)."""
        record = self.run_record(run_id)
        if shown is None:
            shown = result_rows.finished_config_keys(self.db, run_id)
        return self._reused_of_record(record, shown)

    def _reused_of_record(self, record: RunRecord, shown: set[str]) -> list[ResultRow]:
        """reused_results for the run's row already read."""
        # Imported here: the dashboard's queries (pandas) are the pages' and the API's, not a
        # headless run's (issue 16).
        from storage import dashboard
        from webapp.wiring.reuse import reused_configs

        rows = [dashboard.result_detail(self.db, row["result_id"], ResultRow)
                for row in reused_configs(self, record, shown)]
        return [row for row in rows if row is not None]

    def list_runs(self, status: RunStatusName | None = None, limit: int = 100, offset: int = 0) -> list[RunStatus]:
        """Stored runs, newest first, each with its live status where the scheduler has it."""
        stored = run_rows.list_runs(self.db, RunStatus, statuses=(status,) if status else None, limit=limit, offset=offset)
        return [self.run_status(run.run_id) if self.scheduler.get(run.run_id) else run for run in stored]

    def cancel_run(self, run_id: str) -> RunStatus:
        if self.scheduler.get(run_id) is None:
            return self._stored_run(run_id, RunStatus)
        return self.scheduler.cancel(run_id)

    def _stored_run(self, run_id: str, as_type):
        record = run_rows.get_run(self.db, run_id, as_type)
        if record is None:
            raise UnknownRunError(run_id)
        return record

    def close(self) -> None:
        self.scheduler.shutdown()
        for worker in self._prestarted.values():  # started for a device no config used
            worker.close()
        if self.cluster is not None:
            self.cluster.close()
        # A query DuckDB is still stopping must not outlive its connection. The SQL machinery is
        # imported by the SQL callers only (not by `benchboard run`, issue 16): not imported, no query.
        sql_execution = sys.modules.get("storage.sql_execution")
        if sql_execution is not None:
            sql_execution.SQL_POOL.wait_idle()
        self.db.close()
