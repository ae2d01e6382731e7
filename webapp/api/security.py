"""What every request passes before a handler runs: the Host allowlist, the API's token,
known query parameters, JSON-only bodies, and ``Access-Control-Allow-Origin: null`` only with the token.

- A page on a name that resolves to this machine (DNS rebinding) sends its own name as
  Host, and as Origin, so the origin check alone cannot stop it; the Host allowlist does.
- ``Origin: null`` comes from file:// pages (Electron) and from sandboxed iframes on any
  site alike, so it is reflected only to a request that presents the token.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import NamedTuple

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.enums import RequestEncodingType
from litestar.exceptions import ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.allowed_hosts import AllowedHostsMiddleware
from litestar.params import BodyKwarg
from litestar.response.base import ASGIResponse
from litestar.status_codes import HTTP_400_BAD_REQUEST
from litestar.types import Message, Receive, Scope, Send

from engine.errors import InvalidRequestError
from webapp.api.dependencies import check_token, token_accepted
from webapp.errors import ErrorBody, UnsupportedMediaType

API_PREFIX = "/api/"
WS_POLICY_VIOLATION = 1008


def host_name(header: str) -> str:
    """The name in a Host header, without its port: "localhost:8000" → "localhost", "[::1]:8000" → "::1"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.partition(":")[0]


class HostAllowlist(AllowedHostsMiddleware):
    """Litestar's allowed-hosts check (``AllowedHostsConfig``), matched on the host name alone.

    Litestar 2.22 and later match the whole header, port included, so ``Host: localhost:8000``
    fails an allowlist of ``localhost`` (litestar-org/litestar#4869). A refused HTTP request
    gets the API's error body; a refused WebSocket handshake is closed (1008)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        header = Headers.from_scope(scope).get("host", "")
        name = host_name(header)
        if self.allowed_hosts_regex is None or (name and self.allowed_hosts_regex.fullmatch(name)):
            await self.app(scope, receive, send)
            return
        reason = (f"this server does not answer to the host name {name!r}; start it with --allowed-host {name} "
                  "if clients reach it by that name" if name else "the request has no Host header")
        if scope["type"] == "websocket":
            # Accepted, then closed: a close before the accept reaches a real client as a bare
            # HTTP 403 (webapp.live.refuse). Nothing is sent in between.
            await receive()  # the client's websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION, "reason": "host not allowed"})
            return
        body = msgspec.json.encode(ErrorBody(error="invalid host", reason=reason, field="Host"))
        await ASGIResponse(body=body, status_code=HTTP_400_BAD_REQUEST, media_type="application/json")(
            scope, receive, send
        )


async def require_token_on_api(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """An app-wide guard: with a token set, everything under /api/ needs it, reads included.
    The run WebSocket checks it itself (webapp.live), to close the handshake with a reason."""
    if connection.scope["type"] == "http" and connection.url.path.startswith(API_PREFIX):
        check_token(connection)


def _json_body_type(request: Request) -> type | None:
    """The type of the handler's JSON body (its ``data`` parameter); None for a handler that takes none."""
    parameter = request.route_handler.parsed_fn_signature.parameters.get("data")
    if parameter is None:
        return None
    kwarg = parameter.kwarg_definition
    if isinstance(kwarg, BodyKwarg) and kwarg.media_type != RequestEncodingType.JSON:
        return None
    return parameter.annotation


class DeclaredQuery(NamedTuple):
    """The query parameters a route handler declares, as Litestar reads them."""

    names: tuple[str, ...]  # sorted
    sequences: frozenset[str]  # list-typed: these may repeat
    takes_any: bool  # the handler takes the whole query mapping (the reserved ``query`` kwarg)


_DECLARED_QUERY = "declared_query_parameters"  # app.state's key: {id(handler): DeclaredQuery}


def _declared_query_index(app) -> dict[int, DeclaredQuery]:
    """Each HTTP handler's query parameters, from the KwargsModel Litestar built for its route
    at start-up (the same model that reads the query, dependencies' parameters and layered
    ``parameters`` included), so the check cannot drift from what a handler takes."""
    index = app.state.get(_DECLARED_QUERY)
    if index is None:
        index = {}
        for route in app.routes:
            for handler, kwargs_model in getattr(route, "route_handler_map", {}).values():
                if not hasattr(kwargs_model, "expected_query_params"):  # an HTTP route's KwargsModel
                    continue
                index[id(handler)] = DeclaredQuery(
                    names=tuple(sorted({p.field_alias for p in kwargs_model.expected_query_params})),
                    sequences=frozenset(kwargs_model.sequence_query_parameter_names),
                    takes_any="query" in kwargs_model.expected_reserved_kwargs,
                )
        app.state[_DECLARED_QUERY] = index
    return index


def known_query_parameters_only(request: Request) -> None:
    """An API route answers 400 naming the parameter for a query parameter it does not take
    (``?modle=bert`` would otherwise return every result, unfiltered) and for a repeated one that
    it takes as a single value (Litestar would keep the last). List-typed parameters may repeat.

    Only under /api/: pages read extra parameters themselves (custom tabs' inputs) and htmx adds
    its own. WebSockets never reach a before-request hook."""
    if not request.url.path.startswith(API_PREFIX) or request.method == "OPTIONS":
        return
    given = Counter(name for name, _ in request.query_params.multi_items())
    if not given:
        return
    declared = _declared_query_index(request.app).get(id(request.route_handler))
    if declared is None or declared.takes_any:
        return
    for name, count in given.items():
        if name not in declared.names:
            takes = f"takes: {', '.join(declared.names)}" if declared.names else "takes no query parameters"
            raise InvalidRequestError(name, f"unknown query parameter; this route {takes}")
        if count > 1 and name not in declared.sequences:
            raise InvalidRequestError(name, f"given {count} times; this parameter takes one value")


async def checked_requests(request: Request) -> None:
    """The app's before-request hook: the query parameters, then a JSON body (the one place both run)."""
    known_query_parameters_only(request)
    await json_bodies_only(request)


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


async def json_bodies_only(request: Request) -> None:
    """A before-request hook: a handler that takes a JSON body gets one, or the client a 4xx
    naming what is wrong: 415 for another Content-Type (a text/plain form post included),
    400 for an empty body, malformed JSON, one nested too deep to decode (a RecursionError
    otherwise) or a value of the wrong JSON type.

    Litestar converts a body as it converts query strings, leniently (msgspec's
    ``strict=False``): ``"1e3"`` would become the batch size 1000 and ``"true"`` a flag. JSON
    has its own types, so the body is first decoded strictly as the handler's type, the way the
    CLI and the dashboard's form decode a run request; the handler then gets the same values."""
    body_type = _json_body_type(request)
    if body_type is None:
        return
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if not _is_json(media_type):
        raise UnsupportedMediaType(media_type)
    body = await request.body()
    if not body.strip():
        raise InvalidRequestError("body", "the request body is empty: send a JSON object")
    try:
        msgspec.json.decode(body, type=body_type)
    except RecursionError:  # a body type that takes any JSON (today's Structs refuse depth at once)
        raise InvalidRequestError(
            "body", f"the JSON is nested too deep (at most about {sys.getrecursionlimit()} levels)"
        ) from None
    except msgspec.ValidationError as error:
        raise ValidationException(detail=str(error), extra=[{"message": str(error), "source": "body"}]) from None
    except msgspec.DecodeError as error:
        raise InvalidRequestError("body", f"the body is not valid JSON: {error}") from None


def _preflight_announcing_token(headers: Headers, method: str) -> bool:
    """A CORS preflight for a request that will carry ``Authorization`` (checked when it comes)."""
    if method != "OPTIONS" or "access-control-request-method" not in headers:
        return False
    announced = headers.get("access-control-request-headers", "")
    return "authorization" in {name.strip().lower() for name in announced.split(",")}


def null_origin_only_with_token(token: str | None):
    """A before-send hook: ``Access-Control-Allow-Origin: null`` goes only to a request that
    presents ``token``, or to a preflight announcing that it will (a file:// page's). Without a
    token configured, never."""

    async def before_send(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        headers = MutableScopeHeaders.from_message(message)
        if headers.get("access-control-allow-origin") != "null":
            return
        connection = ASGIConnection(scope)
        if token and (token_accepted(connection, token)
                      or _preflight_announcing_token(connection.headers, scope.get("method", ""))):
            return
        del headers["access-control-allow-origin"]

    return before_send
