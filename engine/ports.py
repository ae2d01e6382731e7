"""The two things the engine needs from outside, as protocols.

webapp (and the CLI in it) hands in adapters built over storage, so the engine
never imports DuckDB or Litestar.
"""

from __future__ import annotations

from typing import Protocol

from engine.result import Result


class EventSink(Protocol):
    """Receives run lifecycle events. Called from scheduler threads."""

    def run_updated(self, run: "RunState") -> None: ...  # noqa: F821  (engine.scheduler.RunState)

    def result_recorded(self, run_id: str, result: Result) -> None: ...


class ResultStore(Protocol):
    """Persistence the scheduler needs: incremental lookup and writes."""

    def has_recent_result(self, config_key: str, fingerprint: str, max_age_days: int) -> bool: ...

    def completed_keys(self, run_id: str) -> set[str]: ...

    def record_result(self, run_id: str, result: Result, fingerprint: str, environment: dict) -> None: ...

    def save_run(self, run: "RunState") -> None: ...  # noqa: F821
