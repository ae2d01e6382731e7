"""The JSON lines between the server and ``python -m engine.worker``, as msgspec Structs.

Requests carry an ``op`` tag, events an ``event`` tag. Both sides decode with the
union types below, so a malformed line is refused with msgspec's own reason.
"""

from __future__ import annotations

import msgspec

from engine.config import Job
from engine.result import Measurement


class RunJob(msgspec.Struct, tag_field="op", tag="run", kw_only=True):
    job_id: str
    job: Job


class Ping(msgspec.Struct, tag_field="op", tag="ping"):
    pass


class Shutdown(msgspec.Struct, tag_field="op", tag="shutdown"):
    pass


class MemoryQuery(msgspec.Struct, tag_field="op", tag="memory"):
    """How much memory the worker's device has free: the server asks rather than open a CUDA context."""


WorkerRequest = RunJob | Ping | Shutdown | MemoryQuery


class Ready(msgspec.Struct, tag_field="event", tag="ready", kw_only=True):
    pid: int
    device: str
    torch_version: str


class Started(msgspec.Struct, tag_field="event", tag="started", kw_only=True):
    job_id: str


class JobResult(msgspec.Struct, tag_field="event", tag="result", kw_only=True):
    job_id: str
    result: Measurement


class Pong(msgspec.Struct, tag_field="event", tag="pong"):
    pass


class MemoryInfo(msgspec.Struct, tag_field="event", tag="memory", kw_only=True):
    free_bytes: int | None = None  # None: the device could not say


class WorkerError(msgspec.Struct, tag_field="event", tag="error", kw_only=True):
    message: str
    job_id: str | None = None


WorkerEvent = Ready | Started | JobResult | Pong | MemoryInfo | WorkerError

encode = msgspec.json.Encoder().encode
request_decoder = msgspec.json.Decoder(WorkerRequest)
event_decoder = msgspec.json.Decoder(WorkerEvent)
