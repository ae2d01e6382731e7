"""Per-run report files (report.html, report.md, results.json) in ``results_dir/<run_id>/``.

report.html is self-contained: the vendored vega libraries are inlined, so it opens
from disk or a download with no server and no network.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import msgspec
from jinja2 import Environment, PackageLoader

from engine.result import ResultRow
from engine.runs import RunRecord, RunStatus, utc_now
from storage import results as result_rows
from storage import runs as run_rows
from storage.database import Database

log = logging.getLogger(__name__)

REPORT_FILES = ("report.html", "report.md", "results.json")
VENDOR = Path(__file__).parent.parent / "static" / "vendor"
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_templates = Environment(loader=PackageLoader("webapp", "templates"), autoescape=lambda name: name.endswith(".html.j2"))
_templates.filters["number"] = lambda value, spec: "-" if value is None else format(value, spec)
FAVICON = Path(__file__).parent.parent / "static" / "favicon.ico"  # the dashboard's (webapp.pages.favicon)


def _timestamp(value: datetime | None) -> str:
    """As the dashboard's pages write a time (to the second), in UTC and saying so: a report is read
    away from the server. A time without a zone is UTC already (engine.runs.utc_now)."""
    if value is None:
        return "-"
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


_templates.filters["timestamp"] = _timestamp


class ReportNotFound(Exception):
    """No report ``name`` for run ``run_id``; ``field`` is the parameter at fault."""

    def __init__(self, run_id: str, name: str):
        known = name in REPORT_FILES
        self.field = "run_id" if known else "file_name"
        hint = "" if known else f"; a run's reports are {', '.join(REPORT_FILES)}"
        super().__init__(f"no report {name!r} for run {run_id!r}{hint}")


class ReportWriteFailed(Exception):
    """A run's report files could not be written (a read-only or full results folder, say)."""

    def __init__(self, run_id: str, reason: str):
        self.run_id = run_id
        self.reason = reason
        super().__init__(f"the report of run {run_id} could not be written: {reason}")


class RunStillActive(Exception):
    """A report is asked for before its run has ended."""

    def __init__(self, run_id: str, status: str):
        super().__init__(f"run {run_id} is {status}; its report is written when it ends")


class ReportEntry(msgspec.Struct, kw_only=True):
    """A run folder with report files, as GET /reports lists it."""

    run_id: str
    status: str
    reports: list[str]
    url: str
    modified: datetime


def _nothing_reused(run_id: str) -> Sequence[ResultRow]:
    return ()


class ReportWriter:
    """EventSink listener: writes a run's reports once its terminal status is published.

    ``reused_of(run_id)`` gives the earlier results the run stood on instead of measuring again
    (incremental mode; Services.reused_results), which the reports list apart."""

    def __init__(self, db: Database, results_dir: Path, reused_of: Callable[[str], Sequence[ResultRow]] = _nothing_reused):
        self._db = db
        self._results_dir = results_dir
        self._reused_of = reused_of

    def rebuild(self, run_id: str) -> ReportEntry:
        """rebuild_reports, with what the run reused."""
        return rebuild_reports(self._db, self._results_dir, run_id, reused_of=self._reused_of)

    def run_updated(self, run_id: str, status: RunStatus) -> None:
        """Reports are written once, at the end."""

    def result_recorded(self, run_id: str, result) -> None:
        """Reports are written once, at the end."""

    def run_finished(self, run_id: str, status: RunStatus) -> None:
        """A report that cannot be written is recorded on the run (``report_error``) and logged;
        the run stays completed, since its measurements are stored."""
        try:
            self.rebuild(run_id)
        except ReportWriteFailed as error:
            log.error("%s (rebuild it with POST /api/benchmark/reports/%s/regenerate)", error, run_id)


def _vendored(prefix: str) -> str:
    matches = sorted(VENDOR.glob(f"{prefix}-[0-9]*.min.js"))
    return matches[-1].read_text(encoding="utf-8")


def write_reports(
    db: Database, results_dir: Path, run_id: str, reused_of: Callable[[str], Sequence[ResultRow]] = _nothing_reused,
) -> Path:
    """``reused_of``: as ReportWriter's, asked once the run is known to exist."""
    run = run_rows.get_run(db, run_id, RunRecord)
    if run is None:
        raise ReportNotFound(run_id, "report.html")
    reused = reused_of(run_id)
    results = result_rows.results_for_run(db, run_id, ResultRow, with_samples=True)  # results.json keeps them
    failures = result_rows.failures_for_run(db, run_id, ResultRow)
    folder = results_dir / run_id
    folder.mkdir(parents=True, exist_ok=True)
    payload = msgspec.json.format(msgspec.json.encode(
        {"run": run, "results": results, "failures": failures, "reused": list(reused)}
    ))
    (folder / "results.json").write_bytes(payload)
    context = {"run": run, "results": results, "failures": failures, "reused": reused, "generated_at": utc_now()}
    (folder / "report.md").write_text(_templates.get_template("reports/report.md.j2").render(**context), encoding="utf-8")
    # Imported when a report is written, not with the module: a run's coordinating process
    # (the CLI) imports this module to wire the writer (issue 16).
    from webapp.reporting.charts import run_throughput

    chart = run_throughput(results)
    html = _templates.get_template("reports/report.html.j2").render(
        **context,
        # "</" inside inline JSON or JS would end the <script> element early.
        chart_json=json.dumps(chart).replace("</", "<\\/") if chart else None,
        scripts=[_vendored("vega"), _vendored("vega-lite"), _vendored("vega-embed")] if chart else [],
        favicon=base64.b64encode(FAVICON.read_bytes()).decode("ascii"),  # inlined: the file opens from disk too
    )
    (folder / "report.html").write_text(html, encoding="utf-8")
    log.info("wrote reports for run %s to %s", run_id, folder)
    return folder


def _failure_reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.filename:
        return f"{error.strerror or error}: {error.filename}"
    return f"{type(error).__name__}: {error}"


def rebuild_reports(
    db: Database, results_dir: Path, run_id: str, reused_of: Callable[[str], Sequence[ResultRow]] = _nothing_reused,
) -> ReportEntry:
    """Write (again) a run's report files, and record the outcome on the run: ``report_error``
    says why they could not be written, and is cleared once they are."""
    if not _RUN_ID.match(run_id):
        raise ReportNotFound(run_id, "report.html")
    try:
        # What the run reused is looked up in here: a storage failure reading it is recorded
        # like any other report failure, not lost with the reports.
        write_reports(db, results_dir, run_id, reused_of)
    except ReportNotFound:
        raise
    except Exception as error:  # a full disk, a read-only folder, a template that failed, storage
        reason = _failure_reason(error)
        run_rows.set_report_error(db, run_id, reason)
        raise ReportWriteFailed(run_id, reason) from error
    run_rows.set_report_error(db, run_id, None)
    return _entry(results_dir / run_id, run_rows.get_run(db, run_id, RunStatus).status)


def list_reports(db: Database, results_dir: Path) -> list[ReportEntry]:
    """Every run folder with report files, newest run first, with its status from the database."""
    if not results_dir.is_dir():
        return []
    entries = []
    for folder in results_dir.iterdir():
        if not (folder.is_dir() and _RUN_ID.match(folder.name)):
            continue
        run = run_rows.get_run(db, folder.name, RunStatus)
        entry = _entry(folder, run.status if run else "unknown")
        if entry is not None:
            entries.append(entry)
    return sorted(entries, key=lambda entry: entry.modified, reverse=True)


def _entry(folder: Path, status: str) -> ReportEntry | None:
    """A run folder's report files, ``modified`` when the newest of them was written (the
    folder's own time moves only when a file is added); None when it holds none."""
    files = [name for name in REPORT_FILES if (folder / name).is_file()]
    if not files:
        return None
    newest = max((folder / name).stat().st_mtime for name in files)
    return ReportEntry(
        run_id=folder.name,
        status=status,
        reports=files,
        url=f"/api/benchmark/reports/{folder.name}/report.html",
        modified=datetime.fromtimestamp(newest, timezone.utc),
    )


def report_file(results_dir: Path, run_id: str, name: str) -> Path:
    """The path of a report, refusing anything but a known file name in a run's own folder."""
    if not _RUN_ID.match(run_id) or name not in REPORT_FILES:
        raise ReportNotFound(run_id, name)
    root = results_dir.resolve()
    path = (root / run_id / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ReportNotFound(run_id, name)
    return path
