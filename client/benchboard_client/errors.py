"""What can go wrong talking to a benchboard server, as exceptions that carry the server's words."""

from __future__ import annotations

import json


class BenchmarkAPIError(Exception):
    """The server refused a request, or could not be asked at all.

    ``status_code`` is the HTTP status (None when no answer came back); ``error``,
    ``reason`` and ``field`` are the server's JSON error body, where it sent one.
    """

    def __init__(self, message: str, *, status_code: int | None = None, error: str | None = None,
                 reason: str | None = None, field: str | None = None, body: object = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.error = error
        self.reason = reason
        self.field = field
        self.body = body


class InvalidRequest(BenchmarkAPIError):
    """400/422: the server named what was wrong with the request."""


class Unauthorized(BenchmarkAPIError):
    """401/403: the server needs a token (``BenchmarkAPIClient(token=...)``)."""


class NotFound(BenchmarkAPIError):
    """404: no such run, report or endpoint."""


class ServerUnreachable(BenchmarkAPIError):
    """Nothing answered at the server's address, or the connection broke."""


class InvalidServerAddress(BenchmarkAPIError, ValueError):
    """The client was made with a ``base_url`` nothing could be sent to (no http:// or https://, no
    host, a port outside 1..65535, a malformed address): refused by the constructor, before any
    request. ``field`` is "base_url"; ``reason`` says what is wrong, without the field's name."""


ERRORS_BY_STATUS = {
    400: InvalidRequest, 422: InvalidRequest, 401: Unauthorized, 403: Unauthorized, 404: NotFound,
}


def error_from_response(status_code: int, text: str, method: str, url: str) -> BenchmarkAPIError:
    """The exception for a 4xx/5xx reply, with the server's own message as the text."""
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    fields = body if isinstance(body, dict) else {}
    # The server's error body is {error, reason, field?}: "field: reason" says what to fix.
    reason = fields.get("reason") or fields.get("error") or text.strip()[:500]
    detail = f"{fields['field']}: {reason}" if fields.get("field") and reason else reason
    message = f"{detail} ({method} {url} -> {status_code})" if detail else f"{method} {url} -> {status_code}"
    error_class = ERRORS_BY_STATUS.get(status_code, BenchmarkAPIError)
    return error_class(message, status_code=status_code, error=fields.get("error"),
                       reason=fields.get("reason"), field=fields.get("field"),
                       body=body if body is not None else text)
