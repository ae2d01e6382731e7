"""Where tabs come from: the panels stored in DuckDB, the operator's panels folder (TOML or YAML
files, one tab per file) and the ``benchboard.panels`` entry point group; and the TOML that
export writes and import reads (the folder's format).

Loading never runs a query: files are parsed and entry points called for their tab
definitions only. Each panel's SQL runs, guarded, when its tab is shown. A file or entry point
that cannot be loaded is skipped with a log line and listed as a ``TabProblem``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import msgspec

from storage import panels as panel_rows
from storage.database import Database
from webapp.panels.model import Panel, Tab, TabProblem, describe_validation, tab_slug

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "benchboard.panels"
TOML_SUFFIXES = (".toml",)
YAML_SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 1_000_000
# The navigation asks for the tab list on every page; the folder is looked at again after this.
LIST_TTL_S = 2.0


class TabNotFound(Exception):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"there is no tab named {name!r}")


class TabFileError(ValueError):
    """A panels file (or an imported one) that is not a valid tab; the reason names what is wrong."""


try:  # PyYAML comes with transformers; without it, YAML files are skipped with a notice.
    import yaml as _yaml
except ImportError:  # pragma: no cover - transformers depends on PyYAML
    _yaml = None
    _YamlLoader = None
else:

    class _YamlLoader(_yaml.SafeLoader):
        """YAML's safe loader, refusing aliases: a few nested ``*ref``s stand for billions of values
        once anything walks the document (the "billion laughs"), and a panels file needs none."""

        def compose_node(self, parent, index):
            if self.check_event(_yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise _yaml.YAMLError(f"aliases (*name) are not allowed in a panels file: line {mark.line + 1}")
            return super().compose_node(parent, index)


def _validation_reason(error: msgspec.ValidationError) -> str:
    field, reason = describe_validation(error)
    where = str(error).partition(" - at `")[2].rstrip("`")
    return f"{reason} (at {where})" if where and where != "$" else reason


def parse_tab(data: object, *, name: str, source: str, origin: str) -> Tab:
    """A Tab from a file's (or an entry point's) decoded data; TabFileError says what is wrong."""
    if not isinstance(data, dict):
        raise TabFileError("a panels file holds a table with a `panels` list")
    try:
        tab = msgspec.convert(data, Tab)
    except msgspec.ValidationError as error:
        raise TabFileError(_validation_reason(error)) from None
    name = tab.name or name
    if tab_slug(name) != name:
        raise TabFileError(
            f"tab name {name!r} must be lower-case letters, digits and dashes "
            f"(e.g. {tab_slug(name) or 'my-tab'!r})"
        )
    if not tab.panels:
        raise TabFileError("the tab has no panels")
    if source != "entry_point" and any(panel.render is not None for panel in tab.panels):
        raise TabFileError("only a Python entry point can give a panel a render function")
    panels = [
        msgspec.structs.replace(panel, panel_id=None, tab=name, position=position, sql=panel.sql.strip())
        for position, panel in enumerate(tab.panels)
    ]
    return msgspec.structs.replace(
        tab, name=name, title=tab.title or name, panels=panels, source=source, origin=origin
    )


def read_tab_file(path: Path) -> Tab:
    """The tab a TOML or YAML file holds (its URL name: the file's name without the extension,
    lower-cased, other characters as dashes; or the file's own ``name``)."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise TabFileError(f"the file is {size:,} bytes; a panels file may have at most {MAX_FILE_BYTES:,}")
    text = path.read_text(encoding="utf-8")
    name = tab_slug(path.stem)
    if not name:
        raise TabFileError(
            "the file's name gives no tab name: name it with letters or digits, e.g. my-tab.toml"
        )
    return parse_tab(decode_tab_text(text, path.suffix.lower()), name=name, source="folder", origin=str(path))


def decode_tab_text(text: str, suffix: str = ".toml") -> object:
    if suffix in YAML_SUFFIXES:
        if _yaml is None:
            raise TabFileError("YAML panels files need PyYAML, which is not installed: use TOML")
        try:
            return _yaml.load(text, Loader=_YamlLoader)  # noqa: S506  a safe loader, aliases refused
        except _yaml.YAMLError as error:
            raise TabFileError(f"not valid YAML: {error}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise TabFileError(f"not valid TOML: {error}") from None


@dataclass
class _Cached:
    stamp: tuple[int, int]
    tab: Tab | None
    problem: TabProblem | None


class PanelsFolder:
    """The tabs in one folder's ``*.toml``/``*.yaml`` files, read again when a file changes
    (a file added, edited or removed shows without a restart)."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder else None
        self._cache: dict[Path, _Cached] = {}
        self._lock = threading.Lock()

    def load(self) -> tuple[list[Tab], list[TabProblem]]:
        if self.folder is None:
            return [], []
        if not self.folder.is_dir():
            return [], [TabProblem(origin=str(self.folder), reason="the panels folder does not exist")]
        tabs, problems = [], []
        with self._lock:
            paths = sorted(
                path
                for path in self.folder.iterdir()
                if path.suffix.lower() in TOML_SUFFIXES + YAML_SUFFIXES and not path.name.startswith(".")
            )
            for path in paths:
                entry = self._read(path)
                if entry.tab is not None:
                    tabs.append(entry.tab)
                if entry.problem is not None:
                    problems.append(entry.problem)
            for gone in set(self._cache) - set(paths):
                del self._cache[gone]
        return tabs, problems

    def _read(self, path: Path) -> _Cached:
        try:
            status = path.stat()
        except OSError as error:
            return _Cached((0, 0), None, TabProblem(origin=str(path), reason=str(error)))
        stamp = (status.st_mtime_ns, status.st_size)
        cached = self._cache.get(path)
        if cached is not None and cached.stamp == stamp:
            return cached
        try:
            entry = _Cached(stamp, read_tab_file(path), None)
        except (TabFileError, OSError, UnicodeDecodeError) as error:
            log.warning("skipping panels file %s: %s", path, error)
            entry = _Cached(stamp, None, TabProblem(origin=str(path), reason=str(error)))
        self._cache[path] = entry
        return entry


def _entry_point_tabs(entry_point: metadata.EntryPoint) -> list[Tab]:
    """An entry point's tabs: it names a Tab, a dict in the file format, a list of them, or a
    function (called with no arguments) returning any of these."""
    value = entry_point.load()
    if callable(value) and not isinstance(value, (Tab, dict, list, tuple)):
        value = value()
    values = value if isinstance(value, (list, tuple)) else [value]
    tabs = []
    for item in values:
        if isinstance(item, Tab):
            # Built in Python, so nothing checked its fields yet: check them as a file's are.
            item = {
                **{
                    name: getattr(item, name)
                    for name in item.__struct_fields__
                    if name not in ("source", "origin")
                },
                "panels": [msgspec.structs.asdict(panel) for panel in item.panels],
            }
        tabs.append(
            parse_tab(
                item,
                name=tab_slug(entry_point.name),
                source="entry_point",
                origin=f"entry point {entry_point.name} = {entry_point.value}",
            )
        )
    return tabs


def load_entry_points(group: str = ENTRY_POINT_GROUP) -> tuple[list[Tab], list[TabProblem]]:
    tabs, problems = [], []
    for entry_point in metadata.entry_points(group=group):
        origin = f"entry point {entry_point.name} = {entry_point.value}"
        try:
            tabs += _entry_point_tabs(entry_point)
        except Exception as error:  # noqa: BLE001  user code may fail in any way; skip it, keep the rest
            log.warning("skipping panels %s: %s", origin, error)
            problems.append(TabProblem(origin=origin, reason=f"{type(error).__name__}: {error}"))
    return tabs, problems


@dataclass
class TabIndex:
    """Every tab now, in navigation order (stored, then folder, then entry points), and the
    files and entry points that could not be loaded."""

    tabs: list[Tab] = field(default_factory=list)
    problems: list[TabProblem] = field(default_factory=list)

    def get(self, name: str) -> Tab:
        for tab in self.tabs:
            if tab.name == name:
                return tab
        raise TabNotFound(name)


class PanelCatalog:
    """The tabs of one server: stored panels (read from DuckDB each time), the panels folder
    (read again when a file changes) and entry points (loaded once, on first use)."""

    def __init__(
        self,
        db: Database,
        panels_dir: str | Path | None = None,
        *,
        entry_points: Callable[[], tuple[list[Tab], list[TabProblem]]] = load_entry_points,
    ):
        self.db = db
        self.folder = PanelsFolder(panels_dir)
        self._load_entry_points = entry_points
        self._entry_points: tuple[list[Tab], list[TabProblem]] | None = None
        self._listed: tuple[float, TabIndex] | None = None
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def entry_point_tabs(self) -> tuple[list[Tab], list[TabProblem]]:
        with self._lock:
            if self._entry_points is None:
                self._entry_points = self._load_entry_points()
            return self._entry_points

    def stored_tabs(self) -> list[Tab]:
        """The stored panels grouped into tabs by their tab's URL name, oldest tab first."""
        tabs: dict[str, Tab] = {}
        for title in panel_rows.tab_titles(self.db):
            name = tab_slug(title)
            if name and name not in tabs:
                tabs[name] = Tab(name=name, title=title, panels=[], source="stored", origin="stored")
        for panel in panel_rows.list_panels(self.db, Panel):
            tab = tabs.get(tab_slug(panel.tab))
            if tab is not None:
                tab.panels.append(panel)
        return list(tabs.values())

    def index(self) -> TabIndex:
        """Every tab, read now. A name taken twice keeps the first (stored, folder, entry point)."""
        found = TabIndex()
        folder_tabs, folder_problems = self.folder.load()
        entry_tabs, entry_problems = self.entry_point_tabs()
        found.problems = [*folder_problems, *entry_problems]
        taken: dict[str, Tab] = {}
        for tab in [*self.stored_tabs(), *folder_tabs, *entry_tabs]:
            if tab.name in taken:
                reason = f"tab name {tab.name!r} is already used by {taken[tab.name].origin}; this one is not shown"
                if (tab.origin, tab.name) not in self._warned:  # once, not on every page
                    self._warned.add((tab.origin, tab.name))
                    log.warning("skipping tab from %s: %s", tab.origin, reason)
                found.problems.append(TabProblem(origin=tab.origin, reason=reason))
                continue
            taken[tab.name] = tab
            found.tabs.append(tab)
        return found

    def listing(self) -> TabIndex:
        """index(), at most LIST_TTL_S old: what the navigation of every page shows."""
        now = time.monotonic()
        listed = self._listed
        if listed is None or now - listed[0] > LIST_TTL_S:
            listed = (now, self.index())
            self._listed = listed
        return listed[1]

    def changed(self) -> None:
        """Forget the cached listing (a panel was saved, edited or deleted)."""
        self._listed = None

    def tab(self, name: str) -> Tab:
        return self.index().get(name)


# ---- the TOML export -------------------------------------------------------------------------


def _toml_string(text: str) -> str:
    """A TOML string for ``text``: a multi-line literal string where it can be one (readable
    SQL in version control), else a basic string (JSON's escapes are valid TOML ones)."""
    multiline_ok = (
        "'''" not in text
        and not text.endswith("'")
        and all(char in "\n\t" or (ord(char) >= 0x20 and ord(char) != 0x7F) for char in text)
    )
    if "\n" in text and multiline_ok:
        return "'''\n" + text + "'''"
    return json.dumps(text, ensure_ascii=False)


def _toml_key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() and name.isascii() else json.dumps(name)


def tab_toml(tab: Tab) -> str:
    """``tab`` as a panels file: what the panels folder and import read back unchanged."""
    lines = [
        "# benchboard panels: one tab. Put it in a --panels-dir folder, or import it on /tabs.",
        f"title = {_toml_string(tab.label)}",
    ]
    if tab.description:
        lines.append(f"description = {_toml_string(tab.description)}")
    for panel in tab.panels:
        lines += [
            "",
            "[[panels]]",
            f"title = {_toml_string(panel.title)}",
            f"chart = {_toml_string(panel.chart)}",
        ]
        for name, value in panel.columns.items():
            lines.append(f"{name} = {_toml_string(value)}")
        if panel.refresh_s is not None:
            lines.append(f"refresh_s = {panel.refresh_s}")
        sql = panel.sql.strip() + "\n"
        lines.append(f"sql = {_toml_string(sql)}")
        if panel.params:
            lines.append("[panels.params]")
            lines += [f"{_toml_key(name)} = {_toml_string(value)}" for name, value in panel.params.items()]
    return "\n".join(lines) + "\n"


def tabs_from_upload(files: Iterable[tuple[str, str]]) -> list[Tab]:
    """Tabs from uploaded panels files, each (file name, text); TabFileError names the file."""
    tabs = []
    for filename, text in files:
        stem, _, suffix = Path(filename or "imported.toml").name.rpartition(".")
        suffix = "." + suffix.lower() if stem else ".toml"
        try:
            data = decode_tab_text(text, suffix)
            title = data.get("title") if isinstance(data, dict) else None
            name = tab_slug(title or stem or "imported")
            if isinstance(data, dict):
                data = {key: value for key, value in data.items() if key != "name"}
            tabs.append(parse_tab(data, name=name or "imported", source="stored", origin=filename))
        except TabFileError as error:
            raise TabFileError(f"{filename}: {error}") from None
    return tabs
