"""Report listing and downloads, which never leave results-dir."""

from __future__ import annotations

from litestar import Controller, get
from litestar.response import File

from webapp.errors import ERROR_RESPONSES
from webapp.reporting.reports import ReportEntry, list_reports, report_file
from webapp.wiring.services import Services

MEDIA_TYPES = {"report.html": "text/html; charset=utf-8", "report.md": "text/markdown; charset=utf-8",
               "results.json": "application/json"}


class ReportController(Controller):
    path = "/api/benchmark/reports"
    tags = ["reports"]

    @get("/", operation_id="listReports", responses=ERROR_RESPONSES, sync_to_thread=True)
    def index(self, services: Services) -> list[ReportEntry]:
        return list_reports(services.db, services.settings.results_path)

    @get("/{run_id:str}/{file_name:str}", operation_id="downloadReport", responses=ERROR_RESPONSES, sync_to_thread=True)
    def download(self, services: Services, run_id: str, file_name: str) -> File:
        path = report_file(services.settings.results_path, run_id, file_name)
        # report.html is shown inline (the Reports page previews it); the others download.
        disposition = "inline" if file_name == "report.html" else "attachment"
        return File(path=path, filename=file_name, media_type=MEDIA_TYPES[file_name], content_disposition_type=disposition)
