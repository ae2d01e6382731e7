"""Reading results: filtered queries, exports and guarded custom SQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from litestar import Controller, get, post
from litestar.params import Parameter
from litestar.response import Stream

from engine.config import PRECISIONS
from storage import results as result_rows
from storage.schema import ALLOWED_QUERY_TABLES
from storage.sql_guard import run_guarded_query
from webapp.api.dependencies import require_allowed_origin
from webapp.api.schemas import SqlBody
from webapp.exports import MEDIA_TYPES, download_headers, file_chunks
from webapp.services import Services

PrecisionName = Literal[PRECISIONS]


class DataController(Controller):
    path = "/api/benchmark"
    tags = ["data"]
    guards = [require_allowed_origin]

    @get("/query", operation_id="queryResults", sync_to_thread=True)
    def query(
        self,
        services: Services,
        model: str | None = None,
        hardware: str | None = None,
        batch_size: Annotated[int | None, Parameter(ge=1)] = None,
        precision: PrecisionName | None = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    ) -> list[dict]:
        return result_rows.query_results(
            services.db, model=model, hardware=hardware, batch_size=batch_size, precision=precision, limit=limit
        )

    @get("/export", operation_id="exportResults")
    async def export(
        self,
        services: Services,
        format: Literal["csv", "parquet", "json"] = "csv",  # noqa: A002  (the seed-style query name)
        model: str | None = None,
        hardware: str | None = None,
        batch_size: Annotated[int | None, Parameter(ge=1)] = None,
        precision: PrecisionName | None = None,
        run_id: str | None = None,
    ) -> Stream:
        """Filtered results as a file; ``model`` matches a name or a family, as in /query."""

        def chunks() -> Iterator[bytes]:
            # A sync iterator: Litestar pulls it in a worker thread, so DuckDB stays off the event loop.
            batches = result_rows.export_batches(
                services.db, model=model, hardware=hardware, batch_size=batch_size, precision=precision,
                run_id=run_id,
            )
            yield from file_chunks(batches, format)

        return Stream(chunks(), media_type=MEDIA_TYPES[format], headers=download_headers(format))

    @post("/sql", status_code=200, operation_id="runSql", sync_to_thread=True)
    def sql(self, services: Services, data: SqlBody) -> dict:
        """Guarded custom SQL: one read-only query over the result tables and views."""
        result = run_guarded_query(
            services.db,
            data.sql,
            allowed_tables=ALLOWED_QUERY_TABLES,
            params=data.params,
            timeout_s=services.settings.sql_timeout_s,
            row_cap=services.settings.sql_row_cap,
        )
        return result.to_dict()

