"""The server's (and the headless CLI's) resources, wired once: storage, registry, hardware, scheduler."""

from __future__ import annotations

import logging
from datetime import datetime

from engine.config import MeasurementSettings
from engine.errors import UnknownRunError
from engine.hardware import detect_hardware, environment, free_memory_bytes, resolve_hardware
from engine.models.registry import ModelRegistry
from engine.planning import plan_run
from engine.ports import EventSink
from engine.runs import RunRequest, RunState
from engine.scheduler import Scheduler
from engine.worker_client import WorkerProcess
from storage import results as result_rows
from storage import runs as run_rows
from storage.database import Database
from storage.runs import ACTIVE_STATUSES
from webapp.adapters import StorageResultStore
from webapp.events import EventFanout
from webapp.reports import ReportWriter
from webapp.settings import Settings

log = logging.getLogger(__name__)


class Services:
    def __init__(self, settings: Settings, *, listeners: list[EventSink] | None = None, allow_model_paths: bool = False):
        self.settings = settings
        self.db = Database(settings.db_path)
        self.registry = ModelRegistry(settings.models_dir, settings.custom_benchmarks_dir, allow_paths=allow_model_paths)
        self.hardware = detect_hardware()
        self._hardware_by_name = {hw.name: hw for hw in self.hardware}
        self.reports = ReportWriter(self.db, settings.results_path)
        self.events = EventFanout([self.reports, *(listeners or [])])
        self.scheduler = Scheduler(
            store=StorageResultStore(self.db, self.describe_model, self.describe_hardware),
            sink=self.events,
            worker_factory=self._worker,
            parameters_million=lambda name: self.registry.get(name).parameters_million,
            free_memory_bytes=free_memory_bytes,
            settings=MeasurementSettings(max_seconds=settings.max_seconds, threads=settings.threads),
            models_dir=settings.models_dir,
            custom_benchmarks_dir=settings.custom_benchmarks_dir,
        )

    def _worker(self, device: str) -> WorkerProcess:
        # Not started here: its first run() starts it, outside the scheduler's lock.
        return WorkerProcess(
            device, models_dir=self.settings.models_dir, custom_benchmarks_dir=self.settings.custom_benchmarks_dir
        )

    def describe_model(self, name: str) -> dict:
        return self.registry.get(name).describe()

    def describe_hardware(self, name: str) -> dict:
        return self._hardware_by_name[name].describe()

    # ---- runs -------------------------------------------------------------------

    def plan(self, request: RunRequest) -> RunState:
        """Validate and expand a request; raises engine.errors.InvalidRequestError naming the field."""
        return plan_run(request, registry=self.registry, resolve_hardware=resolve_hardware, environment=environment)

    def start_run(self, request: RunRequest) -> RunState:
        return self.scheduler.submit(self.plan(request))

    def resume_interrupted_runs(self) -> list[str]:
        """Queue again every run that was active when the last process stopped."""
        resumed = []
        for record in run_rows.list_runs(self.db, statuses=ACTIVE_STATUSES, limit=10_000):
            try:
                run = self.plan(RunRequest.from_dict(record["request"]))
            except Exception as error:  # its models or hardware may be gone since
                run_rows.save_run(self.db, {**record, "status": "failed", "completed_at": datetime.now(),
                                            "error": f"could not resume after restart: {error}"})
                continue
            run.run_id, run.created_at, run.started_at = record["run_id"], record["created_at"], record["started_at"]
            self.scheduler.resume(run)
            resumed.append(run.run_id)
        if resumed:
            log.info("resumed %d interrupted run(s): %s", len(resumed), ", ".join(resumed))
        return resumed

    def run_status(self, run_id: str) -> dict:
        """Live status from the scheduler, or the stored one for a run of an earlier process."""
        run = self.scheduler.get(run_id)
        if run is not None:
            return self.scheduler.status(run_id)
        return status_from_record(self._stored_run(run_id))

    def run_results(self, run_id: str) -> dict:
        status = self.run_status(run_id)
        record = self._stored_run(run_id)
        return {
            "run_id": run_id,
            "status": status["status"],
            "config": record["request"],
            "results": result_rows.results_for_run(self.db, run_id),
            "failures": result_rows.failures_for_run(self.db, run_id),
            "start_time": status["start_time"],
            "completion_time": status["completion_time"],
        }

    def cancel_run(self, run_id: str) -> dict:
        if self.scheduler.get(run_id) is None:
            return status_from_record(self._stored_run(run_id))
        return self.scheduler.cancel(run_id)

    def _stored_run(self, run_id: str) -> dict:
        record = run_rows.get_run(self.db, run_id)
        if record is None:
            raise UnknownRunError(run_id)
        return record

    def close(self) -> None:
        self.scheduler.shutdown()
        self.db.close()


def status_from_record(record: dict) -> dict:
    """The status object of a run known only from its test_runs row."""
    total, completed = record["total_configs"] or 0, record["completed_configs"] or 0
    started, ended = record["started_at"], record["completed_at"]
    return {
        "run_id": record["run_id"],
        "status": record["status"],
        "progress": 1.0 if total == 0 else round(completed / total, 6),
        "current_step": record["current_step"],
        "start_time": started.isoformat() if started else None,
        "elapsed_time": round(((ended or datetime.now()) - started).total_seconds(), 3) if started else 0.0,
        "estimated_remaining_time": 0.0 if ended else None,
        "completed_models": record["completed_models"] or 0,
        "total_models": record["total_models"] or 0,
        "error": record["error"],
        "completed_configs": completed,
        "total_configs": total,
        "priority": record["priority"],
        "created_at": record["created_at"].isoformat() if record["created_at"] else None,
        "completion_time": ended.isoformat() if ended else None,
    }
