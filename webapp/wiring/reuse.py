"""Which configs a run has, and which results it reused instead of measuring them again
(incremental mode): what the run page lists and GET /api/benchmark/results returns."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.config import BenchmarkConfig
from engine.runs import COMPLETED, RunRecord, RunState
from storage import dashboard

if TYPE_CHECKING:
    from webapp.wiring.services import Services


def snapshot(live: RunState) -> tuple[list[BenchmarkConfig], set[str]]:
    """The live run's configs and finished keys, copied while the scheduler may change them."""
    for _ in range(5):
        try:
            return list(live.configs), set(live.finished_keys)
        except RuntimeError:  # changed size during iteration: try again
            continue
    return list(live.configs), set()


def run_configs(services: Services, record: RunRecord) -> tuple[list[BenchmarkConfig], set[str] | None]:
    """A run's configs, and the keys finished so far (None for a run of an earlier process,
    whose configs are planned again from its request; [] when that is no longer possible)."""
    live = services.scheduler.get(record.run_id)
    if live is not None:
        return snapshot(live)
    try:
        return services.plan(record.request).configs, None
    except Exception:  # its models or hardware may be gone since
        return [], None


def reused_configs(services: Services, record: RunRecord, shown: set[str]) -> list[dict]:
    """Configs the run skipped because a result with the same environment existed (incremental
    mode), each with the result reused: model_name, ..., run_id (the run it came from), result_id."""
    request = record.request
    if request is None or not request.incremental or request.force:
        return []
    configs, finished = run_configs(services, record)
    if finished is None and record.status != COMPLETED:
        return []  # a stored run that stopped early: an unrecorded config may just not have run
    candidates = [c for c in configs if c.key() not in shown and (finished is None or c.key() in finished)]
    fingerprints = [part for part in (record.fingerprint or "").split(",") if part]
    found = dashboard.reused_results(services.db, record.run_id, [c.key() for c in candidates], fingerprints,
                                     until=record.completion_time if finished is None else None)
    return [found[c.key()] | {"key": c.key(), "outcome": "reused", "reused_from": found[c.key()]["run_id"]}
            for c in candidates if c.key() in found]
