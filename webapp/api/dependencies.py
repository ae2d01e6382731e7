"""Dependencies and guards shared by the API controllers."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from webapp.wiring.services import Services


def provide_services(state: State) -> Services:
    return state.services


TOKEN_COOKIE = "benchboard_token"


TOKEN_NEEDED = (
    "this server needs the header 'Authorization: Bearer <token>' here "
    "(in the dashboard: open /login?token=<token> once)"
)


def token_accepted(connection: ASGIConnection, token: str | None) -> bool:
    """Whether ``connection`` may pass a server whose token is ``token`` (None: no token, all pass):
    it presents ``Authorization: Bearer <token>`` or the cookie that ``/login?token=...`` sets."""
    if not token:
        return True
    scheme, _, presented = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        presented = connection.cookies.get(TOKEN_COOKIE, "")
    return hmac.compare_digest(presented.strip().encode(), token.encode())


# Guards are coroutines, though they never wait: Litestar runs a plain function guard on a worker
# thread, two thread hops a request that cost the event loop about a quarter of its CPU per
# GET /status (issue 16, perf/api_load.py).


def check_token(connection: ASGIConnection) -> None:
    """With a token configured, every API endpoint (reads too), the run WebSocket, the pages'
    live streams and their state-changing forms need it."""
    if not token_accepted(connection, connection.app.state.services.settings.token):
        raise NotAuthorizedException(TOKEN_NEEDED)


async def require_token(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    check_token(connection)


def origin_allowed(connection: ASGIConnection) -> bool:
    """Whether the page behind this request (if a browser sent it) passes the CORS allowlist.

    Non-browser clients send no Origin header and always pass."""
    origin = connection.headers.get("origin")
    if not origin or urlsplit(origin).netloc == connection.headers.get("host"):
        return True  # no browser, or the server's own pages
    return connection.app.cors_config.is_origin_allowed(origin)


async def require_allowed_origin(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """CORS only stops a page from reading a response; a form on any site can still send a
    "simple" POST (text/plain, no preflight) that starts or cancels runs. Refuse those."""
    if not origin_allowed(connection):
        origin = connection.headers["origin"]
        raise PermissionDeniedException(
            f"origin {origin} may not call this server; start it with --cors-origin {origin} to allow it"
        )
