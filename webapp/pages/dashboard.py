"""Overview (/) and Comparison (/comparison): charts and the results table, all aggregated in DuckDB."""

from __future__ import annotations

from urllib.parse import urlencode

from litestar import Controller, get
from litestar.di import Provide
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Stream, Template

from storage import dashboard
from storage.dashboard import GENERATION_TABLE_COLUMNS, METRICS, TABLE_COLUMNS, Filters, Metric
from storage.database import Database
from webapp.reporting import charts
from webapp.reporting.exports import export_response
from webapp.pages.rendering import (
    PAGE_EXCEPTION_HANDLERS,
    RUN_SCOPES,
    filter_state,
    optional_int,
    provide_filters,
    render,
)
from webapp.wiring.services import Services

METRIC_CHOICES = [(metric.key, metric.label) for metric in METRICS.values()]
PAGE_SIZES = (25, 50, 100)
NUMERIC_COLUMNS = frozenset(
    {"batch_size", "sequence_length", "image_size", "throughput_items_per_second", "p50_latency_ms", "ci_low_ms", "ci_high_ms",
     "n_samples", "p99_latency_ms", "memory_peak_mb", *GENERATION_TABLE_COLUMNS}
)
# The results table's headings where storage.dashboard.TABLE_COLUMNS' short ones overstate
# what a number is, and a tooltip for headings too short to say it all.
COLUMN_LABELS = {"memory_peak_mb": "Peak memory above model (MB)"}
COLUMN_TITLES = {
    "memory_peak_mb": (
        "The peak memory the inference needed above the loaded model (activations, workspaces), "
        "not the weights"
    ),
    "n_samples": "Timed samples (iterations) behind the median",
    "ci_low_ms": "Low bound of the 95% CI of the median",
    "ci_high_ms": "High bound of the 95% CI of the median",
}


def _records(frame) -> list[dict]:
    """Frame rows as dicts, with NaN/NA as None so templates can test ``is none``."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def metric_choices(scenarios: list[str], chosen: Metric | None = None) -> list[tuple[str, str]]:
    """The metric picker's choices: a scenario's own metrics only where results of it exist."""
    return [
        (metric.key, metric.label)
        for metric in METRICS.values()
        if metric.scenario is None or metric.scenario in scenarios or metric == chosen
    ]


def filter_context(db: Database, filters: Filters, metric: Metric | None = None) -> dict:
    """What every filter bar offers, and the query string of the filters in force."""
    state = {key: value for key, value in filter_state(filters).items() if value not in (None, "")}
    options = dashboard.filter_options(db)
    return {
        "options": options,
        "metric_choices": metric_choices(options.scenarios, metric),
        "run_scopes": list(RUN_SCOPES.items()),
        "run_scope": "latest" if filters.latest_only else "all",
        "has_scenarios": dashboard.has_scenarios(db),
        "filter_query": urlencode(state),
    }


def overview_context(db: Database, filters: Filters, metric: Metric) -> dict:
    """Everything the overview shows, from five small DuckDB aggregates."""
    summary = dashboard.summary(db, filters)
    context = {"summary": summary, "metric": metric, "filters": filters}
    if summary.stored_results == 0:
        return context | {"hardware_chart": None, "scaling_chart": None, "top_models": {}, "has_generate": False}
    by_hardware = dashboard.hardware_comparison(db, filters, metric)
    # Issue 11: TTFT and TPOT against batch size, a line per model, where generate results exist.
    has_generate = dashboard.has_generate_results(db, Filters())
    generation = dashboard.generation_scaling(db, filters) if has_generate else None
    scaling = dashboard.batch_scaling(db, filters, metric)
    top: dict[str, list[dict]] = {}
    for row in _records(dashboard.top_models(db, filters, metric)):
        top.setdefault(row["hardware"], []).append(row)
    return context | {
        "hardware_chart": charts.hardware_comparison(by_hardware, metric),
        "hardware_rows": _records(by_hardware),
        "scaling_chart": charts.batch_scaling(scaling, metric),
        "scaling_rows": _records(scaling),
        "top_models": top,
        "has_generate": has_generate,
        "generation_chart": charts.generation_scaling(generation) if has_generate else None,
        "generation_rows": _records(generation) if has_generate else [],
    }


def comparison_context(
    db: Database,
    filters: Filters,
    metric: Metric,
    *,
    sort: str | None,
    direction: str | None,
    page: int,
    page_size: int,
) -> dict:
    results = dashboard.results_page(
        db, filters, sort=sort, direction=direction, page=page, page_size=page_size
    )
    heatmap = dashboard.family_heatmap(db, filters, metric)
    state = filter_state(filters) | {"metric": metric.key}
    # A generation's columns where the filtered results hold generate ones (issue 11).
    generation = dashboard.has_generate_results(db, filters)
    columns = {key: COLUMN_LABELS.get(key, label) for key, label in TABLE_COLUMNS.items()
               if generation or key not in GENERATION_TABLE_COLUMNS}

    def link(**changes) -> str:
        """This table's URL with ``changes`` applied: for sort headers, pager and exports."""
        params = (
            state
            | {
                "sort": results.sort,
                "direction": results.direction,
                "page": results.page,
                "page_size": results.page_size,
            }
            | changes
        )
        return "?" + urlencode({key: value for key, value in params.items() if value not in (None, "")})

    return {
        "metric": metric,
        "filters": filters,
        "results": results,
        "columns": columns,
        "column_titles": COLUMN_TITLES,
        "numeric_columns": NUMERIC_COLUMNS,
        "heatmap_chart": charts.family_heatmap(heatmap, metric),
        "heatmap_rows": _records(heatmap),
        "link": link,
        "page_sizes": PAGE_SIZES,
        # Without filters the total is every result; with them, an empty table means "no match".
        "has_results": results.total > 0 or filters != Filters(latest_only=filters.latest_only),
    }


def _page_size(value: str | None) -> int:
    size = optional_int("page_size", value) or PAGE_SIZES[0]
    if size not in PAGE_SIZES:
        raise dashboard.InvalidFilter("page_size", f"must be one of {', '.join(map(str, PAGE_SIZES))}")
    return size


class DashboardPages(Controller):
    exception_handlers = PAGE_EXCEPTION_HANDLERS
    include_in_schema = False
    dependencies = {"filters": Provide(provide_filters, sync_to_thread=False)}

    @get("/", name="overview", sync_to_thread=True)
    def overview(
        self,
        request: HTMXRequest,
        services: Services,
        filters: Filters,
        metric: str | None = None,
    ) -> Template:
        chosen = dashboard.get_metric(metric)
        context = overview_context(services.db, filters, chosen) | filter_context(services.db, filters, chosen) | {
            "active": "overview",
        }
        return render(request, "pages/overview.html", "partials/overview_body.html", context)

    @get("/comparison", name="comparison", sync_to_thread=True)
    def comparison(
        self,
        request: HTMXRequest,
        services: Services,
        filters: Filters,
        metric: str | None = None,
        sort: str | None = None,
        direction: str | None = None,
        page: str | None = None,
        page_size: str | None = None,
    ) -> Template:
        chosen = dashboard.get_metric(metric)
        context = comparison_context(
            services.db,
            filters,
            chosen,
            sort=sort,
            direction=direction,
            page=optional_int("page", page) or 1,
            page_size=_page_size(page_size),
        ) | filter_context(services.db, filters, chosen) | {"active": "comparison"}
        # Sorting and paging swap only the table; the filter form swaps the heatmap too.
        fragment = (
            "partials/results_table.html"
            if request.htmx.target == "results-table-section"
            else "partials/comparison_body.html"
        )
        return render(request, "pages/comparison.html", fragment, context)

    @get(["/comparison/results.csv", "/comparison/results.parquet"], name="comparison-export")
    async def export(
        self,
        request: HTMXRequest,
        services: Services,
        filters: Filters,
        sort: str | None = None,
        direction: str | None = None,
    ) -> Stream:
        """The filtered rows (every page, every API column) as a download, written in Python from Arrow."""
        return export_response(services, filters, request.url.path.rsplit(".", 1)[1], sort, direction)
