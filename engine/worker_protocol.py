"""The JSON lines between the server and ``python -m engine.worker``, as msgspec Structs.

Requests carry an ``op`` tag, events an ``event`` tag. Both sides decode with the
union types below, so a malformed line is refused with msgspec's own reason.
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine.config import Job
from engine.hardware import HardwareInfo
from engine.models.spec import ModelInfo
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


class PlanQuery(msgspec.Struct, tag_field="op", tag="plan", kw_only=True):
    """What planning a run asks of torch and transformers, asked of a started worker instead, so
    that the CLI imports neither (issue 16): the models (``models``, or the ``priority``'s tier
    where None), this machine's devices and the worker's device environment."""

    models: list[str] | None = None
    priority: str = "critical"


WorkerRequest = RunJob | Ping | Shutdown | MemoryQuery | PlanQuery


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


class PlannedModel(msgspec.Struct, kw_only=True):
    """A model as planning fits configs to it: what the models table stores (``info``, whose
    parameter count is rounded), the exact count that orders a progressive run, and the
    engine.models.spec.ModelSpec fields ``info`` has not."""

    info: ModelInfo
    parameters_million: float
    image_size: int | None = None
    chooses_attention: bool = False


class PlanFacts(msgspec.Struct, tag_field="event", tag="plan", kw_only=True):
    """The answer to PlanQuery: engine.hardware.detect_hardware() and environment(device) as the
    worker reads them, and the models resolved in order by its registry; ``models_error`` is
    its registry's refusal of a name (then ``models`` is empty)."""

    hardware: list[HardwareInfo]
    environment: dict[str, Any]
    models: list[PlannedModel] = []
    models_error: str | None = None


WorkerEvent = Ready | Started | JobResult | Pong | MemoryInfo | WorkerError | PlanFacts

encode = msgspec.json.Encoder().encode
request_decoder = msgspec.json.Decoder(WorkerRequest)
event_decoder = msgspec.json.Decoder(WorkerEvent)
