"""The models and hardware_platforms rows that results point at."""

from __future__ import annotations

import duckdb
import msgspec


def ensure_model(cursor: duckdb.DuckDBPyConnection, model: msgspec.Struct) -> int:
    """Id of the model row named ``model.name``, inserted or refreshed from ``model``
    (a Struct with name, family, type, modality, parameters_million and source)."""
    model = msgspec.structs.asdict(model)
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


def ensure_hardware(cursor: duckdb.DuckDBPyConnection, hardware: msgspec.Struct) -> int:
    """Id of the hardware row for ``hardware.name`` on its device, inserted or refreshed
    (a Struct with name, type, device, memory_gb, compute_units and driver_version)."""
    values = {
        "type": hardware.type,
        "device": hardware.device,
        "name": hardware.name,
        "memory_gb": hardware.memory_gb,
        "compute_units": hardware.compute_units,
        "driver_version": hardware.driver_version,
        "capabilities": msgspec.json.encode(hardware, order="sorted").decode(),
    }
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
