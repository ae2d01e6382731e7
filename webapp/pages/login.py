"""``/login?token=...``: lets a browser use the dashboard's forms on a server started with --token."""

from __future__ import annotations

import hmac

from litestar import Controller, Request, get
from litestar.datastructures import Cookie
from litestar.exceptions import NotAuthorizedException
from litestar.response import Redirect

from webapp.api.dependencies import TOKEN_COOKIE
from webapp.wiring.services import Services


class LoginPage(Controller):
    include_in_schema = False

    @get("/login", name="login")
    async def login(self, request: Request, services: Services, token: str = "") -> Redirect:
        expected = services.settings.token
        if not expected:
            return Redirect("/runs")
        if not hmac.compare_digest(token.encode(), expected.encode()):
            raise NotAuthorizedException("wrong token")
        # HttpOnly and SameSite=Strict: scripts cannot read it, other sites cannot send it.
        cookie = Cookie(key=TOKEN_COOKIE, value=token, httponly=True, samesite="strict", path="/")
        return Redirect("/runs", cookies=[cookie])
