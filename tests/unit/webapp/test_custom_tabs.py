"""Panels and tabs without a server: the folder's files, entry points, the TOML export, the charts
each kind draws, and live refreshes throttled to a panel's interval."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

import msgspec
import pytest

from engine.runs import RunStatus, utc_now
from storage.sql_guard import QueryResult
from webapp.live import StatusEvent
from webapp.panels.live import live_panel_updates, results_landed
from webapp.panels.model import Panel, Tab, query_parameters, tab_slug
from webapp.panels.render import chart_spec
from webapp.panels.sources import (
    PanelCatalog,
    PanelsFolder,
    TabFileError,
    load_entry_points,
    parse_tab,
    tab_toml,
    tabs_from_upload,
)

GOOD = """title = "Latency"
description = "p50 per model"
[[panels]]
title = "Median latency"
chart = "bar"
x = "model_name"
y = "p50"
refresh_s = 10
sql = "SELECT model_name, median(p50_latency_ms) AS p50 FROM results_view WHERE hardware = $hw GROUP BY 1"
[panels.params]
hw = "cpu"
"""

YAML = """title: From YAML
panels:
  - title: Runs by status
    chart: bar
    x: status
    y: runs
    sql: SELECT status, count(*) AS runs FROM test_runs GROUP BY status
"""


def test_a_folder_gives_one_tab_per_file_and_skips_bad_ones_saying_why(tmp_path, caplog):
    (tmp_path / "latency.toml").write_text(GOOD)
    (tmp_path / "From YAML.yaml").write_text(YAML)
    (tmp_path / "syntax.toml").write_text("title = 'unclosed\n")
    (tmp_path / "no-y.toml").write_text('[[panels]]\ntitle = "t"\nchart = "bar"\nx = "a"\nsql = "SELECT 1"\n')
    (tmp_path / "typo.toml").write_text('[[panels]]\ntitle = "t"\nchrat = "bar"\nsql = "SELECT 1"\n')
    (tmp_path / "kind.toml").write_text('[[panels]]\ntitle = "t"\nchart = "pie"\nsql = "SELECT 1"\n')
    (tmp_path / "fast.toml").write_text('[[panels]]\ntitle = "t"\nrefresh_s = 1\nsql = "SELECT 1"\n')
    (tmp_path / "empty.toml").write_text("panels = []\n")
    (tmp_path / "notes.txt").write_text("not a panels file")

    with caplog.at_level(logging.WARNING, logger="webapp.panels.sources"):
        tabs, problems = PanelsFolder(tmp_path).load()

    assert [(tab.name, tab.label, tab.source) for tab in tabs] == [
        ("from-yaml", "From YAML", "folder"),
        ("latency", "Latency", "folder"),
    ]
    latency = tabs[1]
    (panel,) = latency.panels
    assert (panel.tab, panel.chart, panel.x, panel.y, panel.refresh_s) == (
        "latency",
        "bar",
        "model_name",
        "p50",
        10,
    )
    assert latency.parameters() == {"hw": "cpu"}
    reasons = {problem.origin.rsplit("/", 1)[-1]: problem.reason for problem in problems}
    assert set(reasons) == {"syntax.toml", "no-y.toml", "typo.toml", "kind.toml", "fast.toml", "empty.toml"}
    assert "not valid TOML" in reasons["syntax.toml"]
    assert "bar chart needs the column y" in reasons["no-y.toml"]
    assert "chrat" in reasons["typo.toml"]
    assert "pie" in reasons["kind.toml"] and "bar" in reasons["kind.toml"]
    assert ">= 5" in reasons["fast.toml"] and "refresh_s" in reasons["fast.toml"]
    assert "no panels" in reasons["empty.toml"]
    for name in reasons:  # a clear log line for each
        assert f"skipping panels file {tmp_path / name}" in caplog.text


def test_a_yaml_file_with_aliases_is_refused_before_anything_walks_it(tmp_path):
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    ) + "panels: [{title: t, sql: 'SELECT 1'}]\n"
    (tmp_path / "laughs.yaml").write_text(laughs)
    tabs, (problem,) = PanelsFolder(tmp_path).load()
    assert tabs == [] and "aliases (*name) are not allowed" in problem.reason


def test_a_changed_file_is_read_again_and_a_removed_one_goes(tmp_path):
    path = tmp_path / "latency.toml"
    path.write_text(GOOD)
    folder = PanelsFolder(tmp_path)
    assert folder.load()[0][0].panels[0].title == "Median latency"
    path.write_text(GOOD.replace("Median latency", "Renamed panel") + "\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert folder.load()[0][0].panels[0].title == "Renamed panel"
    path.unlink()
    assert folder.load() == ([], [])


def test_loading_a_hostile_file_runs_nothing(tmp_path):
    # The folder loader has no database to run anything on: the query is only parsed into
    # the tab, and refused when the tab runs it (tests/integration/test_panels.py).
    (tmp_path / "hostile.toml").write_text(
        '[[panels]]\ntitle = "wipe"\nsql = "DELETE FROM performance_results"\n'
    )
    (tab,), problems = PanelsFolder(tmp_path).load()
    assert problems == [] and tab.panels[0].sql == "DELETE FROM performance_results"


def test_a_file_cannot_carry_code():
    with pytest.raises(TabFileError, match="only a Python entry point"):
        parse_tab(
            {"panels": [{"title": "t", "sql": "SELECT 1", "render": len}]},
            name="t",
            source="folder",
            origin="t.toml",
        )
    with pytest.raises(TabFileError, match="render must be a function"):
        parse_tab(
            {"panels": [{"title": "t", "sql": "SELECT 1", "render": "os:system"}]},
            name="t",
            source="entry_point",
            origin="ep",
        )


PLUGIN = """
import altair as alt
from webapp.panels import Panel, Tab

def draw(rows):
    return alt.Chart(rows).mark_bar().encode(x="status:N", y="runs:Q")

def as_tab():
    return Tab(name="plugin-tab", title="Plugin tab", panels=[
        Panel(title="Runs", sql="SELECT status, count(*) AS runs FROM test_runs GROUP BY status", render=draw)])

AS_DICT = {"title": "Dict tab", "panels": [{"title": "One", "sql": "SELECT 1 AS one"}]}

def broken():
    raise RuntimeError("the plugin is half-written")

def bad_field():
    return Tab(panels=[Panel(title="t", sql="SELECT 1", refresh_s=1)])
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A real installed distribution (a dist-info on sys.path) with benchboard.panels entry points."""
    (tmp_path / "benchboard_panels_plugin.py").write_text(PLUGIN)
    dist_info = tmp_path / "benchboard_panels_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: benchboard-panels-plugin\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[benchboard.panels]\n"
        "code = benchboard_panels_plugin:as_tab\n"
        "dict-tab = benchboard_panels_plugin:AS_DICT\n"
        "broken = benchboard_panels_plugin:broken\n"
        "bad = benchboard_panels_plugin:bad_field\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "benchboard_panels_plugin", raising=False)


def test_entry_points_give_tabs_and_a_failing_one_is_a_problem_not_a_crash(plugin, caplog):
    with caplog.at_level(logging.WARNING, logger="webapp.panels.sources"):
        tabs, problems = load_entry_points()
    by_name = {tab.name: tab for tab in tabs}
    assert set(by_name) == {"plugin-tab", "dict-tab"}
    code = by_name["plugin-tab"]
    assert (code.source, code.label, code.origin) == (
        "entry_point",
        "Plugin tab",
        "entry point code = benchboard_panels_plugin:as_tab",
    )
    assert callable(code.panels[0].render)
    assert by_name["dict-tab"].label == "Dict tab"
    reasons = {problem.origin: problem.reason for problem in problems}
    assert (
        "RuntimeError: the plugin is half-written"
        in reasons["entry point broken = benchboard_panels_plugin:broken"]
    )
    assert "refresh_s" in reasons["entry point bad = benchboard_panels_plugin:bad_field"]
    assert "skipping panels entry point broken" in caplog.text


def test_a_custom_chart_function_gets_the_rows_as_a_dataframe(plugin):
    tabs, _ = load_entry_points()
    panel = next(tab for tab in tabs if tab.name == "plugin-tab").panels[0]
    spec, problem = chart_spec(panel, result(["status", "runs"], [["completed", 3], ["failed", 1]]))
    assert problem is None
    assert spec["mark"]["type"] == "bar"
    assert list(spec["datasets"].values())[0] == [
        {"status": "completed", "runs": 3},
        {"status": "failed", "runs": 1},
    ]

    def broken(rows):
        raise KeyError("no_such_column")

    spec, problem = chart_spec(msgspec.structs.replace(panel, render=broken), result(["status"], [["x"]]))
    assert spec is None and "chart function failed: KeyError" in problem


def test_names_collide_first_come_first_served(tmp_path):
    from storage.database import Database

    (tmp_path / "panels").mkdir()
    (tmp_path / "panels" / "latency.toml").write_text(GOOD)
    entry = Tab(
        name="latency",
        title="Also latency",
        source="entry_point",
        origin="entry point x = y",
        panels=[Panel(title="t", sql="SELECT 1", tab="latency")],
    )
    with Database(tmp_path / "p.duckdb") as db:
        catalog = PanelCatalog(db, tmp_path / "panels", entry_points=lambda: ([entry], []))
        index = catalog.index()
    assert [tab.origin for tab in index.tabs] == [str(tmp_path / "panels" / "latency.toml")]
    assert "already used by" in index.problems[0].reason and index.problems[0].origin == "entry point x = y"


def test_the_toml_export_reads_back_as_the_same_tab():
    sql = "SELECT 'it''s' AS quote, '''' AS three, 'é ✓' AS text\n  FROM results_view\nWHERE x = $model"
    tab = Tab(
        name="round-trip",
        title='Round "trip"',
        description="a\tb",
        source="stored",
        origin="stored",
        panels=[
            Panel(
                title="One",
                sql=sql,
                chart="line",
                x="a",
                y="b",
                color="c",
                facet="d",
                refresh_s=60,
                params={"model": 'bert "tiny"'},
                tab='Round "trip"',
            ),
            Panel(title="Two", sql="SELECT 1 AS x\n-- ends with a quote: '", tab='Round "trip"'),
            Panel(title="Three", sql="SELECT 1", tab='Round "trip"'),
        ],
    )
    (again,) = tabs_from_upload([("anything.toml", tab_toml(tab))])
    assert again.name == tab_slug('Round "trip"') == "round-trip"
    assert again.label == tab.label and again.description == tab.description
    fields = ("title", "sql", "chart", "x", "y", "color", "facet", "refresh_s", "params")
    for before, after in zip(tab.panels, again.panels, strict=True):
        assert [getattr(after, name) for name in fields] == [
            getattr(before, name) if name != "sql" else before.sql.strip() for name in fields
        ]


def test_query_parameters_are_found_without_running_anything():
    assert query_parameters("SELECT * FROM t WHERE a = $model AND b > $bs OR $model IS NULL") == [
        "model",
        "bs",
    ]
    assert query_parameters("SELECT '$not_a_parameter'") == []
    assert query_parameters("SELECT (") == []


def result(columns, rows) -> QueryResult:
    return QueryResult(columns=columns, rows=rows, row_count=len(rows), truncated=False, elapsed_ms=1.0)


ROWS = result(
    ["model_name", "batch_size", "precision", "p50", "created_at"],
    [
        ["bert-tiny", 1, "fp32", 1.5, "2026-01-01T10:00:00"],
        ["bert-tiny", 4, "fp32", 3.0, "2026-01-02T10:00:00"],
        ["gpt2.tiny", 1, "int8", 2.0, "2026-01-03T10:00:00"],
    ],
)


@pytest.mark.parametrize(
    ("kind", "columns", "mark"),
    [
        ("bar", {"x": "model_name", "y": "p50", "color": "precision"}, "bar"),
        ("line", {"x": "batch_size", "y": "p50", "color": "model_name"}, "line"),
        ("line", {"x": "created_at", "y": "p50"}, "line"),
        ("scatter", {"x": "batch_size", "y": "p50", "color": "precision"}, "point"),
        ("heatmap", {"x": "batch_size", "y": "model_name", "color": "p50"}, "rect"),
        ("box", {"x": "model_name", "y": "p50"}, "boxplot"),
    ],
)
def test_each_chart_kind_draws_its_rows(kind, columns, mark):
    spec, problem = chart_spec(Panel(title="t", sql="SELECT 1", chart=kind, **columns), ROWS)
    assert problem is None
    assert spec["mark"]["type"] == mark
    assert spec["datasets"]["rows"][2]["model_name"] == "gpt2.tiny"
    x = spec["encoding"]["x"]
    assert x["field"] == columns["x"]
    if columns["x"] == "created_at":
        assert x["type"] == "temporal"


def test_a_facet_makes_small_charts_and_a_dotted_name_is_a_field_not_a_path():
    spec, problem = chart_spec(
        Panel(title="t", sql="SELECT 1", chart="bar", x="model_name", y="p50", facet="precision"), ROWS
    )
    assert problem is None and spec["facet"]["field"] == "precision" and spec["spec"]["mark"]["type"] == "bar"
    dotted = result(["a.b", "v"], [["x", 1.0]])
    spec, _ = chart_spec(Panel(title="t", sql="SELECT 1", chart="bar", x="a.b", y="v"), dotted)
    assert spec["encoding"]["x"]["field"] == "a\\.b"


def test_a_chart_the_rows_cannot_draw_says_why():
    def spec(**fields):
        return chart_spec(Panel(title="t", sql="SELECT 1", **fields), ROWS)

    assert spec(chart="bar", x="model_name", y="nope")[1].startswith("the chart needs the column nope")
    assert "holds text, not numbers" in spec(chart="bar", x="p50", y="model_name")[1]
    assert spec(chart="table") == (None, None)
    assert chart_spec(
        Panel(title="t", sql="SELECT 1", chart="bar", x="a", y="b"), result(["a", "b"], [])
    ) == (None, None)


def status_event(status: str) -> bytes:
    now = utc_now()
    return msgspec.json.encode(
        StatusEvent(
            status=RunStatus(
                run_id="r",
                status=status,
                progress=1.0,
                current_step=None,
                start_time=now,
                elapsed_time=1.0,
                estimated_remaining_time=None,
                completed_models=1,
                total_models=1,
                error=None,
                completed_configs=1,
                total_configs=1,
                priority="high",
                created_at=now,
                completion_time=now,
            )
        )
    )


def test_only_results_and_ended_runs_refresh_panels():
    assert results_landed(status_event("completed"))
    assert not results_landed(status_event("running"))
    assert not results_landed(b"not json")


def test_live_panels_refresh_when_results_land_at_most_once_per_interval():
    # Real time, with intervals of a tenth of a second: the throttle's behaviour, not its speed.
    async def scenario():
        queue: asyncio.Queue = asyncio.Queue()

        async def events():
            while (item := await queue.get()) is not None:
                yield item

        rendered: list[tuple[str, float]] = []
        started = time.monotonic()

        async def render(key):
            return None if key == "gone" else f"<p>{key}</p>"

        async def consume():
            async for key, html in live_panel_updates(events(), {"a": 0.3, "b": 0.05, "gone": 0.05}, render):
                assert html == f"<p>{key}</p>"
                rendered.append((key, time.monotonic() - started))

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.5)
        assert rendered == []  # nothing landed: nothing runs again
        for _ in range(5):  # a burst
            await queue.put(status_event("completed"))
        await queue.put(status_event("running"))
        # Until both panels are drawn (SETTLE_S after the burst): ending the events sooner ends the
        # updates before they are due, so a fixed sleep as long as SETTLE_S raced them.
        async def both_drawn():
            while len(rendered) < 2:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(both_drawn(), timeout=10)
        await asyncio.sleep(0.5)  # past both intervals again: a second draw for the burst would come by now
        await queue.put(None)
        await asyncio.wait_for(task, timeout=10)
        return rendered

    rendered = asyncio.run(scenario())
    assert sorted(key for key, _ in rendered) == ["a", "b"]  # once each for the whole burst; "gone" never
