"""Adapters that give the engine its ports over storage (engine.ports.ResultStore)."""

from __future__ import annotations

from collections.abc import Callable

from engine.config import BenchmarkConfig
from engine.result import Result
from storage import results as result_rows
from storage import runs as run_rows
from storage.database import Database


def result_row(run_id: str, result: Result, fingerprint: str, model: dict, hardware: dict) -> dict:
    """A measured Result as a storage row (storage.results.RESULT_VALUE_COLUMNS)."""
    stats = result.stats
    config = result.config
    return {
        "model": model,
        "hardware": {**hardware, "device": result.device_name or hardware.get("device")},
        "run_id": run_id,
        "config_key": config.key(),
        "fingerprint": fingerprint,
        "batch_size": config.batch_size,
        "precision": config.precision,
        "sequence_length": config.sequence_length,
        "image_size": config.image_size,
        "weights": result.weights,
        "n_samples": stats.n,
        "average_latency_ms": stats.mean_ms,
        "std_latency_ms": stats.std_ms,
        "min_latency_ms": stats.min_ms,
        "p50_latency_ms": stats.p50_ms,
        "p90_latency_ms": stats.p90_ms,
        "p95_latency_ms": stats.p95_ms,
        "p99_latency_ms": stats.p99_ms,
        "max_latency_ms": stats.max_ms,
        "ci_low_ms": stats.ci_low_ms,
        "ci_high_ms": stats.ci_high_ms,
        "ci_met": stats.ci_met,
        "throughput_items_per_second": result.throughput_items_per_second,
        "throughput_tokens_per_second": result.throughput_tokens_per_second,
        "memory_peak_mb": result.memory_peak_mb,
        "load_time_ms": result.load_time_ms,
        "cold_latency_ms": result.cold_latency_ms,
        "threads": result.threads,
        "torch_version": result.torch_version,
        "samples_ms": result.samples_ms,
        "stop_reason": result.stop_reason,
    }


class StorageResultStore:
    """engine.ports.ResultStore over a DuckDB Database."""

    def __init__(self, db: Database, describe_model: Callable[[str], dict], describe_hardware: Callable[[str], dict]):
        self._db = db
        self._describe_model = describe_model
        self._describe_hardware = describe_hardware

    def has_recent_result(self, config_key: str, fingerprint: str, max_age_days: int) -> bool:
        return result_rows.has_recent_result(self._db, config_key, fingerprint, max_age_days)

    def finished_keys(self, run_id: str) -> set[str]:
        return result_rows.finished_config_keys(self._db, run_id)

    def record_result(self, run_id: str, result: Result, fingerprint: str) -> None:
        config = result.config
        model, hardware = self._describe_model(config.model), self._describe_hardware(config.hardware)
        if result.ok:
            result_rows.insert_results(self._db, [result_row(run_id, result, fingerprint, model, hardware)])
            return
        message = result.error_message or result.status
        if result.stop_reason:
            message = f"{message} ({result.stop_reason})"
        result_rows.record_failure(self._db, {
            "run_id": run_id, "model": model, "hardware": hardware, "batch_size": config.batch_size,
            "precision": config.precision, "is_compatible": False,
            "error_type": result.error_type or result.status, "error_message": message,
            "config_key": config.key(),
        })

    def record_progressive_stop(self, run_id: str, config: BenchmarkConfig, reason: str) -> None:
        result_rows.record_failure(self._db, {
            "run_id": run_id, "model": self._describe_model(config.model),
            "hardware": self._describe_hardware(config.hardware), "batch_size": config.batch_size,
            "precision": config.precision, "is_compatible": True, "error_type": "progressive_stop",
            "error_message": f"not measured: {reason}", "config_key": config.key(),
        })

    def save_run(self, record: dict) -> None:
        run_rows.save_run(self._db, record)
