"""Starting, following, cancelling and listing runs."""

from __future__ import annotations

from typing import Annotated

import anyio
from litestar import Controller, get, post
from litestar.params import Body, Parameter
from litestar.status_codes import HTTP_202_ACCEPTED

from engine.runs import RunRequest, RunResults, RunStatus, RunStatusName
from webapp.errors import ERROR_RESPONSES
from webapp.api.dependencies import require_allowed_origin, require_token
from webapp.api.parameters import RunId
from webapp.api.schemas import RunAccepted
from webapp.wiring.services import Services



class RunController(Controller):
    path = "/api/benchmark"
    tags = ["runs"]
    guards = [require_allowed_origin]

    @post("/run", status_code=HTTP_202_ACCEPTED, guards=[require_token], operation_id="startRun", responses=ERROR_RESPONSES, sync_to_thread=True)
    def start_run(self, services: Services, data: Annotated[RunRequest, Body(title="Run request")]) -> RunAccepted:
        """Queue a benchmark run; follow it with /status or the WebSocket."""
        run = services.start_run(data)
        status = services.scheduler.status(run.run_id).status  # running already if a device was free
        return RunAccepted(
            run_id=run.run_id,
            status=status,
            message=f"benchmark run {status}: {run.total_configs} configs at priority {run.priority}",
            started_at=run.created_at,
            total_configs=run.total_configs,
        )

    @get("/status/{run_id:str}", operation_id="getRunStatus", responses=ERROR_RESPONSES)
    async def status(self, services: Services, run_id: RunId) -> RunStatus:
        # A live run's status is the scheduler's, in memory: answered on the event loop, with no
        # thread hop (issue 16, perf/api_load.py). A stored one is read on a worker thread, so
        # the loop never waits for DuckDB.
        live = services.live_status(run_id)
        if live is not None:
            return live
        return await anyio.to_thread.run_sync(services.run_status, run_id)

    @get("/results/{run_id:str}", operation_id="getRunResults", responses=ERROR_RESPONSES, sync_to_thread=True)
    def results(self, services: Services, run_id: RunId) -> RunResults:
        """The run's results so far; a run still going returns what it has, with its status."""
        return services.run_results(run_id)

    @post("/cancel/{run_id:str}", status_code=200, guards=[require_token], operation_id="cancelRun", responses=ERROR_RESPONSES, sync_to_thread=True)
    def cancel(self, services: Services, run_id: RunId) -> RunStatus:
        return services.cancel_run(run_id)

    @get("/runs", operation_id="listRuns", responses=ERROR_RESPONSES, sync_to_thread=True)
    def runs(
        self,
        services: Services,
        status: Annotated[RunStatusName | None, Parameter(query="status")] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        offset: Annotated[int, Parameter(ge=0, le=2**62)] = 0,
    ) -> list[RunStatus]:
        return services.list_runs(status, limit=limit, offset=offset)
