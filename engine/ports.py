"""What the engine needs from outside, as protocols.

webapp (and the CLI in it) hands in adapters built over storage and Channels, so the
engine never imports DuckDB or Litestar.
"""

from __future__ import annotations

from typing import Protocol

from engine.config import BenchmarkConfig
from engine.result import Measurement
from engine.runs import RunRecord, RunStatus


class EventSink(Protocol):
    """Receives run events, never under the scheduler's lock: ``run_updated`` and
    ``result_recorded`` from the scheduler's recorder thread, in order, ``run_finished`` from
    a thread of its own. A listener must not call back into the scheduler (its events would
    then reach the listeners after it out of order)."""

    def run_updated(self, run_id: str, status: RunStatus) -> None:
        """Every stored change of the run, in order."""

    def result_recorded(self, run_id: str, result: Measurement) -> None: ...

    def run_finished(self, run_id: str, status: RunStatus) -> None:
        """Once, after the terminal status was published: the place for slow work (reports)."""


class ResultStore(Protocol):
    """Persistence the scheduler needs: incremental lookup, resume and writes."""

    def has_recent_result(self, config_key: str, fingerprint: str, max_age_days: int) -> bool: ...

    def finished_keys(self, run_id: str) -> set[str]:
        """Config keys of the run already measured, failed or skipped by progressive mode."""

    def record_result(self, run_id: str, result: Measurement, fingerprint: str, *, run: RunRecord | None = None) -> None:
        """Store a measurement, or a failure/refusal/incompatibility with its reason; with
        ``run``, that run row too (as ``save_run``), both or neither (one transaction)."""

    def record_progressive_stop(self, run_id: str, config: BenchmarkConfig, reason: str) -> None:
        """Store that progressive mode left ``config`` unmeasured, and why."""

    def save_run(self, record: RunRecord) -> None:
        """Insert or update the run's row."""
