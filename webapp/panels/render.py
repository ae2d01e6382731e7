"""Running a panel and drawing it: its SQL through the same guard and limits as the SQL page,
every time, then its rows as an Altair chart (a Vega-Lite spec the vendored vega-embed draws).

A refused, failed or timed-out query is an outcome too: the panel shows why, the way the SQL
page does. A chart whose columns the rows do not have falls back to the table, saying which.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

import altair as alt
import anyio.to_thread
import msgspec
import pandas as pd

from storage.database import Database
from storage.schema import ALLOWED_QUERY_TABLES
from storage.sql_guard import (
    QueryFailed,
    QueryRefused,
    QueryResult,
    QueryTimeout,
    SqlBusy,
    numbers_for_charts,
    run_guarded_query,
    run_guarded_query_async,
)
from storage.timestamps import utc_now
from webapp.panels.model import Panel, query_parameters

log = logging.getLogger(__name__)

DATASET = "rows"
NUMBER_FORMAT = ",.4~g"
CHART_HEIGHT = 280
FACET_WIDTH = 260
MAX_FACETS = 24
MAX_TOOLTIP_COLUMNS = 12
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?)?$")


class PanelOutcome(msgspec.Struct, kw_only=True):
    """One run of one panel: its rows (or why there are none) and its chart (or why not)."""

    panel: Panel
    key: str  # its name on the tab's page: p<panel_id> for a stored panel, n<position> otherwise
    params: dict[str, str | None]  # what its $parameters were bound to (None: empty, bound as NULL)
    ran_at: datetime
    result: QueryResult | None = None
    refusal: str | None = None  # why the query did not run, as the SQL page says it
    spec: dict | None = None
    chart_problem: str | None = None  # why the chart is not drawn although rows came

    @property
    def ran(self) -> bool:
        return self.result is not None


def panel_key(panel: Panel, position: int) -> str:
    """A panel's name on its tab's page, kept while other panels are added or deleted."""
    return f"p{panel.panel_id}" if panel.panel_id is not None else f"n{position}"


def bind_values(panel: Panel, values: dict[str, str]) -> dict[str, str | None]:
    """The panel's $parameters bound from the tab's inputs, else its defaults; empty is NULL."""
    bound: dict[str, str | None] = {}
    for name in query_parameters(panel.sql):
        value = values.get(name)
        if value is None:
            value = panel.params.get(name, "")
        bound[name] = value if value != "" else None
    return bound


def refusal_text(error: Exception) -> str:
    """What the page says about a query that did not run (the SQL page's wording)."""
    if isinstance(error, QueryRefused):
        return f"Refused: {error.reason}"
    if isinstance(error, QueryTimeout):
        return f"Stopped: {error.reason}"
    if isinstance(error, QueryFailed):
        return f"DuckDB could not run it: {error.reason}"
    if isinstance(error, SqlBusy):
        return f"Busy: {error.reason}"
    raise error


QUERY_ERRORS = (QueryRefused, QueryTimeout, QueryFailed, SqlBusy)


def run_query(
    db: Database, sql: str, params: dict[str, Any], *, timeout_s: float, row_cap: int
) -> QueryResult:
    """One guarded run, from a thread (the save and edit forms check a query this way)."""
    return run_guarded_query(
        db, sql, allowed_tables=ALLOWED_QUERY_TABLES, params=params, timeout_s=timeout_s, row_cap=row_cap
    )


async def run_panel(
    db: Database, panel: Panel, key: str, values: dict[str, str], *, timeout_s: float, row_cap: int
) -> PanelOutcome:
    """Run ``panel``'s query now, guarded, with its parameters bound from ``values``."""
    params = bind_values(panel, values)
    outcome = PanelOutcome(panel=panel, key=key, params=params, ran_at=utc_now())
    try:
        outcome.result = await run_guarded_query_async(
            db,
            panel.sql,
            allowed_tables=ALLOWED_QUERY_TABLES,
            params=params,
            timeout_s=timeout_s,
            row_cap=row_cap,
        )
    except QUERY_ERRORS as error:
        outcome.refusal = refusal_text(error)
        return outcome
    # Altair validates as it builds (milliseconds), and an entry point's function may take longer.
    outcome.spec, outcome.chart_problem = await anyio.to_thread.run_sync(chart_spec, panel, outcome.result)
    return outcome


# ---- charts -------------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def column_kind(values: list) -> str:
    """ "integer", "number", "time", "text" or "empty", from a result column's values."""
    present = [value for value in values if value is not None]
    if not present:
        return "empty"
    if all(isinstance(value, int) and not isinstance(value, bool) for value in present):
        return "integer"
    if all(_is_number(value) for value in present):
        return "number"
    if all(isinstance(value, str) and _ISO_TIME.match(value) for value in present):
        return "time"
    return "text"


def _field(name: str) -> str:
    """A column name as a Vega-Lite field: dots and brackets would mean nested access."""
    return re.sub(r"([.\[\]\\])", r"\\\1", name)


def _discrete(kind: str) -> str:
    return "ordinal" if kind in ("integer", "time") else "nominal"


def _continuous(kind: str) -> str:
    return {"integer": "quantitative", "number": "quantitative", "time": "temporal"}.get(kind, "ordinal")


def _tooltip_type(kind: str) -> str:
    return {"integer": "quantitative", "number": "quantitative", "time": "temporal"}.get(kind, "nominal")


def _channel(channel: type, name: str, kind: str, **options) -> Any:
    return channel(field=_field(name), type=kind, title=name, **options)


def _whole_numbers(kind: str) -> dict:
    """An integer column (a batch size, say) gets whole-number ticks."""
    return {"axis": alt.Axis(format="d", tickMinStep=1)} if kind == "integer" else {}


def _records(result: QueryResult) -> list[dict]:
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def _styled(chart: alt.TopLevelMixin, faceted: bool) -> dict:
    if not faceted:
        chart = chart.properties(
            width="container", autosize=alt.AutoSizeParams(type="fit-x", contains="padding")
        )
    return (
        chart.configure_view(strokeWidth=0)
        .configure(font="system-ui, -apple-system, Segoe UI, Roboto, sans-serif")
        .configure_axis(labelFontSize=11, titleFontSize=12, labelLimit=180)
        .configure_legend(orient="bottom", direction="horizontal", titleOrient="top", labelLimit=160)
        .to_dict()
    )


def chart_spec(panel: Panel, result: QueryResult) -> tuple[dict | None, str | None]:
    """The Vega-Lite spec of ``panel``'s chart over ``result``, or None and why not (None, None
    for a table panel or no rows: nothing to explain)."""
    if not result.rows:
        return None, None
    # NaN and infinities, spelled as strings in an answer, are no bar or point, as NULL is.
    result = msgspec.structs.replace(result, rows=numbers_for_charts(result.rows))
    if panel.render is not None:
        return _custom_chart(panel, result)
    if panel.chart == "table":
        return None, None
    missing = [name for name in panel.columns.values() if name not in result.columns]
    if missing:
        return None, (
            f"the chart needs the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}, "
            f"which the query does not return (its columns: {', '.join(result.columns)})"
        )
    kinds = {
        name: column_kind([row[index] for row in result.rows]) for index, name in enumerate(result.columns)
    }
    numeric = {"bar": ("y",), "line": ("y",), "scatter": ("y",), "heatmap": ("color",), "box": ("y",)}[
        panel.chart
    ]
    for role in numeric:
        name = getattr(panel, role)
        if kinds[name] not in ("integer", "number", "empty"):
            return None, f"the chart's {role} column {name} holds {kinds[name]}, not numbers"
    if panel.facet and len({row[result.columns.index(panel.facet)] for row in result.rows}) > MAX_FACETS:
        return (
            None,
            f"the facet column {panel.facet} has more than {MAX_FACETS} values: too many small charts",
        )
    try:
        chart = _build(panel, kinds)
    except Exception as error:  # noqa: BLE001  Altair's schema validation: say why, show the table
        return None, f"the chart could not be built: {error}"
    faceted = panel.facet is not None
    if faceted:
        chart = chart.properties(width=FACET_WIDTH).facet(
            facet=_channel(alt.Facet, panel.facet, _discrete(kinds[panel.facet])), columns=3
        )
    spec = _styled(chart, faceted)
    spec["datasets"] = {DATASET: _records(result)}
    spec["description"] = panel.title
    return spec, None


def _build(panel: Panel, kinds: dict[str, str]) -> alt.Chart:
    x, y, color = panel.x, panel.y, panel.color
    # Every column the rows have (the chart's first): a point says what it stands for, n included.
    shown = list(dict.fromkeys([*panel.columns.values(), *kinds]))[:MAX_TOOLTIP_COLUMNS]
    tooltip = [
        _channel(
            alt.Tooltip,
            name,
            _tooltip_type(kinds[name]),
            **({"format": NUMBER_FORMAT} if kinds[name] == "number" else {}),
        )
        for name in shown
    ]
    base = alt.Chart(alt.NamedData(name=DATASET)).properties(height=CHART_HEIGHT)
    encoding: dict[str, Any] = {"tooltip": tooltip}
    if panel.chart == "bar":
        x_kind = "quantitative" if kinds[x] == "number" else _discrete(kinds[x])
        encoding["x"] = _channel(alt.X, x, x_kind, axis=alt.Axis(labelAngle=-30, labelLimit=140))
        encoding["y"] = _channel(alt.Y, y, "quantitative", axis=alt.Axis(format=NUMBER_FORMAT))
        if color:
            encoding["color"] = _channel(alt.Color, color, _discrete(kinds[color]))
            if x_kind != "quantitative":
                encoding["xOffset"] = _channel(alt.XOffset, color, _discrete(kinds[color]))
        return base.mark_bar().encode(**encoding)
    if panel.chart == "line":
        encoding["x"] = _channel(alt.X, x, _continuous(kinds[x]), **_whole_numbers(kinds[x]))
        encoding["y"] = _channel(alt.Y, y, "quantitative", axis=alt.Axis(format=NUMBER_FORMAT))
        if color:
            encoding["color"] = _channel(alt.Color, color, _discrete(kinds[color]))
        return base.mark_line(point=True).encode(**encoding)
    if panel.chart == "scatter":
        encoding["x"] = _channel(
            alt.X, x, _continuous(kinds[x]), scale=alt.Scale(zero=False), **_whole_numbers(kinds[x])
        )
        encoding["y"] = _channel(
            alt.Y, y, "quantitative", scale=alt.Scale(zero=False), axis=alt.Axis(format=NUMBER_FORMAT)
        )
        if color:
            color_kind = "quantitative" if kinds[color] in ("integer", "number") else "nominal"
            encoding["color"] = _channel(alt.Color, color, color_kind)
        return base.mark_point(filled=True, size=60).encode(**encoding)
    if panel.chart == "heatmap":
        encoding["x"] = _channel(alt.X, x, _discrete(kinds[x]), axis=alt.Axis(labelAngle=-30))
        encoding["y"] = _channel(alt.Y, y, _discrete(kinds[y]))
        encoding["color"] = _channel(
            alt.Color,
            color,
            "quantitative",
            scale=alt.Scale(scheme="blues"),
            legend=alt.Legend(format=NUMBER_FORMAT),
        )
        return base.mark_rect().encode(**encoding)
    # box: the distribution of y, per x when there is one.
    encoding.pop("tooltip")
    encoding["y"] = _channel(
        alt.Y, y, "quantitative", scale=alt.Scale(zero=False), axis=alt.Axis(format=NUMBER_FORMAT)
    )
    if x:
        encoding["x"] = _channel(alt.X, x, _discrete(kinds[x]), axis=alt.Axis(labelAngle=-30))
    if color:
        encoding["color"] = _channel(alt.Color, color, _discrete(kinds[color]))
    return base.mark_boxplot(extent="min-max").encode(**encoding)


def _custom_chart(panel: Panel, result: QueryResult) -> tuple[dict | None, str | None]:
    """An entry point's own chart: its function gets the rows as a DataFrame, returns Altair."""
    frame = pd.DataFrame(result.rows, columns=result.columns)
    try:
        chart = panel.render(frame)
        spec = chart.to_dict()
    except Exception as error:  # noqa: BLE001  plugin code may fail in any way; show the table and why
        log.warning("the chart function of panel %r (tab %s) failed: %s", panel.title, panel.tab, error)
        return None, f"the panel's chart function failed: {type(error).__name__}: {error}"
    spec.setdefault("description", panel.title)
    return spec, None
