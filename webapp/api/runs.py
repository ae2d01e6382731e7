"""Starting, following, cancelling and listing runs."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import Body, Parameter
from litestar.status_codes import HTTP_202_ACCEPTED

from engine.errors import InvalidRequestError
from engine.runs import TERMINAL_STATUSES
from storage import runs as run_rows
from webapp.api.dependencies import require_allowed_origin, require_token
from webapp.api.schemas import RunBody
from webapp.services import Services, status_from_record

RUN_STATUSES = ("queued", "running", *TERMINAL_STATUSES)


class RunController(Controller):
    path = "/api/benchmark"
    tags = ["runs"]
    guards = [require_allowed_origin]

    @post("/run", status_code=HTTP_202_ACCEPTED, guards=[require_token], operation_id="startRun", sync_to_thread=True)
    def start_run(self, services: Services, data: Annotated[RunBody, Body(title="Run request")]) -> dict:
        """Queue a benchmark run; follow it with /status or the WebSocket."""
        run = services.start_run(data.to_request())
        status = services.scheduler.status(run.run_id)
        return {
            "run_id": run.run_id,
            "status": status["status"],
            "message": f"benchmark run queued: {run.total_configs} configs at priority {run.priority}",
            "started_at": run.created_at.isoformat(),
            "total_configs": run.total_configs,
        }

    @get("/status/{run_id:str}", operation_id="getRunStatus", sync_to_thread=True)
    def status(self, services: Services, run_id: Annotated[str, Parameter(description="Run id")]) -> dict:
        return services.run_status(run_id)

    @get("/results/{run_id:str}", operation_id="getRunResults", sync_to_thread=True)
    def results(self, services: Services, run_id: str) -> dict:
        return services.run_results(run_id)

    @post("/cancel/{run_id:str}", status_code=200, guards=[require_token], operation_id="cancelRun", sync_to_thread=True)
    def cancel(self, services: Services, run_id: str) -> dict:
        return services.cancel_run(run_id)

    @get("/runs", operation_id="listRuns", sync_to_thread=True)
    def runs(
        self,
        services: Services,
        status: Annotated[str | None, Parameter(query="status", description=f"one of {', '.join(RUN_STATUSES)}")] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        offset: Annotated[int, Parameter(ge=0)] = 0,
    ) -> list[dict]:
        if status is not None and status not in RUN_STATUSES:
            raise InvalidRequestError("status", f"must be one of {', '.join(RUN_STATUSES)}")
        records = run_rows.list_runs(
            services.db, statuses=(status,) if status else None, limit=limit, offset=offset
        )
        return [
            services.run_status(r["run_id"]) if services.scheduler.get(r["run_id"]) else status_from_record(r)
            for r in records
        ]
