"""Loading comparisons: storage's rows handed to engine.compare, for the API, the CLI and the pages.

``run_comparison`` and ``history_comparison`` read the rows and compare them; GET
/api/benchmark/compare, ``benchboard compare`` and the Compare page all call
``comparison_request``, so the three show the same verdicts.

A run's results are those it measured and those it reused (incremental mode); which it reused
comes from planning its request again (webapp.wiring.reuse), so the callers that can plan hand
in ``reused_of``: run id -> the ids of the results it reused.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import msgspec

from engine.compare import (
    DEFAULT_LOOKBACK,
    MAX_LOOKBACK,
    ComparedResult,
    RunComparison,
    Thresholds,
    compare_history,
    compare_runs,
    thresholds_from,
)
from engine.errors import InvalidRequestError, UnknownRunError
from storage import comparisons
from storage import results as result_rows
from storage import runs as run_rows
from storage.database import Database

if TYPE_CHECKING:
    from webapp.wiring.services import Services


class _RunId(msgspec.Struct):
    run_id: str


def require_run(db: Database, run_id: str, field: str = "run_id") -> None:
    """UnknownRunError naming ``field`` (the parameter that named the run) unless it is stored."""
    if run_rows.get_run(db, run_id, _RunId) is None:
        raise UnknownRunError(run_id, field)


ReusedOf = Callable[[str], Sequence[int]]


def nothing_reused(run_id: str) -> Sequence[int]:
    return ()


def reused_by_services(services: Services) -> ReusedOf:
    """``reused_of`` for a process that can plan (the server): the ids of the results the run
    stood on instead of measuring them again, as its page lists them."""
    # Imported here: reuse reads with the dashboard's queries (pandas), which `benchboard
    # compare` on a database file never needs (issue 16).
    from webapp.wiring import reuse

    def reused_of(run_id: str) -> list[int]:
        record = services.run_record(run_id)
        shown = result_rows.finished_config_keys(services.db, run_id)
        return [row["result_id"] for row in reuse.reused_configs(services, record, shown)]

    return reused_of


def compared_results(db: Database, run_id: str, reused: Sequence[int]) -> list[ComparedResult]:
    """The run's results as a comparison takes them: measured, then the ``reused`` ones (each
    with the run that measured it)."""
    measured = comparisons.results_with_samples(db, run_id, ComparedResult)
    return measured + comparisons.results_by_ids(db, reused, ComparedResult)


def run_comparison(
    db: Database, baseline: str, contender: str, thresholds: Thresholds | None = None,
    reused_of: ReusedOf = nothing_reused,
) -> RunComparison:
    """Run ``contender`` against run ``baseline``; UnknownRunError if either is not stored."""
    require_run(db, baseline, "baseline")
    require_run(db, contender, "contender")
    return compare_runs(
        compared_results(db, baseline, reused_of(baseline)), compared_results(db, contender, reused_of(contender)),
        baseline_run_id=baseline, contender_run_id=contender, thresholds=thresholds,
    )


def history_comparison(
    db: Database, run_id: str, thresholds: Thresholds | None = None, lookback: int = DEFAULT_LOOKBACK,
    reused_of: ReusedOf = nothing_reused,
) -> RunComparison:
    """Run ``run_id`` against the last ``lookback`` results of each of its configs (a reused
    result: against the results before it)."""
    require_run(db, run_id, "history")
    reused = list(reused_of(run_id))
    return compare_history(
        compared_results(db, run_id, reused),
        comparisons.history_for_run(db, run_id, lookback, ComparedResult, reused_result_ids=reused),
        run_id=run_id, lookback=lookback, thresholds=thresholds,
        other_environments=comparisons.other_environment_counts(db, run_id, reused),
    )


# Marks of finished runs, per database: a run's history is earlier results only, and those never
# change, so a finished run's mark is computed once per process.
_MARKS: weakref.WeakKeyDictionary[Database, dict[str, bool]] = weakref.WeakKeyDictionary()
_MARKS_LOCK = threading.Lock()
_MARKS_KEPT = 100_000


def regressed_runs(db: Database, run_ids: Sequence[str], lookback: int = DEFAULT_LOOKBACK) -> set[str]:
    """Which of the finished runs ``run_ids`` have a config ``slower`` than its history (what the
    runs list marks).

    The runs not marked yet are first compared on their stored medians and CIs, without raw
    samples; only a run with a config more than half the threshold slower is then compared in
    full, exactly as the Compare page does, so the list stays cheap and agrees with that page."""
    with _MARKS_LOCK:
        known = _MARKS.setdefault(db, {})
        todo = [run_id for run_id in dict.fromkeys(run_ids) if run_id not in known]
    if todo:
        results = comparisons.results_for_runs(db, todo, ComparedResult)
        histories = comparisons.history_for_runs(db, todo, lookback, ComparedResult)
        marks = {}
        for run_id in todo:
            marks[run_id] = False
            if not results.get(run_id) or not histories.get(run_id):
                continue
            rough = compare_history(results[run_id], histories[run_id], run_id=run_id, lookback=lookback)
            if any(c.ratio is not None and c.ratio > 1 + c.threshold / 2 for c in rough.configs):
                marks[run_id] = history_comparison(db, run_id, lookback=lookback).has_regression
        with _MARKS_LOCK:
            if len(known) > _MARKS_KEPT:
                known.clear()
            known.update(marks)
    return {run_id for run_id in run_ids if known.get(run_id)}


def comparison_request(
    db: Database,
    *,
    baseline: str | None,
    contender: str | None,
    history: str | None,
    threshold: str | None,
    threshold_for: Iterable[str] = (),
    lookback: int = DEFAULT_LOOKBACK,
    reused_of: ReusedOf = nothing_reused,
) -> RunComparison:
    """The comparison asked for by query parameters: ``baseline`` and ``contender``, or
    ``history``. InvalidRequestError names the field that is missing or wrong."""
    thresholds = thresholds_from(threshold, threshold_for)
    if not 1 <= lookback <= MAX_LOOKBACK:
        raise InvalidRequestError("lookback", f"must be between 1 and {MAX_LOOKBACK}")
    if history:
        if baseline or contender:
            raise InvalidRequestError("history", "give either history, or baseline and contender, not both")
        return history_comparison(db, history, thresholds, lookback, reused_of)
    if not baseline:
        raise InvalidRequestError("baseline", "required with contender (or give history=RUN_ID alone)")
    if not contender:
        raise InvalidRequestError("contender", "required with baseline")
    if contender == baseline:
        # Every config would match itself at a ratio of exactly 1: a comparison that says nothing.
        raise InvalidRequestError("contender", "is the baseline itself: compare two different runs, "
                                  "or give history=RUN_ID to compare a run with its configs' history")
    return run_comparison(db, baseline, contender, thresholds, reused_of)
