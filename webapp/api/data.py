"""Reading results: filtered queries, exports and guarded custom SQL."""

from __future__ import annotations

from typing import Annotated, Literal

import anyio
from litestar import Controller, get, post
from litestar.params import Parameter
from litestar.response import Stream

from engine.config import Precision
from engine.result import ResultRow
from storage import results as result_rows
from storage.dashboard import Filters
from storage.schema import ALLOWED_QUERY_TABLES
from storage.sql_guard import QueryResult, run_guarded_query_async
from webapp.errors import ERROR_RESPONSES
from webapp.api.dependencies import require_allowed_origin
from webapp.api.parameters import OptionalRunId
from webapp.api.schemas import SqlBody
from webapp.reporting.exports import export_response
from webapp.wiring.services import Services


class DataController(Controller):
    path = "/api/benchmark"
    tags = ["data"]
    guards = [require_allowed_origin]

    @get("/query", operation_id="queryResults", responses=ERROR_RESPONSES, sync_to_thread=True)
    def query(
        self,
        services: Services,
        model: str | None = None,
        family: str | None = None,
        hardware: str | None = None,
        batch_size: Annotated[int | None, Parameter(ge=1, le=2**31 - 1)] = None,
        precision: Precision | None = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    ) -> list[ResultRow]:
        """Newest results first; ``model`` is a model name, ``family`` a model family, ``hardware`` a
        device's name or type, as on /export and the dashboard."""
        filters = Filters(family=family, model=model, hardware=hardware, batch_size=batch_size, precision=precision)
        return result_rows.query_results(services.db, ResultRow, filters, limit=limit)

    @get("/export", operation_id="exportResults", responses=ERROR_RESPONSES, media_type="application/octet-stream")
    async def export(
        self,
        services: Services,
        format: Literal["csv", "parquet", "json"] = "csv",  # noqa: A002  (the seed-style query name)
        model: str | None = None,
        family: str | None = None,
        hardware: str | None = None,
        batch_size: Annotated[int | None, Parameter(ge=1, le=2**31 - 1)] = None,
        precision: Precision | None = None,
        run_id: OptionalRunId = None,
    ) -> Stream:
        """Filtered results as a file; ``model`` is a model name, ``family`` a model family. An unknown
        ``run_id`` is a 404, as on every other route that names a run, not an empty file."""
        if run_id is not None:
            await anyio.to_thread.run_sync(services.run_status, run_id)
        filters = Filters(family=family, model=model, hardware=hardware, batch_size=batch_size, precision=precision,
                          run_id=run_id)
        return export_response(services, filters, format)

    @post("/sql", status_code=200, operation_id="runSql", responses=ERROR_RESPONSES)
    async def sql(self, services: Services, data: SqlBody) -> QueryResult:
        """Guarded custom SQL: one read-only query over the result tables and views.

        Runs in the SQL pool's own slots and threads (at most two at once; 429 after a short
        wait), never on the threads the other handlers share."""
        return await run_guarded_query_async(
            services.db,
            data.sql,
            allowed_tables=ALLOWED_QUERY_TABLES,
            params=data.params,
            timeout_s=services.settings.sql_timeout_s,
            row_cap=services.settings.sql_row_cap,
        )

