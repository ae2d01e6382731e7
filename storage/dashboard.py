"""The aggregate queries behind the dashboard pages: small results, computed in DuckDB.

Every column a caller can choose (metric, sort column) comes from an allowlist here; user
strings only ever travel as bound parameters, never as SQL text.

Two rules hold for every aggregate:

- **like with like**: results are grouped by precision, sequence length, image size and
  scenario as well as by what the chart shows, so no average and no line ever mixes them; each
  group is a ``series``, and a chart draws one series per line (or colour).
- **say how far it can be trusted**: each group says how many results it covers (``n``),
  how many of them are noisy, and the widest 95% CI among them (``ci_low``/``ci_high``)
  where the metric has one.

A result is *noisy* when its median never converged (``ci_met`` false) or, where results
record it (issue 10's ``contended`` column), when other processes competed for the CPU.
Columns that later schema versions add (``scenario``, ``contended``) are used when
results_view has them and read as NULL/false before.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass, field, replace
from datetime import datetime
from collections.abc import Callable
from typing import TypeVar

import duckdb
import msgspec
import pandas as pd
import pyarrow as pa

from storage.database import Database
from storage.timestamps import stored
from storage.results import RAW_SAMPLE_COLUMNS, RESULT_ROW_COLUMNS

Row = TypeVar("Row")


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
    # SQL for the 95% CI of one result's value, where the engine measures one. The median's
    # CI is measured; throughput carries the same relative interval (items/s scale as 1/latency).
    ci_low: str | None = None
    ci_high: str | None = None
    # The one scenario whose results carry this metric (issue 11's generation figures); None: any.
    scenario: str | None = None

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
        Metric(
            "throughput", "throughput_items_per_second", "Throughput (items/s)", True,
            # The throughput's own interval (from the mean latency's: the throughput is batch / mean),
            # not the median's, which spikes that move the mean leave narrow.
            ci_low="throughput_ci_low_items_per_second", ci_high="throughput_ci_high_items_per_second",
        ),
        Metric("latency_p50", "p50_latency_ms", "Latency p50 (ms)", False, ci_low="ci_low_ms", ci_high="ci_high_ms"),
        Metric("latency_p99", "p99_latency_ms", "Latency p99 (ms)", False),
        Metric("memory", "memory_peak_mb", "Peak memory (MB)", False),
        # Generate results only (issue 11). TTFT and TPOT carry the CI of their medians; decode
        # tokens/s is batch * 1000 / TPOT (engine.generation), so it carries TPOT's relative CI.
        Metric("ttft", "ttft_ms", "TTFT p50 (ms)", False, ci_low="ttft_ci_low_ms", ci_high="ttft_ci_high_ms",
               scenario="generate"),
        Metric("tpot", "tpot_ms", "TPOT p50 (ms)", False, ci_low="tpot_ci_low_ms", ci_high="tpot_ci_high_ms",
               scenario="generate"),
        Metric(
            "decode_tps", "decode_tokens_per_second", "Decode (tokens/s)", True,
            ci_low="decode_tokens_per_second * tpot_ms / nullif(tpot_ci_high_ms, 0)",
            ci_high="decode_tokens_per_second * tpot_ms / nullif(tpot_ci_low_ms, 0)",
            scenario="generate",
        ),
        # A generation's latency statistics are end to end, so its CI is the median's.
        Metric("e2e", "e2e_ms", "Generation end-to-end p50 (ms)", False, ci_low="ci_low_ms", ci_high="ci_high_ms",
               scenario="generate"),
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
    "sequence_length": "Seq len",
    "image_size": "Image size",
    "throughput_items_per_second": "Throughput (items/s)",
    "p50_latency_ms": "p50 (ms)",
    "ci_low_ms": "p50 CI low (ms)",
    "ci_high_ms": "p50 CI high (ms)",
    "n_samples": "n",
    "ci_met": "Trust",
    "p99_latency_ms": "p99 (ms)",
    "memory_peak_mb": "Peak memory (MB)",
    # generate results only (issue 11); the pages show these columns where such results exist
    "ttft_ms": "TTFT p50 (ms)",
    "tpot_ms": "TPOT p50 (ms)",
    "decode_tokens_per_second": "Decode (tokens/s)",
    "created_at": "Measured at",
}
GENERATION_TABLE_COLUMNS = ("ttft_ms", "tpot_ms", "decode_tokens_per_second")
DEFAULT_SORT = "created_at"
MAX_PAGE_SIZE = 500

# Columns that later schema versions add, and what they read as before.
OPTIONAL_COLUMNS = {"scenario": "NULL::VARCHAR", "new_tokens": "NULL::INTEGER", "contended": "NULL::BOOLEAN"}
_columns: weakref.WeakKeyDictionary[Database, frozenset[str]] = weakref.WeakKeyDictionary()


def view_columns(db: Database) -> frozenset[str]:
    """results_view's column names (fixed once the database is open and migrated)."""
    if db not in _columns:
        rows = db.cursor().execute("DESCRIBE results_view").fetchall()
        _columns[db] = frozenset(row[0] for row in rows)
    return _columns[db]


def has_scenarios(db: Database) -> bool:
    return "scenario" in view_columns(db)


@dataclass(frozen=True)
class Filters:
    """What the dashboard's filter bar and the API's export narrow results to; ``None`` means "any".

    ``latest_only`` keeps the newest result of each config (the pages' default); otherwise
    every run's result counts (the API's export, the pages' "all runs").
    """

    family: str | None = None
    model: str | None = None
    hardware: str | None = None
    batch_size: int | None = None
    precision: str | None = None
    sequence_length: int | None = None
    scenario: str | None = None
    run_id: str | None = None
    latest_only: bool = False

    def where(self, *extra: str) -> tuple[str, dict]:
        """A WHERE clause over results_view with named parameters, plus ``extra`` fixed clauses."""
        clauses, params = list(extra), {}
        for name, column in (
            ("family", "model_family"),
            ("model", "model_name"),
            ("hardware", "hardware"),
            ("batch_size", "batch_size"),
            ("precision", "precision"),
            ("sequence_length", "sequence_length"),
            ("scenario", "scenario"),
            ("run_id", "run_id"),
        ):
            value = getattr(self, name)
            if value is not None and value != "":
                # A device by its name or its type: "cuda" is every CUDA device.
                clauses.append("(hardware = $hardware OR hardware_type = $hardware)" if name == "hardware"
                               else f"{column} = ${name}")
                params[name] = value
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _noisy_sql(columns: frozenset[str]) -> str:
    contended = " OR coalesce(contended, false)" if "contended" in columns else ""
    return f"(coalesce(ci_met = false, false){contended})"


class _WriteCache:
    """Reads derived from one database's data, valid while its write generation stands still."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.generation = -1
        self.values: dict[tuple, object] = {}


# A page asks a handful of filter combinations (overview: four); users' filter bars a few more.
# The bytes bound the hidden ids' Arrow tables: 8 bytes a hidden result, 6 MB for 750,000.
MAX_CACHED_READS = 64
MAX_CACHED_BYTES = 64 * 1024**2
_write_caches: weakref.WeakKeyDictionary[Database, _WriteCache] = weakref.WeakKeyDictionary()
Value = TypeVar("Value")


def _per_write(db: Database, key: tuple, compute: Callable[[], Value]) -> Value:
    """``compute()``, worked out once per write (``Database.generation``; this process is the
    database's only writer) and ``key``."""
    cache = _write_caches.get(db)
    if cache is None:
        cache = _write_caches.setdefault(db, _WriteCache())
    # Read before computing: a write committed after this makes the next call compute afresh.
    generation = db.generation
    with cache.lock:
        if cache.generation == generation and key in cache.values:
            return cache.values[key]  # type: ignore[return-value]
    value = compute()
    with cache.lock:
        if generation > cache.generation:
            cache.generation, cache.values = generation, {}
        if generation == cache.generation:
            cache.values[key] = value
            while len(cache.values) > 1 and (
                len(cache.values) > MAX_CACHED_READS
                or sum(getattr(kept, "nbytes", 0) for kept in cache.values.values()) > MAX_CACHED_BYTES
            ):
                cache.values.pop(next(iter(cache.values)))  # the oldest asked
    return value


def _frozen(params: dict) -> tuple:
    return tuple(sorted((name, tuple(value) if isinstance(value, list) else value) for name, value in params.items()))


# The name a latest-only relation reads its hidden ids under: an Arrow table that _query registers
# on the query's own cursor (registrations are per cursor). Bound as a list parameter instead, 750,000
# ids took 1.3 s a query to convert; registered, the anti-join on them takes 0.1 s (the window 0.6 s).
HIDDEN_TABLE = "latest_hidden_ids"
CONTESTED_TABLE = "latest_contested_ids"
EVERY = "every"  # _contested_ids: most results share their config key with another


@dataclass(frozen=True)
class _Contest:
    """What one snapshot of the results says about reruns. ``cutoff`` is its newest result id:
    ids rise in commit order (one writer, Database._write_lock), so a latest-only query that
    keeps ``result_id <= cutoff`` reads the results as of that snapshot, and a rerun committed
    while the page is being read cannot show beside the result it replaces."""

    cutoff: int
    ids: pa.Table | str | None


def _contested_ids(db: Database) -> _Contest:
    """The ids of the results whose config key another result has too: only those can hide or
    be hidden. None where no config was measured twice (then no window runs at all); EVERY
    where they are most results (restricting the window to them would cost more than it saves)."""
    cursor = db.cursor()
    cursor.execute("BEGIN TRANSACTION")  # one snapshot for the cutoff and the contested ids
    try:
        total, cutoff = cursor.execute(
            "SELECT count(*), coalesce(max(result_id), 0) FROM performance_results"
        ).fetchall()[0]
        contested = cursor.sql(
            "SELECT result_id FROM performance_results WHERE config_key IN ("
            "SELECT config_key FROM performance_results WHERE config_key IS NOT NULL "
            "GROUP BY config_key HAVING count(*) > 1)"
        ).to_arrow_table()
    finally:
        cursor.execute("ROLLBACK")
    if contested.num_rows == 0:
        return _Contest(cutoff, None)
    return _Contest(cutoff, EVERY if 2 * contested.num_rows > total else contested)


def _hidden_ids(db: Database, where: str, params: dict) -> tuple[int, pa.Table | None]:
    """The snapshot's cutoff (_Contest) and the ids of the results under ``where`` that a newer
    result of the same config, also under ``where``, hides; a result without a config key is
    its own and hides none.

    Computed among the *filtered* rows (a run's own latest, the latest that has the metric),
    so no stored flag could answer it. Every latest-only query used to run this window itself
    over every result (overview sends four; 2.3 s at 1M rows, perf/pages.py): now it runs once
    per filter combination after each write, over the contested results only, and a query adds
    an anti-join on the ids it returns, none where no config was measured twice.
    """
    contest = _per_write(db, ("contested",), lambda: _contested_ids(db))
    hidden = _per_write(db, ("hidden", where, _frozen(params)), lambda: _window_hidden(db, where, params, contest))
    return contest.cutoff, hidden


def _window_hidden(db: Database, where: str, params: dict, contest: _Contest) -> pa.Table | None:
    if contest.ids is None:
        return None
    cursor = db.cursor()
    clauses = [where.removeprefix("WHERE ")] if where else []
    clauses += ["config_key IS NOT NULL", f"result_id <= {contest.cutoff:d}"]
    if contest.ids is not EVERY:
        cursor.register(CONTESTED_TABLE, contest.ids)
        clauses.append(f"result_id IN (SELECT result_id FROM {CONTESTED_TABLE})")
    # A relation's Arrow answer, not execute()'s: that copies the rows once more.
    hidden = cursor.sql(
        f"SELECT result_id FROM results_view WHERE {' AND '.join(clauses)} "
        "QUALIFY row_number() OVER (PARTITION BY config_key ORDER BY created_at DESC, result_id DESC) > 1",
        params=params,
    ).to_arrow_table()
    return hidden if hidden.num_rows else None


def _relation(db: Database, filters: Filters, *extra: str) -> tuple[str, dict]:
    """The filtered results (latest per config when asked), raw samples left out, with the
    optional columns filled in and a ``noisy`` flag: a subquery to select FROM."""
    columns = view_columns(db)
    if filters.scenario and "scenario" not in columns:
        raise InvalidFilter("scenario", "no result records a scenario yet")
    # Filter on the view's own columns first, then fill in the ones it lacks.
    where, params = filters.where(*extra)
    missing = "".join(f", {value} AS {name}" for name, value in OPTIONAL_COLUMNS.items() if name not in columns)
    if filters.latest_only:
        # The latest of each config among the filtered results, as of one snapshot: the
        # filtered results up to its cutoff less those a newer one of the same config hides.
        # Which those are is computed once per write and filter combination (_hidden_ids), not
        # by a window in every query.
        cutoff, hidden = _hidden_ids(db, where, params)
        where = f"{where} AND" if where else "WHERE"
        where = f"{where} result_id <= {cutoff:d}"
        if hidden is not None:
            where = f"{where} AND result_id NOT IN (SELECT result_id FROM {HIDDEN_TABLE})"
            params[HIDDEN_TABLE] = hidden
    raw = [name for name in RAW_SAMPLE_COLUMNS if name in columns]
    excluded = f" EXCLUDE ({', '.join(raw)})" if raw else ""
    return (
        f"(SELECT *{excluded}{missing}, {_noisy_sql(columns)} AS noisy FROM results_view {where})",
        params,
    )


def _cursor(db: Database, params: dict) -> tuple[duckdb.DuckDBPyConnection, dict]:
    """A fresh cursor for a query over a _relation, with the hidden ids it names registered on
    it, and the parameters to bind (the table is no parameter)."""
    cursor, params = db.cursor(), dict(params)
    hidden = params.pop(HIDDEN_TABLE, None)
    if hidden is not None:
        cursor.register(HIDDEN_TABLE, hidden)
    return cursor, params


def _query(db: Database, sql: str, params: dict) -> duckdb.DuckDBPyConnection:
    cursor, params = _cursor(db, params)
    return cursor.execute(sql, params)


def _frame(db: Database, sql: str, params: dict) -> pd.DataFrame:
    return _query(db, sql, params).df()


# One series: what must never be averaged together or joined by a line. The label names the
# scenario only for generate (forward is every result's before issue 11, and the default),
# with its new tokens; the grouping keeps both scenarios apart either way.
_GENERATE_LABEL = (
    "CASE WHEN scenario = 'generate' THEN 'generate ' || coalesce(CAST(new_tokens AS VARCHAR), '?') || ' tokens' "
    "WHEN scenario <> 'forward' THEN scenario END"
)
# A vision model's input is its image (a result of one has an image_size; its sequence length is
# the request's, unused), named as the compare page names it: img32.
_INPUT_LABEL = "CASE WHEN image_size IS NOT NULL THEN 'img' || image_size ELSE 'seq ' || sequence_length END"
_SERIES = f"concat_ws(' · ', precision, {_INPUT_LABEL}, {_GENERATE_LABEL})"
_SERIES_COLUMNS = "precision, sequence_length, image_size, scenario, new_tokens"
_SERIES_ORDER = "precision, sequence_length NULLS FIRST, image_size NULLS FIRST, scenario NULLS FIRST"


def _trust(metric: Metric) -> str:
    """Aggregates that say how far a group's value can be trusted."""
    low = f"min({metric.ci_low})" if metric.ci_low else "NULL::DOUBLE"
    high = f"max({metric.ci_high})" if metric.ci_high else "NULL::DOUBLE"
    return (
        f"{low} AS ci_low, {high} AS ci_high, count(*) AS n, count(*) FILTER (WHERE noisy) AS noisy, "
        "CASE WHEN count(*) = 1 THEN any_value(result_id) END AS result_id"
    )


def _most_measured(db: Database, filters: Filters, column: str, *extra: str) -> str | None:
    # ``column`` is one of two literals below, never user input; ``extra`` fixed clauses.
    relation, params = _relation(db, filters, *extra)
    row = _query(
        db, f"SELECT {column} FROM {relation} r GROUP BY {column} ORDER BY count(*) DESC, {column} LIMIT 1", params
    ).fetchone()
    return row[0] if row else None


def _measuring(metric: Metric | None) -> tuple[str, ...]:
    return () if metric is None else (f"{metric.column} IS NOT NULL",)


def most_measured_model(db: Database, filters: Filters, metric: Metric | None = None) -> str | None:
    """The model with the most results under ``filters`` (that have ``metric``, where one is
    named): the default subject of the hardware chart. A model without the chart's metric (a
    forward-only model for TTFT) would leave it empty while the other charts show results."""
    return _most_measured(db, filters, "model_name", *_measuring(metric))


def most_measured_hardware(db: Database, filters: Filters, metric: Metric | None = None) -> str | None:
    """The hardware with the most results under ``filters`` (that have ``metric``, where one
    is named): the default for batch-size scaling."""
    return _most_measured(db, filters, "hardware", *_measuring(metric))


HARDWARE_COLUMNS = [
    "model_name", "hardware", "device_name", "batch_size", "precision", "sequence_length", "image_size", "scenario",
    "new_tokens", "series",
    "value", "ci_low", "ci_high", "n", "noisy", "result_id",
]


def hardware_comparison(db: Database, filters: Filters, metric: Metric) -> pd.DataFrame:
    """One model's average ``metric`` per hardware, batch size and series (precision,
    sequence length, image size, scenario).

    The hardware filter is ignored: comparing hardware is the point. ``filters.model`` names the
    model; without one, the most measured model among those with ``metric``.
    """
    filters = replace(filters, hardware=None)
    model = filters.model or most_measured_model(db, filters, metric)
    if model is None:
        return pd.DataFrame(columns=HARDWARE_COLUMNS)
    relation, params = _relation(db, replace(filters, model=model), f"{metric.column} IS NOT NULL")
    return _frame(
        db,
        f"""SELECT model_name, hardware, any_value(device_name) AS device_name, batch_size, {_SERIES_COLUMNS},
                   {_SERIES} AS series, avg({metric.column}) AS value, {_trust(metric)}
            FROM {relation} r
            GROUP BY model_name, hardware, batch_size, {_SERIES_COLUMNS}
            ORDER BY hardware, {_SERIES_ORDER}, batch_size""",
        params,
    )


TOP_COLUMNS = [
    "hardware", "rank", "model_name", "model_family", "precision", "sequence_length", "image_size", "scenario",
    "new_tokens", "series",
    "value", "batch_size", "ci_low", "ci_high", "ci_met", "contended", "noisy", "result_id", "n",
]


def top_models(db: Database, filters: Filters, metric: Metric, limit: int = 5) -> pd.DataFrame:
    """Per hardware, the ``limit`` best (model, series) pairs by their best ``metric``.

    Each row is one result, the best of its model and series: ``batch_size``, its CI, whether
    it is noisy and its ``result_id``; ``n`` is how many results it was picked from.
    """
    relation, params = _relation(db, filters, f"{metric.column} IS NOT NULL")
    params["limit"] = limit
    low = metric.ci_low or "NULL::DOUBLE"
    high = metric.ci_high or "NULL::DOUBLE"
    # The best result of each (model, series): its metric first, then the newest (highest id).
    # An arg_max/arg_min per group, not a row_number() window: the window sorted every result,
    # the aggregate keeps one row a group (0.1-0.15 of the time at 200,000 results, session 4).
    if metric.order == "DESC":
        pick, best_first = "arg_max", f"({metric.column}, result_id)"
    else:
        pick, best_first = "arg_min", f"({metric.column}, -result_id)"
    return _frame(
        db,
        f"""WITH picked AS (
                SELECT hardware, model_name, {_SERIES_COLUMNS}, count(*) AS n,
                       {pick}({{'model_family': model_family, 'value': {metric.column}, 'batch_size': batch_size,
                                'ci_low': {low}, 'ci_high': {high}, 'ci_met': ci_met, 'contended': contended,
                                'noisy': noisy, 'result_id': result_id}}, {best_first}) AS pick
                FROM {relation} r
                GROUP BY hardware, model_name, {_SERIES_COLUMNS}),
            best AS (SELECT hardware, model_name, {_SERIES_COLUMNS}, {_SERIES} AS series, n, pick.* FROM picked)
            SELECT hardware,
                   row_number() OVER (PARTITION BY hardware ORDER BY value {metric.order}, model_name, series)
                       AS rank,
                   model_name, model_family, {_SERIES_COLUMNS}, series, value, batch_size, ci_low, ci_high,
                   ci_met, contended, noisy, result_id, n
            FROM best
            QUALIFY rank <= $limit
            ORDER BY hardware, rank""",
        params,
    )


SCALING_COLUMNS = [
    "model_name", "hardware", "batch_size", "precision", "sequence_length", "image_size", "scenario", "new_tokens",
    "series",
    "value", "ci_low", "ci_high", "n", "noisy", "result_id",
]


def batch_scaling(db: Database, filters: Filters, metric: Metric, max_models: int = 8) -> pd.DataFrame:
    """Average ``metric`` per batch size for each model and series on one hardware.

    ``series`` is "model · precision · seq N" ("imgN" for a vision model, plus the scenario
    where results have one): a line never joins points of another precision, sequence length,
    image size or scenario.
    The batch-size filter is ignored: batch size is the x axis. ``filters.hardware`` names the
    hardware; without one, the most measured hardware among results with ``metric``. Only the
    ``max_models`` series with the best values are kept, so the chart stays readable.
    """
    filters = replace(filters, batch_size=None)
    hardware = filters.hardware or most_measured_hardware(db, filters, metric)
    if hardware is None:
        return pd.DataFrame(columns=SCALING_COLUMNS)
    relation, params = _relation(db, replace(filters, hardware=hardware), f"{metric.column} IS NOT NULL")
    params["max_models"] = max_models
    return _frame(
        db,
        f"""WITH points AS (
                SELECT model_name, hardware, batch_size, {_SERIES_COLUMNS},
                       concat_ws(' · ', model_name, {_SERIES}) AS series,
                       avg({metric.column}) AS value, {_trust(metric)}
                FROM {relation} r
                GROUP BY model_name, hardware, batch_size, {_SERIES_COLUMNS}),
            chosen AS (
                SELECT series FROM points GROUP BY series
                ORDER BY {metric.best}(value) {metric.order}, series LIMIT $max_models)
            SELECT model_name, hardware, batch_size, {_SERIES_COLUMNS}, series, value, ci_low, ci_high, n,
                   noisy, result_id
            FROM points
            WHERE series IN (SELECT series FROM chosen)
            ORDER BY series, batch_size""",
        params,
    )


GENERATION_COLUMNS = [
    "model_name", "hardware", "batch_size", "precision", "sequence_length", "image_size", "new_tokens", "series",
    "measure",
    "value", "ci_low", "ci_high", "n", "noisy", "result_id",
]
# The figures generation_scaling draws: (measure label, column, its CI's columns).
GENERATION_MEASURES = (("TTFT", "ttft_ms", "ttft_ci_low_ms", "ttft_ci_high_ms"),
                       ("TPOT", "tpot_ms", "tpot_ci_low_ms", "tpot_ci_high_ms"))


def has_generate_results(db: Database, filters: Filters) -> bool:
    """Whether any result under ``filters`` is of the generate scenario (issue 11)."""
    if "ttft_ms" not in view_columns(db):
        return False
    relation, params = _relation(db, replace(filters, latest_only=False), "scenario = 'generate'")
    return _query(db, f"SELECT EXISTS (SELECT 1 FROM {relation} r)", params).fetchone()[0]


def generation_scaling(db: Database, filters: Filters, max_models: int = 8) -> pd.DataFrame:
    """TTFT and TPOT per batch size, one series per model (and precision, prompt length and
    new tokens: a line never joins generations of another shape), on one hardware; generate
    results only. Two rows per point, ``measure`` TTFT and TPOT, each with the widest 95% CI
    of its median among the results averaged, and how many results it covers (``n``).

    As batch_scaling: the batch-size filter is ignored (batch size is the x axis), the hardware
    is ``filters.hardware`` or the most measured one among generate results, and only the
    ``max_models`` series with the lowest TTFT are kept.
    """
    if "ttft_ms" not in view_columns(db) or filters.scenario not in (None, "generate"):
        return pd.DataFrame(columns=GENERATION_COLUMNS)
    filters = replace(filters, batch_size=None, scenario="generate")
    hardware = filters.hardware or _most_measured(db, replace(filters, hardware=None), "hardware")
    if hardware is None:
        return pd.DataFrame(columns=GENERATION_COLUMNS)
    relation, params = _relation(db, replace(filters, hardware=hardware), "ttft_ms IS NOT NULL")
    params["max_models"] = max_models
    measures = " UNION ALL ".join(
        f"""SELECT model_name, hardware, batch_size, precision, sequence_length, image_size, new_tokens, series,
                   '{label}' AS measure, avg({column}) AS value, min({low}) AS ci_low, max({high}) AS ci_high,
                   count(*) AS n, count(*) FILTER (WHERE noisy) AS noisy,
                   CASE WHEN count(*) = 1 THEN any_value(result_id) END AS result_id, {order} AS measure_order
            FROM labelled WHERE {column} IS NOT NULL
            GROUP BY model_name, hardware, batch_size, precision, sequence_length, image_size, new_tokens, series"""
        for order, (label, column, low, high) in enumerate(GENERATION_MEASURES)
    )
    return _frame(
        db,
        f"""WITH labelled AS (
                SELECT *, concat_ws(' · ', model_name, precision, {_INPUT_LABEL},
                                    coalesce(CAST(new_tokens AS VARCHAR), '?') || ' new tokens') AS series
                FROM {relation} r),
            chosen AS (
                SELECT series FROM labelled GROUP BY series ORDER BY min(ttft_ms), series LIMIT $max_models),
            points AS ({measures})
            SELECT {', '.join(GENERATION_COLUMNS)}
            FROM points
            WHERE series IN (SELECT series FROM chosen)
            ORDER BY series, measure_order, batch_size""",
        params,
    )


HEATMAP_COLUMNS = [
    "model_family", "hardware", "precision", "sequence_length", "image_size", "scenario", "new_tokens", "series",
    "value", "ci_low", "ci_high", "n", "noisy", "result_id",
]


def family_heatmap(db: Database, filters: Filters, metric: Metric) -> pd.DataFrame:
    """Average ``metric`` for every model family × series × hardware cell.

    ``series`` is "family · precision · seq N" ("imgN" for vision): a cell never averages
    precisions, sequence lengths, image sizes or scenarios together.
    """
    relation, params = _relation(db, filters, f"{metric.column} IS NOT NULL")
    # The series label is made per cell after grouping: grouping by it (GROUP BY ALL) built the
    # string for every result, 0.7 of the query at 1M results (perf/pages.py, session 5).
    return _frame(
        db,
        f"""SELECT model_family, hardware, {_SERIES_COLUMNS},
                   concat_ws(' · ', model_family, {_SERIES}) AS series, value, ci_low, ci_high, n, noisy, result_id
            FROM (SELECT coalesce(model_family, '(none)') AS model_family, hardware, {_SERIES_COLUMNS},
                         avg({metric.column}) AS value, {_trust(metric)}
                  FROM {relation} r
                  GROUP BY coalesce(model_family, '(none)'), hardware, {_SERIES_COLUMNS}) cells
            ORDER BY model_family, {_SERIES_ORDER}, hardware""",
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


PAGE_ROW_COLUMNS = ("result_id", "run_id", *TABLE_COLUMNS, "scenario", "new_tokens", "contended", "noisy")


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
    relation, params = _relation(db, filters)
    total = _query(db, f"SELECT count(*) FROM {relation} r", params).fetchone()[0]
    page = min(page, max(1, math.ceil(total / page_size)))
    cursor = _query(
        db,
        f"SELECT {', '.join(PAGE_ROW_COLUMNS)} FROM {relation} r "
        f"ORDER BY {order_by} LIMIT $limit OFFSET $offset",
        {**params, "limit": page_size, "offset": (page - 1) * page_size},
    )
    rows = [dict(zip(PAGE_ROW_COLUMNS, row, strict=True)) for row in cursor.fetchall()]
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
    relation, params = _relation(db, filters)
    cursor, params = _cursor(db, params)
    relation_sql = cursor.sql(f"SELECT {', '.join(RESULT_ROW_COLUMNS)} FROM {relation} r ORDER BY {order_by}", params=params)
    return relation_sql.fetch_record_batch(rows_per_batch)


@dataclass(frozen=True)
class FilterOptions:
    """The values the filter bar offers: what results exist, sorted."""

    families: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    hardware: list[str] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    precisions: list[str] = field(default_factory=list)
    sequence_lengths: list[int] = field(default_factory=list)
    scenarios: list[str] = field(default_factory=list)  # empty until results record one
    runs: list[str] = field(default_factory=list)  # run ids with results, newest first


RUN_CHOICES = 50


def filter_options(db: Database) -> FilterOptions:
    """Models and hardware come from their own small tables (which also hold those that only
    failed); batch sizes, precisions, sequence lengths and scenarios from the results, in one
    scan, once per write (every page's filter bar asks: 25-40 ms at 1M results)."""
    return _per_write(db, ("filter_options",), lambda: _filter_options(db))


def _filter_options(db: Database) -> FilterOptions:
    cursor = db.cursor()
    families, models = cursor.execute(
        "SELECT list(DISTINCT model_family), list(DISTINCT model_name) FROM models"
    ).fetchone()
    hardware = cursor.execute("SELECT list(DISTINCT platform) FROM hardware_platforms").fetchone()[0]
    scenario = "list(DISTINCT scenario)" if has_scenarios(db) else "NULL"
    batch_sizes, precisions, sequence_lengths, scenarios = cursor.execute(
        f"SELECT list(DISTINCT batch_size), list(DISTINCT precision), list(DISTINCT sequence_length), {scenario} "
        "FROM results_view"
    ).fetchone()
    runs = [
        row[0]
        for row in cursor.execute(
            "SELECT run_id FROM performance_results WHERE run_id IS NOT NULL GROUP BY run_id "
            "ORDER BY max(created_at) DESC, run_id LIMIT $limit",
            {"limit": RUN_CHOICES},
        ).fetchall()
    ]
    # list() of no rows is NULL.
    return FilterOptions(
        *(
            sorted(value for value in values or [] if value is not None)
            for values in (families, models, hardware, batch_sizes, precisions, sequence_lengths, scenarios)
        ),
        runs=runs,
    )


@dataclass(frozen=True)
class Summary:
    """The overview's header line. ``results`` to ``noisy`` count what the filters keep (the
    latest of each config where they ask): the results, their models, hardware and runs, the
    noisy ones among them, and the failed configs under the same filters. ``stored_results`` and
    ``stored_runs`` are the database's totals, whatever the filters."""

    results: int
    models: int
    hardware: int
    runs: int
    failures: int
    noisy: int
    stored_results: int
    stored_runs: int


def summary(db: Database, filters: Filters = Filters()) -> Summary:
    """Counts for the overview's header line, of the results under ``filters`` and of the whole
    database; the results' counts once per write and filters, as filter_options. The stored runs
    are counted afresh: a run's row is written without moving Database.generation (``runs_only``),
    and a run that has measured nothing yet is still one."""
    in_view = _per_write(db, ("summary", filters), lambda: _result_counts(db, filters))
    runs = db.cursor().execute("SELECT count(*) FROM test_runs").fetchone()[0]
    return Summary(*in_view, stored_runs=runs)


def _result_counts(db: Database, filters: Filters) -> tuple[int, int, int, int, int, int, int]:
    relation, params = _relation(db, filters)
    # Failed configs have no result to be the latest of: every failure under the filters counts.
    # Its parameters are the relation's own (the same names and values).
    failures_where, _ = filters.where("NOT is_compatible")
    return _query(
        db,
        f"""SELECT count(*), count(DISTINCT model_name), count(DISTINCT hardware), count(DISTINCT run_id),
                   (SELECT count(*) FROM failures_view {failures_where}), count(*) FILTER (WHERE noisy),
                   (SELECT count(*) FROM performance_results)
            FROM {relation} r""",
        params,
    ).fetchone()


# ---- one result: the result page -------------------------------------------------------

DETAIL_COLUMNS = (*RESULT_ROW_COLUMNS, "config_key", "fingerprint", "scenario", "contended", "noisy")


def result_detail(db: Database, result_id: int, as_type: type[Row]) -> Row | None:
    """One stored result without its samples, as ``as_type`` (fields it lacks are dropped)."""
    relation, params = _relation(db, Filters(), "result_id = $result_id")
    names = tuple(dict.fromkeys(DETAIL_COLUMNS))
    row = _query(db, f"SELECT {', '.join(names)} FROM {relation} r", {**params, "result_id": result_id})
    found = row.fetchone()
    return None if found is None else msgspec.convert(dict(zip(names, found, strict=True)), as_type)


def result_samples(db: Database, result_id: int) -> list[float] | None:
    """The raw samples of one result in iteration order; None for no such result."""
    row = db.cursor().execute(
        "SELECT coalesce(samples_ms, []) FROM results_view WHERE result_id = ?", [result_id]
    ).fetchone()
    return None if row is None else list(row[0])


def sample_histogram(db: Database, result_id: int, bins: int = 30, samples: str = "samples_ms") -> pd.DataFrame:
    """The samples of one result counted into ``bins`` equal-width bins between their min and max.

    ``samples`` names the list: ``samples_ms`` (every timed iteration), or for a generation
    ``ttft_samples_ms`` (each one's time to first token) or ``tpot_samples_ms`` (every gap
    between consecutive tokens). Columns: bin_start, bin_end, count (every bin, empty ones
    too; one bin if all samples are equal).
    """
    if samples not in RAW_SAMPLE_COLUMNS:
        raise InvalidFilter("samples", f"choose one of {', '.join(RAW_SAMPLE_COLUMNS)}, not {samples!r}")
    if samples not in view_columns(db):
        return pd.DataFrame(columns=["bin_start", "bin_end", "count"])
    frame = _frame(
        db,
        f"""WITH samples AS (SELECT unnest({samples}) AS value FROM performance_results WHERE result_id = $id),
                bounds AS (SELECT min(value) AS low, max(value) AS high, count(*) AS total FROM samples),
                shape AS (SELECT low, high, CASE WHEN high > low THEN $bins ELSE 1 END AS bins,
                                 CASE WHEN high > low THEN (high - low) / $bins ELSE 1.0 END AS width
                          FROM bounds WHERE total > 0),
                counted AS (
                    SELECT least(CAST(floor((value - low) / width) AS INTEGER), bins - 1) AS bin, count(*) AS count
                    FROM samples, shape GROUP BY bin)
           SELECT low + b.bin * width AS bin_start,
                  CASE WHEN bins = 1 THEN high + 0.0 ELSE low + (b.bin + 1) * width END AS bin_end,
                  coalesce(counted.count, 0) AS count
           FROM shape, (SELECT unnest(range((SELECT bins FROM shape))) AS bin) b
           LEFT JOIN counted ON counted.bin = b.bin
           ORDER BY b.bin""",
        {"id": result_id, "bins": bins},
    )
    return frame


def sample_trace(db: Database, result_id: int, max_points: int = 600) -> pd.DataFrame:
    """The samples of one result in iteration order, for drift and throttling.

    Up to ``max_points`` samples come back as they are; more are bucketed by iteration into
    ``max_points`` buckets with their min, median and max. Columns: iteration (the bucket's
    first, 1-based), iteration_end, latency_ms (the median), low, high.
    """
    return _frame(
        db,
        """WITH samples AS (
               SELECT unnest(samples_ms) AS value, unnest(range(len(samples_ms))) AS i
               FROM performance_results WHERE result_id = $id),
           sized AS (SELECT greatest(1, CAST(ceil(count(*) / $max_points) AS INTEGER)) AS width FROM samples)
           SELECT min(i) + 1 AS iteration, max(i) + 1 AS iteration_end, median(value) AS latency_ms,
                  min(value) AS low, max(value) AS high
           FROM samples, sized
           GROUP BY i // width
           ORDER BY iteration""",
        {"id": result_id, "max_points": max_points},
    )


def same_config_results(db: Database, config_key: str | None, limit: int = 50) -> pd.DataFrame:
    """Every stored result of ``config_key``, newest first: the same config in other runs."""
    if not config_key:
        return pd.DataFrame(columns=["result_id", "run_id", "created_at"])
    relation, params = _relation(db, Filters(), "config_key = $config_key")
    return _frame(
        db,
        f"""SELECT result_id, run_id, created_at, fingerprint, n_samples, p50_latency_ms, ci_low_ms, ci_high_ms,
                   ci_met, noisy, throughput_items_per_second, torch_version, threads
            FROM {relation} r ORDER BY created_at DESC, result_id DESC LIMIT $limit""",
        {**params, "config_key": config_key, "limit": limit},
    )


# ---- runs: what a run reused, and how long configs take ------------------------------------


def reused_results(
    db: Database, run_id: str, config_keys: list[str], fingerprints: list[str], *, until: datetime | None = None
) -> dict[str, dict]:
    """For configs a run skipped as already measured: the newest result of each with one of
    the run's fingerprints from another run (what incremental mode reused), by config key.

    ``until``: when the run ended, for a finished run. It reused only results stored by then;
    a later run's result of the same config must not take their place on its page."""
    if not config_keys:
        return {}
    relation, params = _relation(
        db, Filters(),
        "list_contains($keys, config_key)", "list_contains($fingerprints, fingerprint)",
        "run_id IS DISTINCT FROM $run_id", *(["created_at <= $until"] if until is not None else []),
    )
    frame = _frame(
        db,
        f"""SELECT config_key, result_id, run_id, created_at, model_name, hardware, batch_size, precision,
                   sequence_length, scenario, new_tokens, n_samples, p50_latency_ms, ci_low_ms, ci_high_ms, ci_met,
                   noisy, p99_latency_ms, throughput_items_per_second, memory_peak_mb, wall_seconds,
                   ttft_ms, tpot_ms, decode_tokens_per_second
            FROM {relation} r
            QUALIFY row_number() OVER (PARTITION BY config_key ORDER BY created_at DESC, result_id DESC) = 1""",
        {**params, "keys": list(config_keys), "fingerprints": list(fingerprints), "run_id": run_id,
         **({"until": stored(until)} if until is not None else {})},
    )
    return {row["config_key"]: row for row in frame.astype(object).where(frame.notna(), None).to_dict("records")}


def typical_wall_seconds(db: Database, config_keys: list[str]) -> dict[str, float]:
    """The median wall time of each config's stored measurements: what history says it takes."""
    if not config_keys:
        return {}
    rows = db.cursor().execute(
        """SELECT config_key, median(wall_seconds) FROM performance_results
           WHERE list_contains($keys, config_key) AND wall_seconds IS NOT NULL GROUP BY config_key""",
        {"keys": list(config_keys)},
    ).fetchall()
    return {key: float(seconds) for key, seconds in rows}
