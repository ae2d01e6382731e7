"""The models and hardware_platforms rows that results point at."""

from __future__ import annotations

import json

import duckdb


def ensure_model(cursor: duckdb.DuckDBPyConnection, model: dict) -> int:
    """Id of the model row named ``model["name"]``, inserted or refreshed from ``model``."""
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


def ensure_hardware(cursor: duckdb.DuckDBPyConnection, hardware: dict) -> int:
    """Id of the hardware row for ``hardware["name"]`` on its device, inserted or refreshed."""
    values = {
        "type": hardware["type"],
        "device": hardware.get("device") or hardware["name"],
        "name": hardware["name"],
        "memory_gb": hardware.get("memory_gb"),
        "compute_units": hardware.get("compute_units"),
        "driver_version": hardware.get("driver_version"),
        "capabilities": json.dumps(hardware, default=str, sort_keys=True),
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
