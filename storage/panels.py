"""Rows of dashboard_panels: the panels saved from the SQL page, or imported, as custom tabs.

A panel is written from the caller's Struct (its fields named like the columns) and read
back with ``msgspec.convert`` into the type the caller names, so storage needs no webapp
import. ``tab`` is the tab's title as the user typed it; pages derive its URL name.

The table is not on the SQL guard's allowlist: no panel's query (and no query on the SQL
page) can read the other panels' SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

import msgspec

from storage.database import Database
from storage.timestamps import read_back, stored, utc_now

PANEL_COLUMNS = ("tab", "title", "sql", "chart", "x", "y", "color", "facet", "params", "refresh_s")
READ_COLUMNS = ("panel_id", *PANEL_COLUMNS, "position", "created_at", "updated_at")
Row = TypeVar("Row")


def _values(panel: msgspec.Struct) -> dict:
    values = {column: getattr(panel, column) for column in PANEL_COLUMNS}
    values["params"] = msgspec.json.encode(values["params"] or {}).decode()
    return values


def _insert_sql() -> str:
    columns = (*PANEL_COLUMNS, "position", "created_at", "updated_at")
    return (
        f"INSERT INTO dashboard_panels ({', '.join(columns)}) "
        f"VALUES ({', '.join('$' + column for column in columns)}) RETURNING panel_id"
    )


def _now() -> dict:
    now = stored(utc_now())
    return {"created_at": now, "updated_at": now}


def _decode(row: tuple, as_type: type[Row]) -> Row:
    panel = read_back(dict(zip(READ_COLUMNS, row, strict=True)))
    panel["params"] = msgspec.json.decode(panel["params"]) if panel["params"] else {}
    return msgspec.convert({name: value for name, value in panel.items() if value is not None}, as_type)


def _select(where: str = "") -> str:
    return f"SELECT {', '.join(READ_COLUMNS)} FROM dashboard_panels {where} ORDER BY position, panel_id"


def add_panel(db: Database, panel: msgspec.Struct) -> int:
    """Store ``panel`` last on its tab; its new panel_id."""
    values = _values(panel)
    with db.writing() as cursor:
        (position,) = cursor.execute(
            "SELECT coalesce(max(position), -1) + 1 FROM dashboard_panels WHERE tab = $tab",
            {"tab": values["tab"]},
        ).fetchone()
        (panel_id,) = cursor.execute(_insert_sql(), values | {"position": position} | _now()).fetchone()
    return panel_id


def update_panel(db: Database, panel_id: int, panel: msgspec.Struct) -> bool:
    """Replace a stored panel's fields (its tab and position stay); False if there is none."""
    values = _values(panel)
    del values["tab"]
    assignments = ", ".join(f"{column} = ${column}" for column in values)
    with db.writing() as cursor:
        updated = cursor.execute(
            f"UPDATE dashboard_panels SET {assignments}, updated_at = $now WHERE panel_id = $panel_id "
            "RETURNING panel_id",
            values | {"panel_id": panel_id, "now": stored(utc_now())},
        ).fetchall()
    return bool(updated)


def delete_panel(db: Database, panel_id: int) -> bool:
    with db.writing() as cursor:
        deleted = cursor.execute(
            "DELETE FROM dashboard_panels WHERE panel_id = ? RETURNING panel_id", [panel_id]
        ).fetchall()
    return bool(deleted)


def get_panel(db: Database, panel_id: int, as_type: type[Row]) -> Row | None:
    row = db.cursor().execute(_select("WHERE panel_id = ?"), [panel_id]).fetchone()
    return _decode(row, as_type) if row else None


def list_panels(db: Database, as_type: type[Row], *, tabs: Iterable[str] | None = None) -> list[Row]:
    """Stored panels in tab order (position, then age); only those of ``tabs`` when given."""
    if tabs is None:
        rows = db.cursor().execute(_select()).fetchall()
    else:
        rows = (
            db.cursor().execute(_select("WHERE list_contains($tabs, tab)"), {"tabs": list(tabs)}).fetchall()
        )
    return [_decode(row, as_type) for row in rows]


def tab_titles(db: Database) -> list[str]:
    """Each stored tab's title, oldest tab first."""
    rows = (
        db.cursor()
        .execute("SELECT tab FROM dashboard_panels GROUP BY tab ORDER BY min(created_at), min(panel_id)")
        .fetchall()
    )
    return [tab for (tab,) in rows]


def replace_tab(db: Database, tabs: Iterable[str], panels: list[msgspec.Struct]) -> list[int]:
    """In one transaction: delete every panel of ``tabs``, then store ``panels`` in order (an
    import of a tab replaces what that tab held). The new panel_ids."""
    ids = []
    with db.writing() as cursor:
        cursor.execute("DELETE FROM dashboard_panels WHERE list_contains($tabs, tab)", {"tabs": list(tabs)})
        for position, panel in enumerate(panels):
            (panel_id,) = cursor.execute(
                _insert_sql(), _values(panel) | {"position": position} | _now()
            ).fetchone()
            ids.append(panel_id)
    return ids
