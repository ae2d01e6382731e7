"""What a custom dashboard tab is made of: a **panel** is a guarded SQL query plus a chart, a
**tab** is a named page of panels. One pair of msgspec Structs serves the three sources alike
(panels stored in DuckDB, TOML/YAML files in the operator's panels folder, Python entry
points), the tab pages and the TOML export.

A ``Panel``'s data fields are the ``dashboard_panels`` columns (storage.panels writes them and
reads them back into this type). Nothing here touches a database: a panel's SQL runs only
when its tab is shown (webapp.panels.render), through the same guard as the SQL page.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import Meta
from sqlglot import exp, parse_one
from sqlglot.errors import SqlglotError

ChartKind = Literal["bar", "line", "scatter", "heatmap", "box", "table"]
CHART_KINDS: tuple[str, ...] = get_args(ChartKind)
PanelSource = Literal["stored", "folder", "entry_point"]

# Live panels re-run at most this often, however fast results land.
MIN_REFRESH_S = 5
MAX_REFRESH_S = 86_400
MAX_SQL_LENGTH = 100_000
MAX_PANELS_PER_TAB = 50

Column = Annotated[str, Meta(min_length=1, max_length=200)]
ParameterName = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]
ParameterValue = Annotated[str, Meta(max_length=1_000)]
RefreshSeconds = Annotated[int, Meta(ge=MIN_REFRESH_S, le=MAX_REFRESH_S)]
TabName = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]

# The columns each chart kind needs, and what each of x, y, colour and facet means for it.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "bar": ("x", "y"),
    "line": ("x", "y"),
    "scatter": ("x", "y"),
    "heatmap": ("x", "y", "color"),
    "box": ("y",),
    "table": (),
}
CHART_HELP = {
    "bar": "bars of y per x; colour splits each bar into side-by-side bars",
    "line": "one line of y against x per colour value",
    "scatter": "a point per row at (x, y), coloured by colour",
    "heatmap": "a grid of x by y, each cell coloured by the colour column's (number) value",
    "box": "the distribution of y per x (min, quartiles, median, max)",
    "table": "the rows as a table, no chart",
}
CHART_FIELDS = ("x", "y", "color", "facet")


class Panel(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """One guarded SQL query and how to draw its rows.

    ``params`` are the default values of the query's ``$name`` parameters; the tab shows an
    input for each. ``refresh_s`` makes the panel live: it runs again when results land,
    at most once per that many seconds. ``render`` is for Python entry points only: a
    function taking a pandas DataFrame of the query's rows and returning an Altair chart,
    used instead of ``chart``.
    """

    title: Annotated[str, Meta(min_length=1, max_length=200)]
    sql: Annotated[str, Meta(min_length=1, max_length=MAX_SQL_LENGTH)]
    chart: ChartKind = "table"
    x: Column | None = None
    y: Column | None = None
    color: Column | None = None
    facet: Column | None = None
    params: dict[ParameterName, ParameterValue] = {}
    refresh_s: RefreshSeconds | None = None
    # Where the panel lives: set by storage or by the loader, never by a file.
    panel_id: int | None = None
    tab: str = ""
    position: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    render: Any = None  # Callable[[pandas.DataFrame], altair chart]; entry points only

    def __post_init__(self) -> None:
        if not self.title.strip():
            raise ValueError("a panel needs a title")
        if not self.sql.strip():
            raise ValueError("a panel needs a SQL query")
        if self.render is not None and not callable(self.render):
            raise ValueError(
                "render must be a function of the rows' DataFrame (only an entry point can give one)"
            )
        if self.render is None:
            missing = [name for name in REQUIRED_COLUMNS[self.chart] if not getattr(self, name)]
            if missing:
                raise ValueError(
                    f"a {self.chart} chart needs the column{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(missing)}"
                )

    @property
    def columns(self) -> dict[str, str]:
        """The chart's columns by role (x, y, color, facet), those that are set."""
        return {name: getattr(self, name) for name in CHART_FIELDS if getattr(self, name)}

    @property
    def live(self) -> bool:
        return self.refresh_s is not None


class Tab(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A named page of panels: what a panels file holds (one tab per file), what an entry
    point returns, and what ``/tabs/{name}`` shows.

    In a file, ``name`` defaults to the file's name without its extension and ``title`` to
    ``name``; ``source`` and ``origin`` are set by the loader.
    """

    panels: Annotated[list[Panel], Meta(max_length=MAX_PANELS_PER_TAB)]
    name: TabName | None = None
    title: Annotated[str, Meta(min_length=1, max_length=100)] | None = None
    description: Annotated[str, Meta(max_length=2_000)] | None = None
    source: PanelSource = "folder"
    origin: str = ""  # the file, the entry point, or "stored"

    @property
    def label(self) -> str:
        return self.title or self.name or "untitled"

    @property
    def location(self) -> str:
        """Where the tab comes from, briefly: a file's name, an entry point, or "saved here"."""
        if self.source == "folder":
            return self.origin.replace("\\", "/").rsplit("/", 1)[-1]
        return "saved on this server" if self.source == "stored" else self.origin

    @property
    def editable(self) -> bool:
        return self.source == "stored"

    def parameters(self) -> dict[str, str]:
        """Every $parameter its panels use, with the first default a panel gives it ("" if none)."""
        found: dict[str, str] = {}
        for panel in self.panels:
            for name in query_parameters(panel.sql):
                if not found.get(name):
                    found[name] = panel.params.get(name, "")
        return found


class TabProblem(msgspec.Struct, kw_only=True):
    """A panels file or entry point that could not be loaded, and why: the tab list shows it."""

    origin: str
    reason: str


_SLUG = re.compile(r"[^a-z0-9]+")


def tab_slug(title: str) -> str:
    """The URL name of a tab titled ``title``: "Precision speed-ups" → "precision-speed-ups"."""
    return _SLUG.sub("-", title.strip().lower()).strip("-")[:63].rstrip("-")


def query_parameters(sql: str) -> list[str]:
    """The names of the ``$name`` parameters ``sql`` uses, in order of first use.

    Only a parse: nothing runs. A query that does not parse has none (the guard says why
    when it runs).
    """
    try:
        tree = parse_one(sql, dialect="duckdb")
    except (SqlglotError, ValueError, RecursionError):
        return []
    names: list[str] = []
    for placeholder in tree.find_all(exp.Placeholder):
        name = placeholder.this
        if isinstance(name, str) and name and not name.isdigit() and name not in names:
            names.append(name)
    return names


def describe_validation(error: msgspec.ValidationError) -> tuple[str | None, str]:
    """(field, reason) from msgspec's "Expected ... - at `$.panels[0].chart`" message."""
    message = str(error)
    reason, _, where = message.partition(" - at `")
    where = where.rstrip("`")
    field = where.rsplit(".", 1)[-1] if where.startswith("$.") else None
    if field is not None:
        field = re.sub(r"\[\d+\]$", "", field)
    if field == "chart" and reason.startswith("Invalid enum value"):
        reason += f": a chart is one of {', '.join(CHART_KINDS)}"
    return field, reason
