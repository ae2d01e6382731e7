"""Report listing, downloads (which never leave results-dir) and rebuilding a run's reports."""

from __future__ import annotations

from litestar import Controller, Request, get, head, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import File
from litestar.response.file import ASGIFileResponse

from webapp.api.dependencies import require_allowed_origin
from webapp.api.parameters import RunId
from webapp.errors import ERROR_RESPONSES, ErrorBody
from webapp.reporting.reports import ReportEntry, RunStillActive, list_reports, report_file
from webapp.wiring.services import Services

REGENERATE_RESPONSES = {
    **ERROR_RESPONSES,
    503: ResponseSpec(data_container=ErrorBody, generate_examples=False,
                      description="The report could not be written (the results folder is not writable, say)"),
}

# Litestar adds "; charset=utf-8" to text types itself.
MEDIA_TYPES = {"report.html": "text/html", "report.md": "text/markdown", "results.json": "application/json"}


class ReportController(Controller):
    path = "/api/benchmark/reports"
    tags = ["reports"]

    @get("/", operation_id="listReports", responses=ERROR_RESPONSES, sync_to_thread=True)
    def index(self, services: Services) -> list[ReportEntry]:
        return list_reports(services.db, services.settings.results_path)

    @post("/{run_id:str}/regenerate", status_code=200, guards=[require_allowed_origin], operation_id="regenerateReport",
          responses=REGENERATE_RESPONSES, sync_to_thread=True)
    def regenerate(self, services: Services, run_id: RunId) -> ReportEntry:
        """Write an ended run's report files again (after a failure recorded as its report_error, say).
        Needs the token when one is set, like every API call."""
        status = services.run_status(run_id)
        if not status.terminal:
            raise RunStillActive(run_id, status.status)
        return services.reports.rebuild(run_id)

    @get("/{run_id:str}/{file_name:str}", operation_id="downloadReport", responses=ERROR_RESPONSES, sync_to_thread=True)
    def download(self, services: Services, run_id: RunId, file_name: str) -> File:
        return _report(services, run_id, file_name)

    # HEAD is GET without the body, as HTTP has it: not an operation of its own in the schema.
    @head("/{run_id:str}/{file_name:str}", include_in_schema=False, sync_to_thread=True)
    def download_head(
        self, request: Request, services: Services, run_id: RunId, file_name: str
    ) -> ASGIFileResponse:
        """GET's status and headers, no body. Litestar sends a handler's body on HEAD too (the
        server is left to drop it) unless told, and told, it leaves out the Content-Type, which
        GET's answer has: given here as GET gets it."""
        report = _report(services, run_id, file_name)
        media_type = MEDIA_TYPES[file_name]
        content_type = f"{media_type}; charset=utf-8" if media_type.startswith("text/") else media_type
        return report.to_asgi_response(
            app=None, request=request, is_head_response=True, headers={"content-type": content_type}
        )


def _report(services: Services, run_id: str, file_name: str) -> File:
    path = report_file(services.settings.results_path, run_id, file_name)
    # Inline, so a browser shows each file (the Reports page previews report.html); saving stays one click.
    return File(path=path, filename=file_name, media_type=MEDIA_TYPES[file_name], content_disposition_type="inline")
