"""The models and hardware_platforms rows that results point at.

``CatalogIds`` caches the ids per database (issue 16): a server stores one result per
measured config, and reading both catalog rows back each time was a fifth of that write.
"""

from __future__ import annotations

import weakref

import duckdb
import msgspec

_MODEL_FIELDS = ("name", "family", "type", "modality", "parameters_million", "source")


def ensure_model(cursor: duckdb.DuckDBPyConnection, model: msgspec.Struct) -> int:
    """Id of the model row named ``model.name``, inserted or refreshed from ``model``
    (a Struct with name, family, type, modality, parameters_million and source)."""
    model = dict(zip(_MODEL_FIELDS, _model_values(model), strict=True))
    known = cursor.execute(
        """SELECT model_id FROM models WHERE model_name = $name AND model_family IS NOT DISTINCT FROM $family
           AND model_type IS NOT DISTINCT FROM $type AND modality IS NOT DISTINCT FROM $modality
           AND parameters_million IS NOT DISTINCT FROM $parameters_million
           AND source IS NOT DISTINCT FROM $source""",
        {key: model.get(key) for key in ("name", "family", "type", "modality", "parameters_million", "source")},
    ).fetchall()
    if known:  # a read: most writes mention models already stored exactly so
        return known[0][0]
    row = cursor.execute(
        """INSERT INTO models (model_name, model_family, model_type, modality, parameters_million, source)
           VALUES ($name, $family, $type, $modality, $parameters_million, $source)
           ON CONFLICT (model_name) DO UPDATE SET
               model_family = excluded.model_family, model_type = excluded.model_type,
               modality = excluded.modality, parameters_million = excluded.parameters_million,
               source = excluded.source
           RETURNING model_id""",
        {key: model.get(key) for key in ("name", "family", "type", "modality", "parameters_million", "source")},
    ).fetchall()
    return row[0][0]


def _model_values(model: msgspec.Struct) -> tuple:
    return tuple(getattr(model, name, None) for name in _MODEL_FIELDS)


def _hardware_values(hardware: msgspec.Struct) -> dict:
    return {
        "type": hardware.type,
        "device": hardware.device,
        "name": hardware.name,
        "memory_gb": hardware.memory_gb,
        "compute_units": hardware.compute_units,
        "driver_version": hardware.driver_version,
        "capabilities": msgspec.json.encode(hardware, order="sorted").decode(),
    }


def ensure_hardware(cursor: duckdb.DuckDBPyConnection, hardware: msgspec.Struct) -> int:
    """Id of the hardware row for ``hardware.name`` on its device, inserted or refreshed
    (a Struct with name, type, device, memory_gb, compute_units and driver_version)."""
    values = _hardware_values(hardware)
    known = cursor.execute(
        """SELECT hardware_id FROM hardware_platforms WHERE platform = $name AND device_name = $device
           AND capabilities::VARCHAR = $capabilities""",
        {key: values[key] for key in ("name", "device", "capabilities")},
    ).fetchall()
    if known:
        return known[0][0]
    row = cursor.execute(
        """INSERT INTO hardware_platforms
               (hardware_type, device_name, platform, memory_gb, compute_units, driver_version, capabilities)
           VALUES ($type, $device, $name, $memory_gb, $compute_units, $driver_version, $capabilities)
           ON CONFLICT (platform, device_name) DO UPDATE SET
               memory_gb = excluded.memory_gb, capabilities = excluded.capabilities
           RETURNING hardware_id""",
        values,
    ).fetchall()
    return row[0][0]


class CatalogIds:
    """The catalog ids one database's writes have used, by model name and by hardware name.

    An entry holds the description it was stored with, so a changed description still goes
    to ``ensure_model``/``ensure_hardware`` and refreshes its row, exactly as without the
    cache. Ids found or inserted inside a transaction go to that transaction's ``pending``
    dict, kept (``keep``) only once it committed: a rolled-back insert never leaves an id
    behind. Only this module writes the two tables, and DuckDB lets one process at a time
    open the file read-write, so an entry cannot go stale behind the cache's back.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], tuple[object, int]] = {}

    def _lookup(self, pending: dict, key: tuple[str, str], values: object) -> int | None:
        hit = pending.get(key) or self._known.get(key)
        return hit[1] if hit is not None and hit[0] == values else None

    def model_id(self, cursor: duckdb.DuckDBPyConnection, model: msgspec.Struct, pending: dict) -> int:
        key, values = ("model", model.name), _model_values(model)
        found = self._lookup(pending, key, values)
        if found is None:
            found = ensure_model(cursor, model)
            pending[key] = (values, found)
        return found

    def hardware_id(self, cursor: duckdb.DuckDBPyConnection, hardware: msgspec.Struct, pending: dict) -> int:
        # The whole Struct is its description (capabilities stores all of it).
        key = ("hardware", hardware.name)
        found = self._lookup(pending, key, hardware)
        if found is None:
            found = ensure_hardware(cursor, hardware)
            pending[key] = (msgspec.structs.replace(hardware), found)  # a copy: Structs are mutable
        return found

    def keep(self, pending: dict) -> None:
        """The transaction that filled ``pending`` committed: its ids are the rows' now."""
        self._known.update(pending)


_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def catalog_ids(db: object) -> CatalogIds:
    """The ``CatalogIds`` of ``db`` (a storage.database.Database), made on first use."""
    cache = _CACHES.get(db)
    if cache is None:
        cache = _CACHES[db] = CatalogIds()
    return cache
