"""Bodies that only the JSON API has. The run request, statuses, results, models and
hardware are the engine's own Structs (engine.runs, engine.result, engine.hardware)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from engine.runs import RunStatusName


class RunAccepted(msgspec.Struct, kw_only=True):
    """The answer to POST /run: the run is queued; follow it with /status or the WebSocket."""

    run_id: str
    status: RunStatusName
    message: str
    started_at: datetime
    total_configs: int


class SqlBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    sql: str
    params: dict[str, str | int | float | bool | None] | None = None
