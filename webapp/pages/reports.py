"""The Reports page (/reports): each run's report files, served through the API's download route."""

from __future__ import annotations

import msgspec
from litestar import Controller, get
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template

from webapp.pages.rendering import PAGE_EXCEPTION_HANDLERS, render
from webapp.reporting.reports import list_reports
from webapp.wiring.services import Services


def report_url(run_id: str, file_name: str) -> str:
    return f"/api/benchmark/reports/{run_id}/{file_name}"


class ReportPages(Controller):
    exception_handlers = PAGE_EXCEPTION_HANDLERS
    include_in_schema = False

    @get("/reports", name="reports", sync_to_thread=True)
    def reports(self, request: HTMXRequest, services: Services, run: str | None = None) -> Template:
        """Every run with reports, newest first; ``run`` picks the one previewed (default: the newest)."""
        reports = [
            msgspec.structs.asdict(entry) | {"links": [(name, report_url(entry.run_id, name)) for name in entry.reports]}
            for entry in list_reports(services.db, services.settings.results_path)
        ]
        previewed = next(
            (entry for entry in reports if entry["run_id"] == run), reports[0] if reports else None
        )
        preview_url = (
            report_url(previewed["run_id"], "report.html")
            if previewed and "report.html" in previewed["reports"]
            else None
        )
        context = {
            "active": "reports",
            "reports": reports,
            "previewed": previewed,
            "preview_url": preview_url,
            "unknown_run": run if run and (previewed is None or previewed["run_id"] != run) else None,
        }
        return render(request, "pages/reports.html", "partials/report_preview.html", context)
