"""The aggregate queries behind the dashboard pages: small results, computed in DuckDB.

Every column a caller can choose (metric, sort column) comes from an allowlist here; user
strings only ever travel as bound parameters, never as SQL text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import pandas as pd
import pyarrow as pa

from storage.database import Database
from storage.results import RESULT_ROW_COLUMNS


class InvalidFilter(ValueError):
    """A dashboard filter, metric, sort or paging value that cannot be used, with the reason."""

    def __init__(self, field_name: str, reason: str):
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


@dataclass(frozen=True)
class Metric:
    key: str
    column: str
    label: str
    higher_is_better: bool

    @property
    def best(self) -> str:
        """The SQL aggregate that picks a model's best value of this metric."""
        return "max" if self.higher_is_better else "min"

    @property
    def order(self) -> str:
        return "DESC" if self.higher_is_better else "ASC"


METRICS: dict[str, Metric] = {
    metric.key: metric
    for metric in (
        Metric("throughput", "throughput_items_per_second", "Throughput (items/s)", True),
        Metric("latency_p50", "p50_latency_ms", "Latency p50 (ms)", False),
        Metric("latency_p99", "p99_latency_ms", "Latency p99 (ms)", False),
        Metric("memory", "memory_peak_mb", "Peak memory (MB)", False),
    )
}
DEFAULT_METRIC = "throughput"


def get_metric(key: str | None) -> Metric:
    key = key or DEFAULT_METRIC
    if key not in METRICS:
        raise InvalidFilter("metric", f"unknown metric {key!r}; choose one of {', '.join(METRICS)}")
    return METRICS[key]


# The results table's columns (results_view names) and their headings; also the sort allowlist.
TABLE_COLUMNS: dict[str, str] = {
    "model_name": "Model",
    "model_family": "Family",
    "hardware": "Hardware",
    "device_name": "Device",
    "batch_size": "Batch",
    "precision": "Precision",
    "throughput_items_per_second": "Throughput (items/s)",
    "p50_latency_ms": "p50 (ms)",
    "p99_latency_ms": "p99 (ms)",
    "memory_peak_mb": "Peak memory (MB)",
    "created_at": "Measured at",
}
DEFAULT_SORT = "created_at"
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class Filters:
    """What the dashboard's filter bar and the API's export narrow results to; ``None`` means "any"."""

    family: str | None = None
    model: str | None = None
    hardware: str | None = None
    batch_size: int | None = None
    precision: str | None = None
    run_id: str | None = None

    def where(self, *extra: str) -> tuple[str, dict]:
        """A WHERE clause over results_view with named parameters, plus ``extra`` fixed clauses."""
        clauses, params = list(extra), {}
        for name, column in (
            ("family", "model_family"),
            ("model", "model_name"),
            ("hardware", "hardware"),
            ("batch_size", "batch_size"),
            ("precision", "precision"),
            ("run_id", "run_id"),
        ):
            value = getattr(self, name)
            if value is not None and value != "":
                clauses.append(f"{column} = ${name}")
                params[name] = value
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _frame(db: Database, sql: str, params: dict) -> pd.DataFrame:
    return db.cursor().execute(sql, params).df()


def _most_measured(db: Database, filters: Filters, column: str) -> str | None:
    # ``column`` is one of two literals below, never user input.
    where, params = filters.where()
    row = (
        db.cursor()
        .execute(
            f"SELECT {column} FROM results_view {where} GROUP BY {column} "
            f"ORDER BY count(*) DESC, {column} LIMIT 1",
            params,
        )
        .fetchone()
    )
    return row[0] if row else None


def most_measured_model(db: Database, filters: Filters) -> str | None:
    """The model with the most results under ``filters``: the default subject of the hardware chart."""
    return _most_measured(db, filters, "model_name")


def most_measured_hardware(db: Database, filters: Filters) -> str | None:
    """The hardware with the most results under ``filters``: the default for batch-size scaling."""
    return _most_measured(db, filters, "hardware")


def hardware_comparison(db: Database, filters: Filters, metric: Metric) -> pd.DataFrame:
    """One model's average ``metric`` per hardware and batch size.

    The hardware filter is ignored: comparing hardware is the point. ``filters.model`` names the
    model; without one, the most measured model is used.
    Columns: model_name, hardware, device_name, batch_size, value, n.
    """
    filters = replace(filters, hardware=None)
    model = filters.model or most_measured_model(db, filters)
    if model is None:
        return pd.DataFrame(columns=["model_name", "hardware", "device_name", "batch_size", "value", "n"])
    where, params = replace(filters, model=model).where(f"{metric.column} IS NOT NULL")
    return _frame(
        db,
        f"""SELECT model_name, hardware, any_value(device_name) AS device_name, batch_size,
                   avg({metric.column}) AS value, count(*) AS n
            FROM results_view {where}
            GROUP BY model_name, hardware, batch_size
            ORDER BY hardware, batch_size""",
        params,
    )


def top_models(db: Database, filters: Filters, metric: Metric, limit: int = 5) -> pd.DataFrame:
    """Per hardware, the ``limit`` models with the best ``metric`` (best over the filtered configs).

    Columns: hardware, rank, model_name, model_family, value, batch_size (where the best was measured).
    """
    where, params = filters.where(f"{metric.column} IS NOT NULL")
    params["limit"] = limit
    return _frame(
        db,
        f"""WITH per_model AS (
                SELECT hardware, model_name, any_value(model_family) AS model_family,
                       {metric.best}({metric.column}) AS value,
                       arg_{metric.best}(batch_size, {metric.column}) AS batch_size
                FROM results_view {where}
                GROUP BY hardware, model_name)
            SELECT hardware,
                   row_number() OVER (PARTITION BY hardware ORDER BY value {metric.order}, model_name)
                       AS rank,
                   model_name, model_family, value, batch_size
            FROM per_model
            QUALIFY rank <= $limit
            ORDER BY hardware, rank""",
        params,
    )


def batch_scaling(db: Database, filters: Filters, metric: Metric, max_models: int = 8) -> pd.DataFrame:
    """Average ``metric`` per batch size for each model on one hardware.

    The batch-size filter is ignored: batch size is the x axis. ``filters.hardware`` names the
    hardware; without one, the most measured hardware is used. Only the ``max_models`` models with
    the best values are kept, so the chart stays readable.
    Columns: model_name, hardware, batch_size, value.
    """
    filters = replace(filters, batch_size=None)
    hardware = filters.hardware or most_measured_hardware(db, filters)
    if hardware is None:
        return pd.DataFrame(columns=["model_name", "hardware", "batch_size", "value"])
    where, params = replace(filters, hardware=hardware).where(f"{metric.column} IS NOT NULL")
    params["max_models"] = max_models
    return _frame(
        db,
        f"""WITH points AS (
                SELECT model_name, hardware, batch_size, avg({metric.column}) AS value
                FROM results_view {where}
                GROUP BY model_name, hardware, batch_size),
            chosen AS (
                SELECT model_name FROM points GROUP BY model_name
                ORDER BY {metric.best}(value) {metric.order}, model_name LIMIT $max_models)
            SELECT model_name, hardware, batch_size, value FROM points
            WHERE model_name IN (SELECT model_name FROM chosen)
            ORDER BY model_name, batch_size""",
        params,
    )


def family_heatmap(db: Database, filters: Filters, metric: Metric) -> pd.DataFrame:
    """Average ``metric`` for every model family × hardware pair.

    Columns: model_family, hardware, value, n.
    """
    where, params = filters.where(f"{metric.column} IS NOT NULL")
    return _frame(
        db,
        f"""SELECT coalesce(model_family, '(none)') AS model_family, hardware,
                   avg({metric.column}) AS value, count(*) AS n
            FROM results_view {where}
            GROUP BY ALL
            ORDER BY model_family, hardware""",
        params,
    )


@dataclass(frozen=True)
class ResultsPage:
    rows: list[dict]
    total: int
    page: int
    page_size: int
    sort: str
    direction: str

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))


def _order_by(sort: str | None, direction: str | None) -> tuple[str, str, str]:
    sort = sort or DEFAULT_SORT
    direction = (direction or ("desc" if sort == DEFAULT_SORT else "asc")).lower()
    if sort not in TABLE_COLUMNS:
        raise InvalidFilter("sort", f"cannot sort by {sort!r}; choose one of {', '.join(TABLE_COLUMNS)}")
    if direction not in ("asc", "desc"):
        raise InvalidFilter("direction", f"{direction!r} is not asc or desc")
    # result_id breaks ties so that paging is stable.
    return sort, direction, f"{sort} {direction.upper()} NULLS LAST, result_id {direction.upper()}"


def check_sort(sort: str | None, direction: str | None) -> None:
    """InvalidFilter now for a sort a later query would refuse (a streamed export cannot
    report an error once its headers are sent)."""
    _order_by(sort, direction)


def results_page(
    db: Database,
    filters: Filters,
    *,
    sort: str | None = None,
    direction: str | None = None,
    page: int = 1,
    page_size: int = 25,
) -> ResultsPage:
    """One page of the filtered results, sorted server-side; a page past the end shows the last one."""
    sort, direction, order_by = _order_by(sort, direction)
    if page < 1:
        raise InvalidFilter("page", f"{page} is not a page number (they start at 1)")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidFilter("page_size", f"{page_size} is outside 1..{MAX_PAGE_SIZE}")
    where, params = filters.where()
    total = db.cursor().execute(f"SELECT count(*) FROM results_view {where}", params).fetchone()[0]
    page = min(page, max(1, math.ceil(total / page_size)))
    columns = ("result_id", "run_id", *TABLE_COLUMNS)
    cursor = db.cursor().execute(
        f"SELECT {', '.join(columns)} FROM results_view {where} "
        f"ORDER BY {order_by} LIMIT $limit OFFSET $offset",
        {**params, "limit": page_size, "offset": (page - 1) * page_size},
    )
    rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    return ResultsPage(rows, total, page, page_size, sort, direction)


def results_export(
    db: Database,
    filters: Filters,
    *,
    sort: str | None = None,
    direction: str | None = None,
    rows_per_batch: int = 50_000,
) -> pa.RecordBatchReader:
    """Every filtered result (all API columns, no raw samples), in table order, as Arrow batches.

    The caller writes CSV or Parquet in Python from these batches: exports never use ``COPY TO``.
    """
    _, _, order_by = _order_by(sort, direction)
    where, params = filters.where()
    relation = db.cursor().sql(
        f"SELECT {', '.join(RESULT_ROW_COLUMNS)} FROM results_view {where} ORDER BY {order_by}", params=params
    )
    return relation.fetch_record_batch(rows_per_batch)


@dataclass(frozen=True)
class FilterOptions:
    """The values the filter bar offers: what results exist, sorted."""

    families: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    hardware: list[str] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    precisions: list[str] = field(default_factory=list)


def filter_options(db: Database) -> FilterOptions:
    """Models and hardware come from their own small tables (which also hold those that only
    failed); batch sizes and precisions from the results, in one scan."""
    cursor = db.cursor()
    families, models = cursor.execute(
        "SELECT list(DISTINCT model_family), list(DISTINCT model_name) FROM models"
    ).fetchone()
    hardware = cursor.execute("SELECT list(DISTINCT platform) FROM hardware_platforms").fetchone()[0]
    batch_sizes, precisions = cursor.execute(
        "SELECT list(DISTINCT batch_size), list(DISTINCT precision) FROM performance_results"
    ).fetchone()
    # list() of no rows is NULL.
    return FilterOptions(
        *(
            sorted(value for value in values or [] if value is not None)
            for values in (families, models, hardware, batch_sizes, precisions)
        )
    )


@dataclass(frozen=True)
class Summary:
    results: int
    models: int
    hardware: int
    runs: int
    failures: int


def summary(db: Database) -> Summary:
    """Counts for the overview's header line: models and hardware are those known (measured or failed)."""
    row = (
        db.cursor()
        .execute(
            """SELECT (SELECT count(*) FROM performance_results),
                  (SELECT count(*) FROM models),
                  (SELECT count(*) FROM hardware_platforms),
                  (SELECT count(*) FROM test_runs),
                  (SELECT count(*) FROM hardware_compatibility WHERE NOT is_compatible)"""
        )
        .fetchone()
    )
    return Summary(*row)
