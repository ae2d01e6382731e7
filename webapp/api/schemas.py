"""Request bodies of the JSON API. Unknown fields are refused, as DESIGN.md requires."""

from __future__ import annotations

import msgspec

from engine.config import DEFAULT_SEQUENCE_LENGTH
from engine.runs import RunRequest


class RunBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    priority: str = "high"
    hardware: list[str] = msgspec.field(default_factory=lambda: ["cpu"])
    models: list[str] | None = None
    batch_sizes: list[int] = msgspec.field(default_factory=lambda: [1, 8])
    precision: str = "fp32"
    progressive_mode: bool = True
    incremental: bool = True
    sequence_length: int = DEFAULT_SEQUENCE_LENGTH
    force: bool = False

    def to_request(self) -> RunRequest:
        return RunRequest(**msgspec.structs.asdict(self))


class SqlBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    sql: str
    params: dict[str, str | int | float | bool | None] | None = None
