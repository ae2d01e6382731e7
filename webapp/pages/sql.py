"""The SQL page (/sql): one guarded, read-only query; its table, an automatic chart, CSV and
JSON downloads, and a sidebar of the tables and columns a query may read."""

from __future__ import annotations

import csv
import io
import math

import anyio
import msgspec
from litestar import Controller, Response, get, post
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template
from litestar.status_codes import HTTP_400_BAD_REQUEST

from storage.schema import ALLOWED_QUERY_TABLES
from storage.sql_guard import (
    NON_FINITE,
    QueryFailed,
    QueryRefused,
    QueryResult,
    QuerySyntaxError,
    QueryTable,
    QueryTimeout,
    SqlBusy,
    numbers_for_charts,
    query_schema,
    run_guarded_query,
)
from webapp.reporting import charts
from webapp.pages.rendering import PAGE_EXCEPTION_HANDLERS, render, wants_fragment
from webapp.wiring.services import Services

EXAMPLES: dict[str, tuple[str, str]] = {
    "family-hardware": (
        "Average throughput by model family and hardware",
        """-- Get average throughput by model family and hardware
SELECT
    m.model_family,
    h.hardware_type,
    AVG(pr.throughput_items_per_second) as avg_throughput
FROM
    performance_results pr
JOIN
    models m ON pr.model_id = m.model_id
JOIN
    hardware_platforms h ON pr.hardware_id = h.hardware_id
GROUP BY
    m.model_family, h.hardware_type
ORDER BY
    avg_throughput DESC""",
    ),
    "fastest-models": (
        "Lowest median latency per model at batch size 1",
        """SELECT model_name, hardware, min(p50_latency_ms) AS best_p50_ms
FROM results_view
WHERE batch_size = 1
GROUP BY model_name, hardware
ORDER BY best_p50_ms
LIMIT 20""",
    ),
    "failures": (
        "Failed configs and why",
        """SELECT model_name, hardware, batch_size, precision, error_type, error_message
FROM failures_view
ORDER BY created_at DESC
LIMIT 50""",
    ),
    "runs": (
        "Runs by status",
        """SELECT status, count(*) AS runs
FROM test_runs
GROUP BY status
ORDER BY runs DESC""",
    ),
}
DEFAULT_EXAMPLE = "family-hardware"

# The page's table shows at most this many rows; the count above it says how many the query
# returned, and the CSV and JSON downloads hold all of them (up to the guard's row cap,
# settings.sql_row_cap, 10,000 by default, which the API and the downloads keep). Rendering
# every capped row was far too much HTML: 10,000 rows of a wide table were a 22 MB page of
# 750,000 cells that took 33 s to load in chromium and kept the tab sluggish afterwards.
# 500 rows is a few screens of scrolling, plenty to read a result by eye.
PAGE_ROWS = 500


def run_query(services: Services, sql: str) -> QueryResult:
    return run_guarded_query(
        services.db,
        sql,
        allowed_tables=ALLOWED_QUERY_TABLES,
        timeout_s=services.settings.sql_timeout_s,
        row_cap=services.settings.sql_row_cap,
    )


def outcome(services: Services, sql: str) -> dict:
    """The template context for ``sql``: its result and chart, or why it did not run."""
    if not sql.strip():
        return {"sql": sql, "refusal": "Enter a query first."}
    try:
        result = run_query(services, sql)
    except QuerySyntaxError as error:
        return {"sql": sql, "refusal": error.reason[:1].upper() + error.reason[1:]}
    except QueryRefused as refused:
        return {"sql": sql, "refusal": f"Refused: {refused.reason}"}
    except QueryTimeout as timeout:
        return {"sql": sql, "refusal": f"Stopped: {timeout.reason}"}
    except QueryFailed as failed:
        return {"sql": sql, "refusal": f"DuckDB could not run it: {failed.reason}"}
    except SqlBusy as busy:
        return {"sql": sql, "refusal": f"Busy: {busy.reason} Run it again in {math.ceil(busy.retry_after_s)} s."}
    return {
        "sql": sql,
        "result": result,
        "shown_rows": result.rows[:PAGE_ROWS],  # what the page's table renders; the downloads take result.rows
        "non_finite": NON_FINITE,  # "NaN", "Infinity", "-Infinity": shown as they are, as numbers
        "sql_chart": charts.auto_chart(result.columns, numbers_for_charts(result.rows)),
    }


def _context(sql: str, extra: dict) -> dict:
    return {"active": "sql", "sql": sql, "examples": EXAMPLES} | extra


async def _with_schema(request: HTMXRequest, services: Services, context: dict) -> dict:
    """``context`` with the sidebar's tables, for a whole page (a fragment has no sidebar).

    Read from DuckDB's catalog on a fresh cursor, on a worker thread: never the SQL pool,
    so the page does not wait behind running queries."""
    if wants_fragment(request):
        return context
    schema: list[QueryTable] = await anyio.to_thread.run_sync(query_schema, services.db, ALLOWED_QUERY_TABLES)
    return context | {"schema": schema}


class SqlPages(Controller):
    exception_handlers = PAGE_EXCEPTION_HANDLERS
    include_in_schema = False

    @get("/sql", name="sql")
    async def page(
        self, request: HTMXRequest, services: Services, example: str | None = None, q: str | None = None
    ) -> Template:
        """The query box, filled with an example (the seed's query by default); with ``q``, that
        query, run at once, so a link to /sql?q=... shows its result (the form runs queries so)."""
        if q is not None:
            context = _context(q, await anyio.to_thread.run_sync(outcome, services, q))
            status = HTTP_400_BAD_REQUEST if "refusal" in context else 200
            context = await _with_schema(request, services, context)
            return render(request, "pages/sql.html", "partials/sql_result.html", context, status_code=status)
        _, sql = EXAMPLES.get(example or DEFAULT_EXAMPLE, EXAMPLES[DEFAULT_EXAMPLE])
        context = await _with_schema(request, services, _context(sql, {}))
        return render(request, "pages/sql.html", "partials/sql_form.html", context)

    @post("/sql", name="run-sql", status_code=200)
    async def run(self, request: HTMXRequest, services: Services) -> Template:
        sql = (await request.form()).get("sql", "")
        context = _context(sql, await anyio.to_thread.run_sync(outcome, services, sql))
        status = HTTP_400_BAD_REQUEST if "refusal" in context else 200
        context = await _with_schema(request, services, context)
        return render(request, "pages/sql.html", "partials/sql_result.html", context, status_code=status)

    @post("/sql/results.csv", name="sql-csv", status_code=200)
    async def download(self, request: HTMXRequest, services: Services) -> Response:
        """The query's rows as CSV (up to the server's row cap), through the same guard."""
        sql = (await request.form()).get("sql", "")
        context = await anyio.to_thread.run_sync(outcome, services, sql)
        if "refusal" in context:
            return Response(context["refusal"], status_code=HTTP_400_BAD_REQUEST, media_type="text/plain")
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(context["result"].columns)
        writer.writerows(context["result"].rows)
        return Response(
            buffer.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="benchboard-query.csv"'},
        )

    @post("/sql/results.json", name="sql-json", status_code=200)
    async def download_json(self, request: HTMXRequest, services: Services) -> Response:
        """The query's answer as JSON, as POST /api/benchmark/sql returns it (columns, rows,
        truncated and why), through the same guard."""
        sql = (await request.form()).get("sql", "")
        context = await anyio.to_thread.run_sync(outcome, services, sql)
        if "refusal" in context:
            return Response(context["refusal"], status_code=HTTP_400_BAD_REQUEST, media_type="text/plain")
        return Response(
            msgspec.json.encode(context["result"]),
            media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="benchboard-query.json"'},
        )
