"""Dependencies and guards shared by the API controllers."""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from webapp.services import Services


def provide_services(state: State) -> Services:
    return state.services


def require_token(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """With a token configured, state-changing endpoints need ``Authorization: Bearer <token>``."""
    token = connection.app.state.services.settings.token
    if not token:
        return
    header = connection.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise NotAuthorizedException("this server needs the header 'Authorization: Bearer <token>' here")
