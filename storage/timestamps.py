"""Timestamps are stored as naive UTC (DuckDB TIMESTAMP) and handed out as aware UTC datetimes,
so every API answer carries an RFC 3339 offset and no reader guesses a time zone."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def stored(value):
    """``value`` as a TIMESTAMP column takes it: aware datetimes become naive UTC."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def read_back(row: dict) -> dict:
    """A row with its naive (UTC) timestamps made aware."""
    return {
        name: value.replace(tzinfo=timezone.utc) if isinstance(value, datetime) and value.tzinfo is None else value
        for name, value in row.items()
    }
