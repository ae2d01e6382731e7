"""Writes and typed reads of measurements (performance_results) and failures (hardware_compatibility).

Rows are written from the caller's Struct fields, which are the column names, and read
back with ``msgspec.convert`` into the type the caller names.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

import msgspec
import pyarrow as pa

from storage.catalog import catalog_ids
from storage.database import Database
from storage.runs import write_run
from storage.timestamps import read_back, stored, utc_now

if TYPE_CHECKING:
    from storage.dashboard import Filters

Row = TypeVar("Row")

# Column name -> Arrow type of every measured value a result row carries.
RESULT_VALUE_COLUMNS: dict[str, pa.DataType] = {
    "run_id": pa.string(),
    "config_key": pa.string(),
    "fingerprint": pa.string(),
    "batch_size": pa.int32(),
    "precision": pa.string(),
    "sequence_length": pa.int32(),
    "image_size": pa.int32(),
    "weights": pa.string(),
    "n_samples": pa.int32(),
    "average_latency_ms": pa.float64(),
    "std_latency_ms": pa.float64(),
    "min_latency_ms": pa.float64(),
    "p50_latency_ms": pa.float64(),
    "p90_latency_ms": pa.float64(),
    "p95_latency_ms": pa.float64(),
    "p99_latency_ms": pa.float64(),
    "max_latency_ms": pa.float64(),
    "ci_low_ms": pa.float64(),
    "ci_high_ms": pa.float64(),
    "ci_met": pa.bool_(),
    "total_timed_seconds": pa.float64(),
    "throughput_items_per_second": pa.float64(),
    "throughput_ci_low_items_per_second": pa.float64(),
    "throughput_ci_high_items_per_second": pa.float64(),
    "throughput_tokens_per_second": pa.float64(),
    "memory_peak_mb": pa.float64(),
    "load_time_ms": pa.float64(),
    "cold_latency_ms": pa.float64(),
    "threads": pa.int32(),
    "torch_version": pa.string(),
    "samples_ms": pa.list_(pa.float64()),
    "stop_reason": pa.string(),
    "wall_seconds": pa.float64(),
    "repeats": pa.int32(),
    "between_process_cv": pa.float64(),
    "timing": pa.string(),
    "attn_implementation": pa.string(),
    "p90_ci_low_ms": pa.float64(),
    "p90_ci_high_ms": pa.float64(),
    "p99_ci_low_ms": pa.float64(),
    "p99_ci_high_ms": pa.float64(),
    "load_memory_peak_mb": pa.float64(),
    "memory_reserved_peak_mb": pa.float64(),
    "process_device_memory_mb": pa.float64(),
    "calls_per_sample": pa.int32(),
    "sm_clock_mhz_before": pa.float64(),
    "sm_clock_mhz_after": pa.float64(),
    "temperature_c_before": pa.float64(),
    "temperature_c_after": pa.float64(),
    "power_w_before": pa.float64(),
    "power_w_after": pa.float64(),
    "throttled": pa.bool_(),
    "other_cpu_seconds": pa.float64(),
    "contended": pa.bool_(),
    "node": pa.string(),  # the Ray node that measured it (issue 13); None on the server's own devices
    "host": pa.string(),
    # issue 11: the scenario and a generation's figures
    "scenario": pa.string(),
    "new_tokens": pa.int32(),
    **{name: pa.float64() for name in (
        "ttft_ms", "ttft_p90_ms", "ttft_p99_ms", "ttft_ci_low_ms", "ttft_ci_high_ms", "tpot_ms", "tpot_p90_ms",
        "tpot_p99_ms", "tpot_ci_low_ms", "tpot_ci_high_ms", "e2e_ms", "decode_tokens_per_second",
        "prefill_tokens_per_second",
    )},
    "ttft_samples_ms": pa.list_(pa.float64()),
    "tpot_samples_ms": pa.list_(pa.float64()),
    "created_at": pa.timestamp("us"),  # UTC; not DuckDB's current_timestamp, whose zone is the session's
}
_INSERT_COLUMNS = ("model_id", "hardware_id", *RESULT_VALUE_COLUMNS)
_INSERT_SCHEMA = pa.schema([("model_id", pa.int32()), ("hardware_id", pa.int32()), *RESULT_VALUE_COLUMNS.items()])

# What API rows show: results_view without the raw samples, which can be long.
RESULT_ROW_COLUMNS = (
    "result_id", "run_id", "model_name", "model_family", "model_type", "hardware_type", "hardware",
    "device_name", "batch_size", "precision", "sequence_length", "image_size", "weights", "n_samples",
    "average_latency_ms", "std_latency_ms", "min_latency_ms", "p50_latency_ms", "p90_latency_ms",
    "p95_latency_ms", "p99_latency_ms", "max_latency_ms", "ci_low_ms", "ci_high_ms", "ci_met",
    "total_timed_seconds", "throughput_items_per_second", "throughput_tokens_per_second", "memory_peak_mb",
    "load_time_ms", "cold_latency_ms", "threads", "torch_version", "stop_reason", "wall_seconds",
    "parameters_million", "created_at",
    # issue 10
    "timing", "attn_implementation", "p90_ci_low_ms", "p90_ci_high_ms", "p99_ci_low_ms", "p99_ci_high_ms",
    "calls_per_sample", "load_memory_peak_mb", "memory_reserved_peak_mb", "process_device_memory_mb",
    "sm_clock_mhz_before", "sm_clock_mhz_after", "temperature_c_before", "temperature_c_after",
    "power_w_before", "power_w_after", "throttled", "other_cpu_seconds", "contended",
    # issue 13
    "node", "host",
    # issue 11 (the raw TTFT samples and per-token gaps stay out, as samples_ms does)
    "scenario", "new_tokens", "ttft_ms", "ttft_p90_ms", "ttft_p99_ms", "ttft_ci_low_ms", "ttft_ci_high_ms",
    "tpot_ms", "tpot_p90_ms", "tpot_p99_ms", "tpot_ci_low_ms", "tpot_ci_high_ms", "e2e_ms",
    "decode_tokens_per_second", "prefill_tokens_per_second",
    # the throughput's own CI (schema v6); repeats and their spread (issue 12)
    "throughput_ci_low_items_per_second", "throughput_ci_high_items_per_second", "repeats", "between_process_cv",
)


# Batches up to this size go in as one parameterised INSERT ... VALUES, larger ones as an Arrow
# table: for one row (how the server stores each config) the Arrow scan's set-up costs more
# than the parameters it saves (issue 16, perf/ingest.py).
VALUES_MAX_ROWS = 1
_TIMESTAMP_COLUMNS = frozenset(name for name, kind in RESULT_VALUE_COLUMNS.items() if pa.types.is_timestamp(kind))


def insert_results(db: Database, rows: list[dict], *, run: msgspec.Struct | None = None) -> int:
    """Bulk-insert result rows in one transaction; with ``run`` (a run row, as for
    ``storage.runs.save_run``) that row is upserted in the same transaction, one commit.

    Each row is a measurement's fields (``msgspec.structs.asdict``) plus ``run_id``,
    ``config_key``, ``fingerprint``, and the ``model`` and ``hardware`` Structs it ran on.
    Catalog ids come from the database's ``CatalogIds``, so a model or device already stored
    with the same description costs no query.
    """
    if not rows:
        return 0
    catalog, pending = catalog_ids(db), {}
    now = stored(utc_now())
    with db.writing() as cursor:
        model_ids = _ids(rows, "model", lambda model: catalog.model_id(cursor, model, pending))
        hardware_ids = _ids(rows, "hardware", lambda hardware: catalog.hardware_id(cursor, hardware, pending))
        names = ", ".join(_INSERT_COLUMNS)
        if len(rows) <= VALUES_MAX_ROWS:
            placeholders = ", ".join("?" for _ in _INSERT_COLUMNS)
            statement = f"INSERT INTO performance_results ({names}) VALUES ({placeholders})"
            for row, model_id, hardware_id in zip(rows, model_ids, hardware_ids, strict=True):
                cursor.execute(statement, [model_id, hardware_id, *_values(row, now)])
        else:
            cursor.register("incoming_results", _arrow_table(rows, model_ids, hardware_ids, now))
            try:
                cursor.execute(f"INSERT INTO performance_results ({names}) SELECT {names} FROM incoming_results")
            finally:
                cursor.unregister("incoming_results")
        if run is not None:
            write_run(cursor, run)
    catalog.keep(pending)  # committed
    return len(rows)


def _ids(rows: list[dict], field: str, resolve) -> list[int]:
    """Each row's catalog id for its ``field`` Struct, resolved once per distinct object: a batch's
    rows share a few model and hardware Structs, and comparing each row's description again
    was a tenth of a 1,000-row call (perf/ingest.py)."""
    by_object: dict[int, int] = {}  # id() is safe: ``rows`` keeps every object alive meanwhile
    found = []
    for row in rows:
        described = row[field]
        catalog_id = by_object.get(id(described))
        if catalog_id is None:
            catalog_id = by_object[id(described)] = resolve(described)
        found.append(catalog_id)
    return found


# The rows' plain values, converted by Arrow straight from the row dicts (a missing key is a
# null, keys that are no column are ignored): a third faster than a Python list per column.
_PLAIN_STRUCT = pa.struct([(name, kind) for name, kind in RESULT_VALUE_COLUMNS.items() if name not in _TIMESTAMP_COLUMNS])


def _arrow_table(rows: list[dict], model_ids: list[int], hardware_ids: list[int], now) -> pa.Table:
    """``rows`` as an Arrow table of _INSERT_SCHEMA (created_at defaults to ``now``)."""
    plain = pa.array(rows, type=_PLAIN_STRUCT)
    arrays = [pa.array(model_ids, pa.int32()), pa.array(hardware_ids, pa.int32())]
    for name, kind in RESULT_VALUE_COLUMNS.items():
        if name in _TIMESTAMP_COLUMNS:
            default = now if name == "created_at" else None
            arrays.append(pa.array([stored(row.get(name, default)) for row in rows], kind))
        else:
            arrays.append(plain.field(name))
    return pa.Table.from_arrays(arrays, schema=_INSERT_SCHEMA)


def _values(row: dict, now) -> list:
    """The row's RESULT_VALUE_COLUMNS in order, as parameters (created_at defaults to ``now``)."""
    return [
        stored(row.get(name, now if name == "created_at" else None)) if name in _TIMESTAMP_COLUMNS else row.get(name)
        for name in RESULT_VALUE_COLUMNS
    ]


FAILURE_VALUE_COLUMNS = (
    "run_id", "config_key", "batch_size", "precision", "sequence_length", "image_size", "status",
    "is_compatible", "error_type", "error_message", "node", "host", "scenario", "new_tokens", "created_at",
)


def record_failure(db: Database, failure: dict, *, run: msgspec.Struct | None = None) -> None:
    """Record a failed, refused, incompatible or skipped config with its reason; with ``run``,
    upsert that run row in the same transaction (as insert_results).

    ``failure`` is a measurement's fields plus ``run_id``, ``config_key``, ``is_compatible``
    and the ``model`` and ``hardware`` Structs.
    """
    catalog, pending = catalog_ids(db), {}
    with db.writing() as cursor:
        model_id = catalog.model_id(cursor, failure["model"], pending)
        hardware_id = catalog.hardware_id(cursor, failure["hardware"], pending)
        names = ", ".join(FAILURE_VALUE_COLUMNS)
        cursor.execute(
            f"INSERT INTO hardware_compatibility (model_id, hardware_id, {names}) "
            f"VALUES (?, ?, {', '.join('?' for _ in FAILURE_VALUE_COLUMNS)})",
            [model_id, hardware_id, *(stored(failure.get(column)) for column in FAILURE_VALUE_COLUMNS[:-1]),
             stored(failure.get("created_at") or utc_now())],
        )
        if run is not None:
            write_run(cursor, run)
    catalog.keep(pending)  # committed


def _rows(cursor, columns: tuple[str, ...], as_type: type[Row]) -> list[Row]:
    return msgspec.convert([read_back(dict(zip(columns, row, strict=True))) for row in cursor.fetchall()], list[as_type])


# A result's raw samples: up to 10,000 doubles each, so listings leave them out unless asked.
RAW_SAMPLE_COLUMNS = ("samples_ms", "ttft_samples_ms", "tpot_samples_ms")


def results_for_run(db: Database, run_id: str, as_type: type[Row], *, with_samples: bool = False) -> list[Row]:
    columns = RESULT_ROW_COLUMNS + (RAW_SAMPLE_COLUMNS if with_samples else ())
    cursor = db.cursor().execute(
        f"SELECT {', '.join(columns)} FROM results_view WHERE run_id = ? ORDER BY result_id",
        [run_id],
    )
    return _rows(cursor, columns, as_type)


FAILURE_COLUMNS = (
    "run_id", "model_name", "model_family", "model_type", "hardware_type", "hardware", "device_name",
    "batch_size", "precision", "sequence_length", "image_size", "status", "error_type", "error_message",
    "created_at", "node", "host", "scenario", "new_tokens",
)


def failures_for_run(db: Database, run_id: str, as_type: type[Row]) -> list[Row]:
    cursor = db.cursor().execute(
        f"SELECT {', '.join(FAILURE_COLUMNS)} FROM failures_view WHERE run_id = ? ORDER BY compatibility_id",
        [run_id],
    )
    return _rows(cursor, FAILURE_COLUMNS, as_type)


def samples_for_result(db: Database, result_id: int) -> list[float] | None:
    row = db.cursor().execute("SELECT samples_ms FROM performance_results WHERE result_id = ?", [result_id]).fetchone()
    return row[0] if row else None


def query_results(db: Database, as_type: type[Row], filters: Filters | None = None, *, limit: int = 100) -> list[Row]:
    """Newest results first, narrowed as the dashboard and the export narrow them."""
    where, params = filters.where() if filters is not None else ("", {})
    cursor = db.cursor().execute(
        f"SELECT {', '.join(RESULT_ROW_COLUMNS)} FROM results_view {where} "
        "ORDER BY created_at DESC, result_id DESC LIMIT $limit",
        params | {"limit": limit},
    )
    return _rows(cursor, RESULT_ROW_COLUMNS, as_type)


def has_recent_result(db: Database, config_key: str, fingerprint: str, max_age_days: int) -> bool:
    cutoff = stored(utc_now() - timedelta(days=max_age_days))
    row = db.cursor().execute(
        "SELECT 1 FROM performance_results WHERE config_key = ? AND fingerprint = ? AND created_at >= ? LIMIT 1",
        [config_key, fingerprint, cutoff],
    ).fetchone()
    return row is not None


def finished_config_keys(db: Database, run_id: str) -> set[str]:
    """Configs of a run already measured or recorded as failed: what a resume skips."""
    rows = db.cursor().execute(
        """SELECT config_key FROM performance_results WHERE run_id = $run_id
           UNION SELECT config_key FROM hardware_compatibility WHERE run_id = $run_id""",
        {"run_id": run_id},
    ).fetchall()
    return {row[0] for row in rows}
