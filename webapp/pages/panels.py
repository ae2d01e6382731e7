"""Custom dashboard tabs (/tabs, /tabs/{name}) and the panels saved from the SQL page.

A tab's page runs each of its panels' SQL through the guard, every time it is shown, with the
``$name`` inputs the page shows bound as parameters. Stored panels are edited and deleted from
their tab; with --token, creating, editing, deleting and importing need it (the pages'
forms pass it through /login's cookie). Live panels re-run over one SSE stream per tab.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.channels import ChannelsPlugin
from litestar.datastructures import UploadFile
from litestar.exceptions import NotFoundException
from litestar.plugins.htmx import ClientRedirect, HTMXRequest
from litestar.response import Redirect, ServerSentEvent, Template
from litestar.response.sse import ServerSentEventMessage
from litestar.status_codes import HTTP_400_BAD_REQUEST

from storage import panels as panel_rows
from webapp.api.dependencies import require_token, token_accepted
from webapp.live import RUNS_CHANNEL
from webapp.pages.rendering import (
    PAGE_EXCEPTION_HANDLERS,
    VARY,
    error_page,
    render,
    render_to_string,
    wants_fragment,
)
from webapp.panels.live import live_panel_updates
from webapp.panels.model import (
    CHART_FIELDS,
    CHART_HELP,
    CHART_KINDS,
    MAX_PANELS_PER_TAB,
    MIN_REFRESH_S,
    REQUIRED_COLUMNS,
    Panel,
    Tab,
    describe_validation,
    query_parameters,
    tab_slug,
)
from webapp.panels.render import (
    QUERY_ERRORS,
    PanelOutcome,
    bind_values,
    column_kind,
    panel_key,
    refusal_text,
    run_panel,
    run_query,
)
from webapp.panels.sources import (
    PanelCatalog,
    TabFileError,
    TabIndex,
    TabNotFound,
    tab_toml,
    tabs_from_upload,
)
from webapp.wiring.services import Services

log = logging.getLogger(__name__)

CATALOG_STATE_KEY = "panel_catalog"
MAX_UPLOAD_BYTES = 1_000_000


class InvalidPanel(Exception):
    """A panel form that cannot be saved: the field to blame and why."""

    def __init__(self, field: str | None, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(reason)


def panel_catalog(request: Request) -> PanelCatalog:
    """The server's tabs, made on first use from its database and --panels-dir."""
    state = request.app.state
    catalog = state.get(CATALOG_STATE_KEY)
    if catalog is None:
        services: Services = state.services
        catalog = state.setdefault(CATALOG_STATE_KEY, PanelCatalog(services.db, services.settings.panels_dir))
    return catalog


def navigation_tabs(context: Mapping[str, Any]) -> TabIndex:
    """For base.html (a template global): the tabs the navigation shows, after the built-in pages."""
    request = context.get("request")
    try:
        return panel_catalog(request).listing()
    except Exception:  # noqa: BLE001  a page without an app (or before start-up) shows no custom tabs
        return TabIndex()


def guess_chart(columns: list[str], rows: list[list]) -> dict[str, str]:
    """The save form's first choice of chart for a result: bars of the first number column per
    the first text column (coloured by a second), a line of two number columns, else a table."""
    kinds = {name: column_kind([row[index] for row in rows]) for index, name in enumerate(columns)}
    texts = [name for name in columns if kinds[name] == "text" and not name.endswith("_id")]
    numbers = sorted(
        (name for name in columns if kinds[name] in ("number", "integer") and not name.endswith("_id")),
        key=lambda name: kinds[name] != "number",
    )
    if texts and numbers:
        return {"chart": "bar", "x": texts[0], "y": numbers[0], "color": texts[1] if len(texts) > 1 else ""}
    if len(numbers) >= 2:
        return {"chart": "line", "x": numbers[-1], "y": numbers[0]}
    return {"chart": "table"}


def save_form_options(context: Mapping[str, Any]) -> dict:
    """For partials/panel_save.html (a template global): the columns to pick from, the chart
    picked so far (the form sent back, else a guess from the SQL page's result), stored tabs."""
    request = context.get("request")
    result = context.get("result")
    columns = list(context.get("columns") or (result.columns if result is not None else []))
    chosen = context.get("form") or (guess_chart(result.columns, result.rows) if result is not None else {})
    try:
        services = request.app.state.services
        tabs = [tab.label for tab in panel_catalog(request).listing().tabs if tab.editable]
        can_edit = token_accepted(request, services.settings.token)
    except Exception:  # noqa: BLE001  rendered outside a running app
        tabs, can_edit = [], True
    return {
        "columns": columns,
        "chosen": chosen,
        "tabs": tabs,
        "can_edit": can_edit,
        "chart_kinds": CHART_KINDS,
        "chart_help": CHART_HELP,
        "min_refresh_s": MIN_REFRESH_S,
    }


def register_template_globals(engine) -> None:
    """A TemplateConfig engine_callback: ``dashboard_tabs()`` and ``panel_save_form()`` in every template."""
    engine.register_template_callable("dashboard_tabs", navigation_tabs)
    engine.register_template_callable("panel_save_form", save_form_options)


# ---- running a tab ----------------------------------------------------------------------------


def tab_values(tab: Tab, query: Mapping[str, str]) -> dict[str, str]:
    """The tab's $parameter inputs: what the request says, else the panels' defaults."""
    return {name: query.get(name, default) for name, default in tab.parameters().items()}


async def run_tab_panel(services: Services, panel: Panel, key: str, values: dict[str, str]) -> PanelOutcome:
    settings = services.settings
    return await run_panel(
        services.db, panel, key, values, timeout_s=settings.sql_timeout_s, row_cap=settings.sql_row_cap
    )


async def run_tab(services: Services, tab: Tab, values: dict[str, str]) -> list[PanelOutcome]:
    # One after another: the SQL pool has two slots, and a tab may have many panels.
    return [
        await run_tab_panel(services, panel, panel_key(panel, position), values)
        for position, panel in enumerate(tab.panels)
    ]


def _events_url(tab: Tab, values: dict[str, str]) -> str:
    query = urlencode(values)
    return f"/tabs/{tab.name}/events" + (f"?{query}" if query else "")


def _tab_context(
    request: Request, services: Services, tab: Tab, values: dict[str, str], outcomes: list[PanelOutcome]
) -> dict:
    return {
        "active": f"tab:{tab.name}",
        "tab": tab,
        "values": values,
        "query": urlencode(values),
        "outcomes": outcomes,
        "live": any(outcome.panel.live for outcome in outcomes),
        "events_url": _events_url(tab, values),
    } | _edit_context(request, services)


def _edit_context(request: Request, services: Services) -> dict:
    token = services.settings.token
    return {
        "can_edit": token_accepted(request, token),
        "token_set": bool(token),
        "chart_kinds": CHART_KINDS,
        "chart_help": CHART_HELP,
        "min_refresh_s": MIN_REFRESH_S,
    }


def _panel_context(request: Request, services: Services, tab: Tab, outcome: PanelOutcome, **extra) -> dict:
    return (
        {"tab": tab, "outcome": outcome, "query": urlencode(outcome_values(outcome))}
        | _edit_context(request, services)
        | extra
    )


def outcome_values(outcome: PanelOutcome) -> dict[str, str]:
    return {name: value or "" for name, value in outcome.params.items()}


def _find(tab: Tab, key: str) -> Panel | None:
    for position, panel in enumerate(tab.panels):
        if panel_key(panel, position) == key:
            return panel
    return None


# ---- the save and edit forms ------------------------------------------------------------------


def _text(form: Mapping, name: str) -> str:
    return (form.get(name) or "").strip()


def _parse_defaults(text: str, sql: str) -> dict[str, str]:
    """``name = value`` lines: the default values of the query's $parameters."""
    used = set(query_parameters(sql))
    defaults: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        name, equals, value = line.partition("=")
        name = name.strip().lstrip("$")
        if not equals or not name.isidentifier():
            raise InvalidPanel("params", f"line {number}: write each default as name = value")
        if name not in used:
            raise InvalidPanel("params", f"parameter ${name} is not used by the query")
        defaults[name] = value.strip()
    return defaults


def panel_from_form(form: Mapping, *, tab: str) -> Panel:
    """A Panel from a save or edit form; InvalidPanel names the field and the reason."""
    fields: dict[str, Any] = {
        "tab": tab,
        "title": _text(form, "title"),
        "sql": _text(form, "sql"),
        "chart": _text(form, "chart") or "table",
    }
    if not fields["title"]:
        raise InvalidPanel("title", "give the panel a title")
    if not fields["sql"]:
        raise InvalidPanel("sql", "a panel needs a query")
    if fields["chart"] not in CHART_KINDS:
        raise InvalidPanel("chart", f"must be one of {', '.join(CHART_KINDS)}, not {fields['chart']!r}")
    for name in CHART_FIELDS:
        if _text(form, name):
            fields[name] = _text(form, name)
    missing = [name for name in REQUIRED_COLUMNS[fields["chart"]] if name not in fields]
    if missing:
        raise InvalidPanel(
            missing[0],
            f"a {fields['chart']} chart needs the column {missing[0]}: pick one of the query's columns",
        )
    refresh = _text(form, "refresh_s")
    if refresh:
        try:
            fields["refresh_s"] = int(refresh)
        except ValueError:
            raise InvalidPanel("refresh_s", f"{refresh!r} is not a whole number of seconds") from None
    fields["params"] = _parse_defaults(form.get("params") or "", fields["sql"])
    try:
        return msgspec.convert(fields, Panel)
    except msgspec.ValidationError as error:
        field, reason = describe_validation(error)
        if field == "refresh_s":
            reason = f"live panels refresh every {MIN_REFRESH_S} to 86,400 seconds ({reason})"
        raise InvalidPanel(field, reason) from None


def check_panel(services: Services, panel: Panel) -> list[str]:
    """Run the panel's query once, guarded, with its defaults (empty ones as NULL): a query
    the guard refuses, or that fails, is not saved; nor a chart column the rows lack. Its columns."""
    settings = services.settings
    try:
        result = run_query(
            services.db,
            panel.sql,
            bind_values(panel, {}),
            timeout_s=settings.sql_timeout_s,
            row_cap=settings.sql_row_cap,
        )
    except QUERY_ERRORS as error:
        raise InvalidPanel("sql", f"{refusal_text(error)}. The panel was not saved.") from None
    for role, column in panel.columns.items():
        if column not in result.columns:
            raise InvalidPanel(
                role, f"the query has no column {column!r} (its columns: {', '.join(result.columns)})"
            )
    return result.columns


def _stored_tab_title(catalog: PanelCatalog, title: str) -> str:
    """The title to store a new panel under: an existing stored tab's own spelling of it.
    Refused when the name is a folder or entry point tab's, which cannot be edited here."""
    name = tab_slug(title)
    if not title or not name:
        raise InvalidPanel("tab", "name the tab with at least one letter or digit")
    if len(title) > 100:
        raise InvalidPanel("tab", "a tab name has at most 100 characters")
    try:
        tab = catalog.tab(name)
    except TabNotFound:
        return title
    if not tab.editable:
        raise InvalidPanel(
            "tab",
            f"the tab {tab.label!r} comes from {tab.origin} and cannot be changed here: "
            "pick another tab name",
        )
    if len(tab.panels) >= MAX_PANELS_PER_TAB:
        raise InvalidPanel("tab", f"the tab {tab.label!r} already has {MAX_PANELS_PER_TAB} panels")
    return tab.panels[0].tab if tab.panels else title


def _form_dict(form) -> dict[str, str]:
    return {key: value for key, value in form.items() if isinstance(value, str)}


def _columns(form: Mapping) -> list[str]:
    try:
        columns = msgspec.json.decode((form.get("columns") or "[]").encode(), type=list[str])
    except msgspec.DecodeError:
        return []
    return columns[:500]


class PanelPages(Controller):
    exception_handlers = {**PAGE_EXCEPTION_HANDLERS}
    include_in_schema = False

    # ---- the tab list ---------------------------------------------------------------------

    @get("/tabs", name="tabs", sync_to_thread=True)
    def tabs(self, request: HTMXRequest, services: Services) -> Template:
        """Every custom tab, the files and entry points that could not be loaded, and import."""
        index = panel_catalog(request).index()
        context = {"active": "tabs", "index": index, "panels_dir": services.settings.panels_dir}
        return Template(
            template_name="pages/tabs.html", context=context | _edit_context(request, services), headers=VARY
        )

    @post("/tabs/import", name="import-tabs", status_code=200, guards=[require_token])
    async def import_tabs(self, request: HTMXRequest, services: Services) -> Template | Redirect:
        """Panels files (the folder's TOML or YAML format) stored as tabs; each replaces the
        stored tab of its name. A folder or entry point tab's name is refused."""
        form = await request.form()
        catalog = panel_catalog(request)
        uploads = [item for item in form.getall("files", []) if isinstance(item, UploadFile)]
        try:
            files = []
            for upload in uploads:
                raw = await upload.read(MAX_UPLOAD_BYTES + 1)
                if len(raw) > MAX_UPLOAD_BYTES:
                    raise TabFileError(
                        f"{upload.filename}: a panels file may have at most {MAX_UPLOAD_BYTES:,} bytes"
                    )
                try:
                    files.append((upload.filename, raw.decode("utf-8")))
                except UnicodeDecodeError:
                    raise TabFileError(f"{upload.filename}: not UTF-8 text") from None
            if not files:
                raise TabFileError("choose one or more panels files (.toml, .yaml) to import")
            tabs = tabs_from_upload(files)
            imported = await anyio.to_thread.run_sync(_store_imported, services, catalog, tabs)
        except (TabFileError, InvalidPanel) as error:
            index = await anyio.to_thread.run_sync(catalog.index)
            context = {
                "active": "tabs",
                "index": index,
                "panels_dir": services.settings.panels_dir,
                "import_error": str(error),
            } | _edit_context(request, services)
            return Template(
                template_name="pages/tabs.html", context=context, status_code=HTTP_400_BAD_REQUEST
            )
        catalog.changed()
        log.info("imported %d tab(s): %s", len(imported), ", ".join(imported))
        return Redirect("/tabs?imported=" + ",".join(imported), status_code=303)

    # ---- one tab --------------------------------------------------------------------------

    @get("/tabs/{name:str}", name="tab")
    async def tab(self, request: HTMXRequest, services: Services, name: str) -> Template:
        """The tab's panels, each run now; the ``$name`` inputs come from the query string."""
        tab = await _tab(request, name)
        values = tab_values(tab, request.query_params)
        outcomes = await run_tab(services, tab, values)
        context = _tab_context(request, services, tab, values, outcomes)
        return render(request, "pages/tab.html", "partials/panel_grid.html", context)

    @get("/tabs/{name:str}/panels/{key:str}", name="tab-panel")
    async def panel(self, request: HTMXRequest, services: Services, name: str, key: str) -> Template:
        """One panel of the tab, run again (with the tab's inputs from the query string)."""
        tab = await _tab(request, name)
        panel = _find(tab, key)
        if panel is None:
            raise NotFoundException(f"the tab {tab.label!r} has no panel {key!r}")
        outcome = await run_tab_panel(services, panel, key, tab_values(tab, request.query_params))
        return Template(
            template_name="partials/panel.html", context=_panel_context(request, services, tab, outcome)
        )

    @get("/tabs/{name:str}/events", name="tab-events", guards=[require_token])
    async def events(
        self, request: HTMXRequest, services: Services, channels: ChannelsPlugin, name: str
    ) -> ServerSentEvent:
        """Server-sent HTML of the tab's live panels (event ``panel-<key>``) when results land,
        each at most once per its refresh interval."""
        tab = await _tab(request, name)
        values = tab_values(tab, request.query_params)
        refresh = {
            panel_key(panel, position): float(panel.refresh_s)
            for position, panel in enumerate(tab.panels)
            if panel.refresh_s
        }

        async def render_panel(key: str) -> str | None:
            try:
                current = await anyio.to_thread.run_sync(panel_catalog(request).tab, name)
            except TabNotFound:
                return None
            panel = _find(current, key)
            if panel is None:
                return None
            outcome = await run_tab_panel(services, panel, key, values)
            return render_to_string(
                request, "partials/panel.html", _panel_context(request, services, current, outcome)
            )

        async def messages() -> AsyncIterator[ServerSentEventMessage]:
            async with channels.start_subscription([RUNS_CHANNEL]) as subscriber:
                async for key, html in live_panel_updates(subscriber.iter_events(), refresh, render_panel):
                    yield ServerSentEventMessage(event=f"panel-{key}", data=html)

        return ServerSentEvent(messages())

    @get("/tabs/{name:str}/export.toml", name="export-tab", sync_to_thread=True)
    def export(self, request: HTMXRequest, name: str) -> Response:
        """The tab as a panels file (the folder's format): import it on another server, or
        keep it in version control and serve it from a --panels-dir."""
        tab = panel_catalog(request).tab(name)
        if any(panel.render is not None for panel in tab.panels):
            raise NotFoundException(
                f"the tab {tab.label!r} draws charts with Python code, which a file cannot hold"
            )
        return Response(
            tab_toml(tab),
            media_type="application/toml; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{tab.name}.toml"'},
        )

    # ---- stored panels: save, edit, delete ----------------------------------------------

    @post("/panels", name="save-panel", status_code=200, guards=[require_token])
    async def save(self, request: HTMXRequest, services: Services) -> Template | Redirect | ClientRedirect:
        """ "Save as panel" on the SQL page: the query that ran and the chart picked for it, on a
        tab (new or stored). A query the guard refuses is not saved."""
        form = await request.form()
        catalog = panel_catalog(request)
        tab_title = " ".join(_text(form, "tab").split())
        try:
            panel = panel_from_form(
                form, tab=await anyio.to_thread.run_sync(_stored_tab_title, catalog, tab_title)
            )
            await anyio.to_thread.run_sync(check_panel, services, panel)
            await anyio.to_thread.run_sync(panel_rows.add_panel, services.db, panel)
        except InvalidPanel as error:
            context = {
                "sql": _text(form, "sql"),
                "columns": _columns(form),
                "form": _form_dict(form),
                "error": error.reason,
                "error_field": error.field,
            } | _edit_context(request, services)
            if wants_fragment(request):
                return Template(
                    template_name="partials/panel_save.html",
                    context=context,
                    status_code=HTTP_400_BAD_REQUEST,
                )
            return error_page(
                request,
                HTTP_400_BAD_REQUEST,
                "The panel was not saved",
                f"{error.field or 'panel'}: {error.reason}",
            )
        catalog.changed()
        url = f"/tabs/{tab_slug(panel.tab)}"
        return ClientRedirect(url) if wants_fragment(request) else Redirect(url, status_code=303)

    @post("/panels/{panel_id:int}", name="edit-panel", status_code=200, guards=[require_token])
    async def edit(
        self, request: HTMXRequest, services: Services, panel_id: int
    ) -> Template | Redirect | ClientRedirect:
        """A stored panel's new title, SQL, chart, defaults and refresh; run again and shown."""
        form = await request.form()
        stored = await anyio.to_thread.run_sync(panel_rows.get_panel, services.db, panel_id, Panel)
        if stored is None:
            raise NotFoundException(f"there is no stored panel {panel_id}")
        catalog = panel_catalog(request)
        values = dict(parse_qsl(form.get("values") or ""))
        key = panel_key(stored, 0)
        try:
            panel = panel_from_form(form, tab=stored.tab)
            await anyio.to_thread.run_sync(check_panel, services, panel)
            await anyio.to_thread.run_sync(panel_rows.update_panel, services.db, panel_id, panel)
        except InvalidPanel as error:
            tab = await _tab(request, tab_slug(stored.tab))
            outcome = await run_tab_panel(services, stored, key, values)
            context = _panel_context(
                request,
                services,
                tab,
                outcome,
                form=_form_dict(form),
                error=error.reason,
                error_field=error.field,
            )
            if wants_fragment(request):
                return Template(
                    template_name="partials/panel.html", context=context, status_code=HTTP_400_BAD_REQUEST
                )
            return error_page(
                request,
                HTTP_400_BAD_REQUEST,
                "The panel was not changed",
                f"{error.field or 'panel'}: {error.reason}",
            )
        catalog.changed()
        url = f"/tabs/{tab_slug(stored.tab)}" + (f"?{urlencode(values)}" if values else "")
        if not wants_fragment(request):
            return Redirect(url, status_code=303)
        if query_parameters(panel.sql) != query_parameters(stored.sql):
            return ClientRedirect(url)  # the tab's $name inputs change: show the whole tab again
        tab = await _tab(request, tab_slug(stored.tab))
        panel = _find(tab, key) or panel
        outcome = await run_tab_panel(services, panel, key, values)
        return Template(
            template_name="partials/panel.html", context=_panel_context(request, services, tab, outcome)
        )

    @post("/panels/{panel_id:int}/delete", name="delete-panel", status_code=200, guards=[require_token])
    async def delete(
        self, request: HTMXRequest, services: Services, panel_id: int
    ) -> Response | Redirect | ClientRedirect:
        stored = await anyio.to_thread.run_sync(panel_rows.get_panel, services.db, panel_id, Panel)
        if stored is None:
            raise NotFoundException(f"there is no stored panel {panel_id}")
        await anyio.to_thread.run_sync(panel_rows.delete_panel, services.db, panel_id)
        catalog = panel_catalog(request)
        catalog.changed()
        name = tab_slug(stored.tab)
        try:
            remaining = len((await anyio.to_thread.run_sync(catalog.tab, name)).panels)
        except TabNotFound:
            remaining = 0
        url = f"/tabs/{name}" if remaining else "/tabs"
        if wants_fragment(request):
            # The panel's slot empties; the tab's last panel takes the tab with it.
            return Response("", media_type="text/html") if remaining else ClientRedirect(url)
        return Redirect(url, status_code=303)


def _store_imported(services: Services, catalog: PanelCatalog, tabs: list[Tab]) -> list[str]:
    """Store each imported tab, replacing the stored tab of its name; its queries checked first."""
    index = catalog.index()
    stored_titles = panel_rows.tab_titles(services.db)
    for tab in tabs:
        existing = next((found for found in index.tabs if found.name == tab.name), None)
        if existing is not None and not existing.editable:
            raise InvalidPanel(
                "files", f"the tab {tab.name!r} comes from {existing.origin}: rename the imported tab"
            )
        for panel in tab.panels:
            try:
                check_panel(services, panel)
            except InvalidPanel as error:
                raise InvalidPanel("files", f"{tab.origin}: panel {panel.title!r}: {error.reason}") from None
    for tab in tabs:
        same = [title for title in stored_titles if tab_slug(title) == tab.name]
        panels = [msgspec.structs.replace(panel, tab=tab.label) for panel in tab.panels]
        panel_rows.replace_tab(services.db, [*same, tab.label], panels)
    return [tab.name for tab in tabs]


async def _tab(request: Request, name: str) -> Tab:
    try:
        return await anyio.to_thread.run_sync(panel_catalog(request).tab, name)
    except TabNotFound as error:
        raise NotFoundException(str(error)) from None
