"""What every page shares: full page or HTMX fragment, filter parsing, HTML error pages."""

from __future__ import annotations

from litestar import Request
from litestar.exceptions import NotFoundException
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_404_NOT_FOUND

from engine.config import PRECISIONS, SCENARIOS
from engine.errors import UnknownRunError
from storage.dashboard import Filters, InvalidFilter

# The same URL answers with a full page or a fragment, so caches must key on HX-Request.
VARY = {"Vary": "HX-Request"}


def wants_fragment(request: HTMXRequest) -> bool:
    """An htmx swap asks for a fragment; a history restore after a cache miss needs the whole page."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def render(
    request: HTMXRequest,
    page: str,
    fragment: str,
    context: dict,
    *,
    status_code: int = 200,
) -> Template:
    """The full ``page`` normally, just ``fragment`` for htmx; both get the same ``context``."""
    template = fragment if wants_fragment(request) else page
    return Template(template_name=template, context=context, status_code=status_code, headers=VARY)


def render_to_string(request: HTMXRequest, template: str, context: dict) -> str:
    """A partial as HTML, for responses that are not templates (server-sent events)."""
    return request.app.template_engine.get_template(template).render(**context, request=request)


def optional_text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def optional_int(name: str, value: str | None, *, minimum: int = 1) -> int | None:
    """A whole number from a query string, refused by field name when it is not one."""
    value = optional_text(value)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise InvalidFilter(name, f"{value!r} is not a whole number") from None
    if number < minimum:
        raise InvalidFilter(name, f"must be at least {minimum}")
    return number


RUN_SCOPES = {"latest": "Latest result per config", "all": "Every run's results"}


def optional_choice(name: str, value: str | None, choices: tuple[str, ...]) -> str | None:
    """One of the fixed ``choices``, refused by field name otherwise: a value no result can
    have (precision fp64) is a mistake to say, not a filter that matches nothing."""
    value = optional_text(value)
    if value is not None and value not in choices:
        raise InvalidFilter(name, f"must be one of {', '.join(choices)}, not {value!r}")
    return value


def provide_filters(
    family: str | None = None,
    model: str | None = None,
    hardware: str | None = None,
    batch_size: str | None = None,
    precision: str | None = None,
    sequence_length: str | None = None,
    scenario: str | None = None,
    run: str | None = None,
    runs: str | None = None,
) -> Filters:
    """The filter bar's query parameters, for every dashboard handler (``Provide``d).

    ``runs`` is ``latest`` (the default: the newest result of each config) or ``all``;
    ``run`` narrows to one run's results."""
    scope = optional_text(runs) or "latest"
    if scope not in RUN_SCOPES:
        raise InvalidFilter("runs", f"must be one of {', '.join(RUN_SCOPES)}, not {scope!r}")
    return Filters(
        family=optional_text(family),
        model=optional_text(model),
        hardware=optional_text(hardware),
        batch_size=optional_int("batch_size", batch_size),
        precision=optional_choice("precision", precision, PRECISIONS),
        sequence_length=optional_int("sequence_length", sequence_length),
        scenario=optional_choice("scenario", scenario, SCENARIOS),
        run_id=optional_text(run),
        latest_only=scope == "latest",
    )


def filter_state(filters: Filters) -> dict:
    """The filters as the query parameters that ask for them (what links keep)."""
    return {
        "family": filters.family, "model": filters.model, "hardware": filters.hardware,
        "batch_size": filters.batch_size, "precision": filters.precision,
        "sequence_length": filters.sequence_length, "scenario": filters.scenario, "run": filters.run_id,
        "runs": None if filters.latest_only else "all",
    }


def error_page(request: Request, status_code: int, title: str, message: str) -> Template:
    fragment = request.headers.get("hx-request") == "true"
    return Template(
        template_name="partials/error.html" if fragment else "pages/error.html",
        context={"title": title, "message": message, "status_code": status_code},
        status_code=status_code,
        headers=VARY,
    )


def bad_filter(request: Request, exc: InvalidFilter) -> Template:
    return error_page(request, HTTP_400_BAD_REQUEST, "That filter cannot be used", str(exc))


def not_found(request: Request, exc: UnknownRunError | NotFoundException) -> Template:
    message = str(exc) if isinstance(exc, UnknownRunError) else "There is no page at this address."
    return error_page(request, HTTP_404_NOT_FOUND, "Not found", message)


# Pages answer errors in HTML; the app-wide handlers answer the JSON API.
PAGE_EXCEPTION_HANDLERS = {
    InvalidFilter: bad_filter,
    UnknownRunError: not_found,
    NotFoundException: not_found,
}
