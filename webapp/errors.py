"""The one place where domain errors become HTTP errors.

Every error a client can cause is a 4xx JSON body naming what was wrong:
``{"error": ..., "field": ..., "reason": ...}`` (field where there is one).
"""

from __future__ import annotations

import logging
import re

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_404_NOT_FOUND,
    HTTP_500_INTERNAL_SERVER_ERROR,
)

from engine.errors import InvalidRequestError, UnknownRunError
from storage.sql_guard import QueryFailed, QueryRefused, QueryTimeout
from webapp.pages.rendering import error_page
from webapp.reports import ReportNotFound

log = logging.getLogger(__name__)


def error_response(status_code: int, error: str, reason: str, field: str | None = None) -> Response:
    body = {"error": error, "reason": reason, "detail": f"{field}: {reason}" if field else reason}
    if field:
        body["field"] = field
    return Response(body, status_code=status_code, media_type=MediaType.JSON)


def _validation_field(exc: ValidationException) -> tuple[str | None, str]:
    """Field and reason from Litestar's msgspec validation details."""
    for item in exc.extra or []:
        if isinstance(item, dict):
            message = str(item.get("message", exc.detail))
            unknown = re.search(r"unknown field `([^`]+)`", message)
            if unknown:
                return unknown.group(1), "unknown field; allowed fields are listed in the API docs at /schema"
            location = re.search(r"at `\$\.([A-Za-z_]+)", message)
            key = item.get("key")
            name = location.group(1) if location else (key if key and key not in ("body", "data") else None)
            if name:
                name = re.match(r"[A-Za-z_]*", name).group(0)  # "batch_sizes[0]" is the field batch_sizes
            return name or None, re.sub(r"\s*- at `[^`]*`$", "", message)
    return None, str(exc.detail)


def handle_validation(_: Request, exc: ValidationException) -> Response:
    field, reason = _validation_field(exc)
    return error_response(HTTP_400_BAD_REQUEST, "invalid request", reason, field)


def handle_invalid_request(_: Request, exc: InvalidRequestError) -> Response:
    return error_response(HTTP_400_BAD_REQUEST, "invalid request", exc.reason, exc.field)


def handle_unknown_run(_: Request, exc: UnknownRunError) -> Response:
    return error_response(HTTP_404_NOT_FOUND, "not found", str(exc), "run_id")


def handle_report_not_found(_: Request, exc: ReportNotFound) -> Response:
    return error_response(HTTP_404_NOT_FOUND, "not found", str(exc))


def handle_query_refused(_: Request, exc: QueryRefused) -> Response:
    return Response({"error": "query refused", "reason": exc.reason}, status_code=HTTP_400_BAD_REQUEST)


def handle_query_failed(_: Request, exc: QueryFailed) -> Response:
    return Response({"error": "query failed", "reason": exc.reason}, status_code=HTTP_400_BAD_REQUEST)


def handle_query_timeout(_: Request, exc: QueryTimeout) -> Response:
    return Response({"error": "query timed out", "reason": str(exc)}, status_code=HTTP_400_BAD_REQUEST)


def _is_page(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/schema"))


def handle_http(request: Request, exc: HTTPException) -> Response:
    if _is_page(request):
        # Pages answer in HTML; a stale CSRF cookie (after a server restart, say) is the common 403.
        title = "This form has expired" if exc.status_code == 403 else "Request failed"
        hint = " Reload the page and submit the form again." if exc.status_code == 403 else ""
        return error_page(request, exc.status_code, title, f"{exc.detail}.{hint}")
    if isinstance(exc, NotAuthorizedException):
        return error_response(HTTP_401_UNAUTHORIZED, "unauthorized", exc.detail, "Authorization")
    return error_response(exc.status_code, "request failed", exc.detail)


def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "internal error", "the server failed; see its log")


EXCEPTION_HANDLERS = {
    ValidationException: handle_validation,
    InvalidRequestError: handle_invalid_request,
    UnknownRunError: handle_unknown_run,
    ReportNotFound: handle_report_not_found,
    QueryRefused: handle_query_refused,
    QueryTimeout: handle_query_timeout,
    QueryFailed: handle_query_failed,
    HTTPException: handle_http,
    Exception: handle_unexpected,
}
