"""Typed reads a comparison needs: results with their config key, fingerprint and raw samples.

Rows are ``results_view`` rows plus ``samples_ms`` (and, where a result pooled several worker
processes, ``repeats`` and ``between_process_cv``) from performance_results, read back with
``msgspec.convert`` into the type the caller names (engine.compare.ComparedResult), so storage
needs no engine import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import msgspec

from storage.database import Database
from storage.results import RESULT_ROW_COLUMNS

Row = TypeVar("Row")

_VIEW_COLUMNS = (*RESULT_ROW_COLUMNS, "config_key", "fingerprint")
# Columns of performance_results that results_view does not show; each is read only where the
# schema has it, so these reads work on every schema version that has results_view.
_OPTIONAL_RESULT_COLUMNS = ("repeats", "between_process_cv", "contended")


def _extra_columns(db: Database) -> tuple[str, ...]:
    present = {
        row[0] for row in db.cursor().execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'performance_results'"
        ).fetchall()
    }
    return tuple(column for column in _OPTIONAL_RESULT_COLUMNS if column in present and column not in _VIEW_COLUMNS)


def _select(db: Database, with_samples: bool, leading: Sequence[str] = ()) -> tuple[str, tuple[str, ...]]:
    extra = _extra_columns(db) + (("samples_ms",) if with_samples else ())
    names = (*leading, *_VIEW_COLUMNS, *extra)
    columns = ", ".join([*leading, *(f"rv.{c}" for c in _VIEW_COLUMNS), *(f"pr.{c}" for c in extra)])
    return columns, names


def _convert(rows: list[tuple], names: tuple[str, ...], as_type: type[Row]) -> list[Row]:
    return msgspec.convert([dict(zip(names, row, strict=True)) for row in rows], list[as_type])


def _results_where(db: Database, condition: str, params: dict, as_type: type[Row], with_samples: bool) -> list[Row]:
    """Results matching ``condition`` (a fixed clause over ``rv``, never user input), in recording order."""
    columns, names = _select(db, with_samples)
    rows = db.cursor().execute(
        f"SELECT {columns} FROM results_view rv JOIN performance_results pr ON pr.result_id = rv.result_id "
        f"WHERE {condition} ORDER BY rv.result_id",
        params,
    ).fetchall()
    return _convert(rows, names, as_type)


def results_with_samples(db: Database, run_id: str, as_type: type[Row], *, with_samples: bool = True) -> list[Row]:
    """A run's measured results, in recording order, with their raw samples."""
    return _results_where(db, "rv.run_id = $run_id", {"run_id": run_id}, as_type, with_samples)


def results_by_ids(db: Database, result_ids: Sequence[int], as_type: type[Row], *, with_samples: bool = True) -> list[Row]:
    """The results with these ids, in recording order, with their raw samples (what a run reused:
    each keeps the run_id of the run that measured it)."""
    if not result_ids:
        return []
    return _results_where(db, "list_contains($result_ids, rv.result_id)", {"result_ids": list(result_ids)}, as_type,
                          with_samples)


def results_for_runs(db: Database, run_ids: Sequence[str], as_type: type[Row], *, with_samples: bool = False) -> dict[str, list[Row]]:
    """Several runs' results at once, by run id (the runs list marks regressions from these)."""
    if not run_ids:
        return {}
    grouped: dict[str, list[Row]] = {run_id: [] for run_id in run_ids}
    for row in _results_where(db, "list_contains($run_ids, rv.run_id)", {"run_ids": list(run_ids)}, as_type,
                              with_samples):
        grouped[row.run_id].append(row)
    return grouped


# Each earlier run counts once per config (its latest result of it), so a config's history is
# the results at the next ``lookback`` positions after the contender's in that ranking; joining
# on those positions keeps the work at (contender results x lookback), however long the history.
# The contenders: the runs' results, and the results in $result_ids (those a run reused: each is
# its measuring run's latest of its config, so it has a position in the ranking too).
_HISTORY = """
    WITH keyed AS (
        SELECT DISTINCT config_key, fingerprint FROM performance_results
        WHERE list_contains($run_ids, run_id) OR list_contains($result_ids, result_id)
    ),
    latest AS (
        SELECT max(pr.result_id) AS result_id, pr.run_id, pr.config_key, pr.fingerprint
        FROM performance_results pr
        JOIN keyed k ON pr.config_key = k.config_key AND pr.fingerprint = k.fingerprint
        GROUP BY pr.run_id, pr.config_key, pr.fingerprint
    ),
    ranked AS (
        SELECT *, row_number() OVER (PARTITION BY config_key, fingerprint ORDER BY result_id DESC) AS position
        FROM latest
    ),
    earlier AS (
        SELECT c.run_id AS contender_run_id, h.result_id
        FROM ranked c
        CROSS JOIN range(1, $lookback + 1) AS steps(step)
        JOIN ranked h ON h.config_key = c.config_key AND h.fingerprint = c.fingerprint
                     AND h.position = c.position + steps.step
        WHERE list_contains($run_ids, c.run_id) OR list_contains($result_ids, c.result_id)
    )
    SELECT {columns}
    FROM earlier e
    JOIN results_view rv ON rv.result_id = e.result_id
    JOIN performance_results pr ON pr.result_id = e.result_id
    ORDER BY e.contender_run_id, rv.config_key, rv.result_id DESC
"""


def _history_rows(
    db: Database, run_ids: Sequence[str], result_ids: Sequence[int], lookback: int, as_type: type[Row], with_samples: bool
) -> list[tuple[str, Row]]:
    """(the contender's run id, an earlier result) for every contender of ``_HISTORY``."""
    columns, names = _select(db, with_samples, leading=("e.contender_run_id",))
    rows = db.cursor().execute(
        _HISTORY.format(columns=columns),
        {"run_ids": list(run_ids), "result_ids": list(result_ids), "lookback": lookback},
    ).fetchall()
    values = _convert([row[1:] for row in rows], names[1:], as_type)
    return [(row[0], value) for row, value in zip(rows, values, strict=True)]


def history_for_runs(
    db: Database, run_ids: Sequence[str], lookback: int, as_type: type[Row], *, with_samples: bool = False
) -> dict[str, list[Row]]:
    """For each run, the ``lookback`` latest earlier results of each of its configs with the same
    config key and fingerprint (older result ids, one per earlier run: its latest), newest first."""
    if not run_ids:
        return {}
    grouped: dict[str, list[Row]] = {run_id: [] for run_id in run_ids}
    for run_id, value in _history_rows(db, run_ids, (), lookback, as_type, with_samples):
        grouped[run_id].append(value)
    return grouped


def history_for_run(
    db: Database, run_id: str, lookback: int, as_type: type[Row], *, with_samples: bool = True,
    reused_result_ids: Sequence[int] = (),
) -> list[Row]:
    """The run's configs' histories (see ``history_for_runs``), with raw samples; with the
    histories of ``reused_result_ids`` (the results the run reused), the results before each."""
    return [value for _, value in _history_rows(db, [run_id], reused_result_ids, lookback, as_type, with_samples)]


def other_environment_counts(db: Database, run_id: str, reused_result_ids: Sequence[int] = ()) -> dict[str, int]:
    """Per config key of the run (and of the results it reused): how many earlier results it has
    under another fingerprint."""
    rows = db.cursor().execute(
        """SELECT c.config_key, count(*)
           FROM performance_results c
           JOIN performance_results pr
             ON pr.config_key = c.config_key AND pr.fingerprint IS DISTINCT FROM c.fingerprint
            AND pr.result_id < c.result_id AND pr.run_id <> c.run_id
           WHERE c.run_id = $run_id OR list_contains($result_ids, c.result_id)
           GROUP BY c.config_key""",
        {"run_id": run_id, "result_ids": list(reused_result_ids)},
    ).fetchall()
    return {key: count for key, count in rows}


def previous_run_with_configs(db: Database, run_id: str, reused_result_ids: Sequence[int] = ()) -> str | None:
    """The latest earlier completed run that measured at least one of this run's configs: those
    it measured, and those of ``reused_result_ids`` (the results it reused, which their own runs
    measured, so a run that reused everything still has one)."""
    row = db.cursor().execute(
        """SELECT other.run_id
           FROM test_runs this
           JOIN test_runs other ON other.created_at < this.created_at AND other.status = 'completed'
           WHERE this.run_id = $run_id
             AND EXISTS (
                 SELECT 1 FROM performance_results mine JOIN performance_results theirs
                   ON theirs.config_key = mine.config_key
                 WHERE (mine.run_id = this.run_id OR list_contains($result_ids, mine.result_id))
                   AND theirs.run_id = other.run_id)
           ORDER BY other.created_at DESC, other.test_run_id DESC
           LIMIT 1""",
        {"run_id": run_id, "result_ids": list(reused_result_ids)},
    ).fetchone()
    return row[0] if row else None
