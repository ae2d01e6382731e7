"""Adapters that give the engine its ports over storage (engine.ports.ResultStore)."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from engine.config import BenchmarkConfig
from engine.hardware import HardwareInfo
from engine.models.spec import ModelInfo
from engine.result import SKIPPED, Measurement
from engine.runs import RunRecord
from storage import results as result_rows
from storage import runs as run_rows
from storage.database import Database


class StorageResultStore:
    """engine.ports.ResultStore over a DuckDB Database."""

    def __init__(
        self, db: Database, describe_model: Callable[[str], ModelInfo], describe_hardware: Callable[[str], HardwareInfo]
    ):
        self._db = db
        self._describe_model = describe_model
        self._describe_hardware = describe_hardware

    def has_recent_result(self, config_key: str, fingerprint: str, max_age_days: int) -> bool:
        return result_rows.has_recent_result(self._db, config_key, fingerprint, max_age_days)

    def finished_keys(self, run_id: str) -> set[str]:
        return result_rows.finished_config_keys(self._db, run_id)

    def _row(self, run_id: str, result: Measurement, **extra) -> dict:
        return {
            **msgspec.structs.asdict(result),
            "run_id": run_id,
            "config_key": result.config.key(),
            "model": self._describe_model(result.model_name),
            "hardware": self._describe_hardware(result.hardware),
            **extra,
        }

    def record_result(self, run_id: str, result: Measurement, fingerprint: str, *, run: RunRecord | None = None) -> None:
        if result.ok:
            result_rows.insert_results(self._db, [self._row(run_id, result, fingerprint=fingerprint)], run=run)
            return
        message = result.error_message or result.status
        if result.stop_reason:
            message = f"{message} ({result.stop_reason})"
        result_rows.record_failure(self._db, self._row(
            run_id, result, error_type=result.error_type or result.status, error_message=message, is_compatible=False,
        ), run=run)

    def record_progressive_stop(self, run_id: str, config: BenchmarkConfig, reason: str) -> None:
        skipped = Measurement.failure(config, SKIPPED, "progressive_stop", f"not measured: {reason}")
        result_rows.record_failure(self._db, self._row(run_id, skipped, is_compatible=True))

    def save_run(self, record: RunRecord) -> None:
        run_rows.save_run(self._db, record)
