"""The one place where domain errors become HTTP errors.

Every error a client can cause is a 4xx JSON body naming what was wrong, the
``ErrorBody`` below: ``{"error": ..., "reason": ..., "field": ...}`` (field where there is one).
"""

from __future__ import annotations

import logging
import math
import re

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from engine.errors import InvalidRequestError, UnknownResultError, UnknownRunError
from engine.runs import RUN_STATUSES, RunRequest, field_and_reason, literal_fields
from storage.sql_guard import QueryFailed, QueryRefused, QueryTimeout, SqlBusy
from webapp.reporting.exports import MEDIA_TYPES
from webapp.reporting.reports import ReportNotFound, ReportWriteFailed, RunStillActive

log = logging.getLogger(__name__)


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error the API answers: what went wrong, why, and which field when one is to blame."""

    error: str
    reason: str
    field: str | None = None


class UnsupportedMediaType(Exception):
    """A body that is not JSON where the API takes JSON."""

    def __init__(self, media_type: str):
        self.media_type = media_type
        sent = f"not {media_type!r}" if media_type else "and this request has none"
        super().__init__(f"this endpoint takes JSON: send 'Content-Type: application/json', {sent}")


def _documented(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description, generate_examples=False)


# What each API route may answer besides its success, for /schema.
ERROR_RESPONSES = {
    400: _documented("Bad input: the field and the reason"),
    401: _documented("A token is configured and was not presented"),
    403: _documented("The calling page's origin is not allowed"),
    404: _documented("No such run or file"),
    409: _documented("The request conflicts with the server's state"),
    415: _documented("The body is not JSON: Content-Type must be application/json"),
    422: _documented("A form or body that could not be processed"),
    429: _documented("Too many guarded queries at once: retry after the Retry-After header's seconds"),
}


# Fields that take fixed values, so a refusal can list them: the run request's, and the
# query parameters' (a run's status, an export's format).
FIELD_CHOICES = {**literal_fields(RunRequest), "status": RUN_STATUSES, "format": tuple(MEDIA_TYPES)}


def error_response(status_code: int, error: str, reason: str, field: str | None = None) -> Response:
    return Response(ErrorBody(error=error, reason=reason, field=field), status_code=status_code, media_type=MediaType.JSON)


# A query or path parameter is always text: msgspec's "Expected `int`, got `str`" says only that
# the text is not one.
_NOT_PARSED = re.compile(r"Expected `(int|float|bool)( \| null)?`, got `str`")
_PARSED_KINDS = {"int": "a whole number", "float": "a number", "bool": "true or false"}


def _validation_field(request: Request, exc: ValidationException) -> tuple[str | None, str]:
    """Field and reason from Litestar's msgspec validation details."""
    for item in exc.extra or []:
        if isinstance(item, dict):
            key = item.get("key") or ""
            # A query or path parameter's key; "batch_sizes[0]" is the field batch_sizes.
            parameter = re.match(r"[A-Za-z_]*", key).group(0) if key not in ("body", "data") else ""
            if not parameter and item.get("source") == "body":
                parameter = "body"  # the body as a whole ("Expected `object`, got `array`")
            message = str(item.get("message", exc.detail))
            not_parsed = _NOT_PARSED.fullmatch(message)
            if not_parsed and item.get("source") in ("query", "path"):
                given = (request.query_params if item["source"] == "query" else request.path_params).get(key)
                return parameter, f"must be {_PARSED_KINDS[not_parsed[1]]}, not {given!r}"
            return field_and_reason(message, FIELD_CHOICES, parameter or None)
    return None, str(exc.detail)


def handle_validation(request: Request, exc: ValidationException) -> Response:
    field, reason = _validation_field(request, exc)
    return error_response(HTTP_400_BAD_REQUEST, "invalid request", reason, field)


def handle_invalid_request(_: Request, exc: InvalidRequestError) -> Response:
    return error_response(HTTP_400_BAD_REQUEST, "invalid request", exc.reason, exc.field)


def handle_unknown_run(_: Request, exc: UnknownRunError) -> Response:
    return error_response(HTTP_404_NOT_FOUND, "not found", str(exc), exc.field)


def handle_unknown_result(_: Request, exc: UnknownResultError) -> Response:
    return error_response(HTTP_404_NOT_FOUND, "not found", str(exc), "result_id")


def handle_report_not_found(_: Request, exc: ReportNotFound) -> Response:
    return error_response(HTTP_404_NOT_FOUND, "not found", str(exc), exc.field)


def handle_unsupported_media_type(_: Request, exc: UnsupportedMediaType) -> Response:
    return error_response(HTTP_415_UNSUPPORTED_MEDIA_TYPE, "unsupported media type", str(exc), "Content-Type")


def handle_report_write_failed(_: Request, exc: ReportWriteFailed) -> Response:
    # The server's results folder, not the client, is at fault; retry once it is writable.
    return error_response(HTTP_503_SERVICE_UNAVAILABLE, "report not written", str(exc))


def handle_run_still_active(_: Request, exc: RunStillActive) -> Response:
    return error_response(HTTP_409_CONFLICT, "run not ended", str(exc), "run_id")


def handle_query_refused(_: Request, exc: QueryRefused) -> Response:
    return error_response(HTTP_400_BAD_REQUEST, "query refused", exc.reason, "sql")


def handle_query_failed(_: Request, exc: QueryFailed) -> Response:
    return error_response(HTTP_400_BAD_REQUEST, "query failed", exc.reason, "sql")


def handle_query_timeout(_: Request, exc: QueryTimeout) -> Response:
    return error_response(HTTP_400_BAD_REQUEST, "query timed out", str(exc), "sql")


def handle_sql_busy(_: Request, exc: SqlBusy) -> Response:
    response = error_response(HTTP_429_TOO_MANY_REQUESTS, "too many queries", exc.reason)
    response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))  # whole seconds, per HTTP
    return response


def _is_page(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/schema"))


def handle_http(request: Request, exc: HTTPException) -> Response:
    if _is_page(request):
        # Imported here: webapp.pages imports every page, and pages import this module.
        from webapp.pages.rendering import error_page

        # Pages answer in HTML; a stale CSRF cookie (after a server restart, say) is the common 403.
        title = "This form has expired" if exc.status_code == 403 else "Request failed"
        hint = " Reload the page and submit the form again." if exc.status_code == 403 else ""
        return error_page(request, exc.status_code, title, f"{exc.detail}.{hint}")
    if isinstance(exc, NotAuthorizedException):
        return error_response(HTTP_401_UNAUTHORIZED, "unauthorized", exc.detail, "Authorization")
    return error_response(exc.status_code, "not found" if exc.status_code == 404 else "request failed", exc.detail)


def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "internal error", "the server failed; see its log")


EXCEPTION_HANDLERS = {
    ValidationException: handle_validation,
    InvalidRequestError: handle_invalid_request,
    UnsupportedMediaType: handle_unsupported_media_type,
    UnknownRunError: handle_unknown_run,
    UnknownResultError: handle_unknown_result,
    ReportNotFound: handle_report_not_found,
    ReportWriteFailed: handle_report_write_failed,
    RunStillActive: handle_run_still_active,
    QueryRefused: handle_query_refused,
    QueryTimeout: handle_query_timeout,
    QueryFailed: handle_query_failed,
    SqlBusy: handle_sql_busy,
    HTTPException: handle_http,
    Exception: handle_unexpected,
}
