"""dashboard_panels: stored panels read back typed, in tab order; the table arrives by migration on
an older file, which keeps its rows; and no guarded query can read it."""

from __future__ import annotations

import pytest

from storage import panels as panel_rows
from storage.database import Database
from storage.schema import ALLOWED_QUERY_TABLES
from storage.sql_guard import QueryRefused, run_guarded_query
from webapp.panels.model import Panel


def panel(tab: str = "Latency", title: str = "p50", **fields) -> Panel:
    return Panel(tab=tab, title=title, sql=fields.pop("sql", "SELECT 1 AS one"), **fields)


def test_a_stored_panel_reads_back_as_the_type_asked_for(tmp_path):
    with Database(tmp_path / "p.duckdb") as db:
        panel_id = panel_rows.add_panel(
            db,
            panel(
                chart="bar",
                x="model_name",
                y="p50",
                color="precision",
                facet="hardware",
                refresh_s=30,
                params={"model": "bert-tiny"},
                sql="SELECT model_name FROM results_view WHERE model_name = $model",
            ),
        )
        stored = panel_rows.get_panel(db, panel_id, Panel)
    assert isinstance(stored, Panel)
    assert (stored.panel_id, stored.tab, stored.title, stored.chart) == (panel_id, "Latency", "p50", "bar")
    assert stored.columns == {"x": "model_name", "y": "p50", "color": "precision", "facet": "hardware"}
    assert stored.params == {"model": "bert-tiny"} and stored.refresh_s == 30
    assert stored.created_at.tzinfo is not None and stored.updated_at is not None


def test_panels_keep_their_order_on_a_tab_and_update_and_delete_one_at_a_time(tmp_path):
    with Database(tmp_path / "p.duckdb") as db:
        first = panel_rows.add_panel(db, panel(title="first"))
        other = panel_rows.add_panel(db, panel(tab="Other", title="elsewhere"))
        second = panel_rows.add_panel(db, panel(title="second"))
        assert [p.title for p in panel_rows.list_panels(db, Panel, tabs=["Latency"])] == ["first", "second"]
        assert panel_rows.tab_titles(db) == ["Latency", "Other"]

        assert panel_rows.update_panel(db, first, panel(title="first, edited", chart="table"))
        assert panel_rows.get_panel(db, first, Panel).title == "first, edited"
        assert [p.panel_id for p in panel_rows.list_panels(db, Panel, tabs=["Latency"])] == [first, second]

        assert panel_rows.delete_panel(db, first)
        assert not panel_rows.delete_panel(db, first)
        assert not panel_rows.update_panel(db, first, panel())
        assert panel_rows.get_panel(db, first, Panel) is None
        assert {p.panel_id for p in panel_rows.list_panels(db, Panel)} == {second, other}


def test_replacing_a_tab_swaps_its_panels_in_one_transaction(tmp_path):
    with Database(tmp_path / "p.duckdb") as db:
        panel_rows.add_panel(db, panel(title="old"))
        kept = panel_rows.add_panel(db, panel(tab="Other", title="kept"))
        ids = panel_rows.replace_tab(db, ["Latency"], [panel(title="new 1"), panel(title="new 2")])
        assert [p.title for p in panel_rows.list_panels(db, Panel, tabs=["Latency"])] == ["new 1", "new 2"]
        assert [p.panel_id for p in panel_rows.list_panels(db, Panel, tabs=["Latency"])] == ids
        assert panel_rows.get_panel(db, kept, Panel).title == "kept"


KEPT = ("models", "hardware_platforms", "test_runs", "performance_results", "hardware_compatibility")


def test_a_database_from_before_panels_upgrades_and_keeps_its_rows(tmp_path):
    path = tmp_path / "v3.duckdb"
    with Database(path, migrate_to=3) as old, old.writing() as cursor:
        tables = {row[0] for row in cursor.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert "dashboard_panels" not in tables
        cursor.execute("INSERT INTO models (model_name, model_family) VALUES ('bert-old', 'bert')")
        cursor.execute(
            "INSERT INTO hardware_platforms (hardware_type, device_name, platform) VALUES ('cpu', 'Old', 'cpu')"
        )
        cursor.execute(
            "INSERT INTO test_runs (run_id, status, priority) VALUES ('r-old', 'completed', 'high')"
        )
        cursor.execute(
            "INSERT INTO performance_results (run_id, model_id, hardware_id, batch_size, precision, p50_latency_ms) "
            "VALUES ('r-old', 1, 1, 8, 'fp32', 2.5)"
        )
        cursor.execute(
            "INSERT INTO hardware_compatibility (run_id, model_id, hardware_id, batch_size, precision, is_compatible, "
            "error_type) VALUES ('r-old', 1, 1, 64, 'fp32', false, 'oom')"
        )
        before = {table: cursor.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in KEPT}
        columns = {
            table: [row[0] for row in cursor.execute(f"DESCRIBE {table}").fetchall()] for table in KEPT
        }

    with Database(path) as upgraded:
        cursor = upgraded.cursor()
        for table in KEPT:  # every row, every column it had, unchanged
            old_columns = ", ".join(columns[table])
            assert (
                cursor.execute(f"SELECT {old_columns} FROM {table} ORDER BY ALL").fetchall() == before[table]
            )
        assert cursor.execute("SELECT run_id, status FROM test_runs").fetchall() == [("r-old", "completed")]
        assert panel_rows.list_panels(upgraded, Panel) == []
        panel_id = panel_rows.add_panel(upgraded, panel(sql="SELECT model_name FROM results_view"))
        assert panel_rows.get_panel(upgraded, panel_id, Panel).sql == "SELECT model_name FROM results_view"


def test_no_guarded_query_reads_the_stored_panels(tmp_path):
    assert "dashboard_panels" not in ALLOWED_QUERY_TABLES
    with Database(tmp_path / "p.duckdb") as db:
        panel_rows.add_panel(db, panel(sql="SELECT 'a secret query' AS s"))
        for sql in (
            "SELECT sql FROM dashboard_panels",
            "SELECT sql FROM main.dashboard_panels",
            "WITH dashboard_panels AS (SELECT 1 AS x) SELECT * FROM dashboard_panels",
        ):
            with pytest.raises(QueryRefused) as refused:
                run_guarded_query(db, sql, allowed_tables=ALLOWED_QUERY_TABLES, pool=None)
            assert "dashboard_panels" in refused.value.reason
