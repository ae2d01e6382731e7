"""Reading results: filtered queries, exports and guarded custom SQL."""

from __future__ import annotations

import io
import json
from typing import Annotated, Literal

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from litestar import Controller, Response, get, post
from litestar.params import Parameter

from engine.config import PRECISIONS
from storage import results as result_rows
from storage.schema import ALLOWED_QUERY_TABLES
from storage.sql_guard import run_guarded_query
from webapp.api.dependencies import require_allowed_origin
from webapp.api.schemas import SqlBody
from webapp.services import Services

PrecisionName = Literal[PRECISIONS]
EXPORT_MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet", "json": "application/json"}


def export_bytes(table, export_format: str) -> bytes:
    """Results rendered in Python from Arrow; DuckDB's COPY TO stays disabled."""
    buffer = io.BytesIO()
    if export_format == "csv":
        pa_csv.write_csv(table, buffer)
    elif export_format == "parquet":
        pq.write_table(table, buffer)
    else:
        buffer.write(json.dumps(table.to_pylist(), default=str).encode())
    return buffer.getvalue()


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

    @get("/export", operation_id="exportResults", sync_to_thread=True)
    def export(
        self,
        services: Services,
        format: Literal["csv", "parquet", "json"] = "csv",  # noqa: A002  (the seed-style query name)
        model: str | None = None,
        hardware: str | None = None,
        batch_size: Annotated[int | None, Parameter(ge=1)] = None,
        precision: PrecisionName | None = None,
        run_id: str | None = None,
    ) -> Response[bytes]:
        table = result_rows.export_table(
            services.db, model=model, hardware=hardware, batch_size=batch_size, precision=precision, run_id=run_id
        )
        return Response(
            export_bytes(table, format),
            media_type=EXPORT_MEDIA_TYPES[format],
            headers={"Content-Disposition": f'attachment; filename="benchboard-results.{format}"'},
        )

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

