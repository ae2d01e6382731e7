"""A run: the user's request, its expansion into configs, and its live state.

``RunRequest``, ``RunStatus``, ``RunRecord`` and ``RunResults`` are the one shape of
each concept for the API, the CLI, the form, Channels and the test_runs table.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Literal, get_args, get_origin, get_type_hints

import msgspec
from msgspec import Meta

from engine.config import (
    DEFAULT_NEW_TOKENS,
    DEFAULT_SCENARIO,
    DEFAULT_SEQUENCE_LENGTH,
    AttnImplementation,
    BenchmarkConfig,
    MeasurementSettings,
    Precision,
    Scenario,
    Timing,
    default_timing,
)
from engine.errors import InvalidRequestError
from engine.result import ResultRow

def utc_now() -> datetime:
    """Every time the engine records is aware UTC, so API answers carry an RFC 3339 offset."""
    return datetime.now(timezone.utc)


Priority = Literal["critical", "high", "medium", "low", "all"]
PRIORITIES: tuple[str, ...] = get_args(Priority)
PRIORITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3, "all": 3}

RunStatusName = Literal["queued", "running", "completed", "failed", "cancelled"]
RUN_STATUSES: tuple[str, ...] = get_args(RunStatusName)
QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = RUN_STATUSES
TERMINAL_STATUSES = (COMPLETED, FAILED, CANCELLED)

MAX_BATCH_SIZE = 4096
MAX_BATCH_SIZES = 64
MAX_SEQUENCE_LENGTH = 32768
MAX_IMAGE_SIZE = 4096
MAX_THREADS = 1024
MAX_REPEATS = 20
MAX_NEW_TOKENS = 4096
# A generation needs a second token for a per-token latency (TPOT) to exist.
MIN_NEW_TOKENS = 2

Name = Annotated[str, Meta(min_length=1, max_length=512)]
BatchSize = Annotated[int, Meta(ge=1, le=MAX_BATCH_SIZE)]


class RunRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What a user asked for; field names are the seed API's. These defaults are the only ones:
    the API, the CLI, the client and the run form all leave unset fields to them."""

    priority: Priority = "high"
    hardware: Annotated[list[Name], Meta(min_length=1, max_length=64)] = msgspec.field(default_factory=lambda: ["cpu"])
    models: Annotated[list[Name], Meta(min_length=1, max_length=256)] | None = None  # None: the priority's tier
    batch_sizes: Annotated[list[BatchSize], Meta(min_length=1, max_length=MAX_BATCH_SIZES)] = msgspec.field(
        default_factory=lambda: [1, 8]
    )
    precision: Precision = "fp32"
    progressive_mode: bool = True
    incremental: bool = True
    sequence_length: Annotated[int, Meta(ge=1, le=MAX_SEQUENCE_LENGTH)] = DEFAULT_SEQUENCE_LENGTH
    force: bool = False
    # None: latency at batch size 1, throughput at larger batches (engine.config.default_timing).
    timing: Timing | None = None
    # None: sdpa for transformers models; a custom workload keeps its own attention.
    attn_implementation: AttnImplementation | None = None
    # None: each vision model's own size; models that take no image ignore it.
    image_size: Annotated[int, Meta(ge=1, le=MAX_IMAGE_SIZE)] | None = None
    # torch threads in the worker; None: the server's setting, else torch's default there.
    threads: Annotated[int, Meta(ge=1, le=MAX_THREADS)] | None = None
    # Fresh worker processes each config is measured in, their samples pooled (engine.repeats);
    # above 1 the spread of their medians is recorded (between_process_cv).
    repeats: Annotated[int, Meta(ge=1, le=MAX_REPEATS)] = 1
    # forward: one forward pass; generate: greedy decoding of new_tokens tokens with the KV cache
    # (decoder, encoder-decoder and audio models only; engine.generation).
    scenario: Scenario = DEFAULT_SCENARIO
    # generate: tokens each generation produces, exactly (min_new_tokens = max_new_tokens).
    new_tokens: Annotated[int, Meta(ge=MIN_NEW_TOKENS, le=MAX_NEW_TOKENS)] = DEFAULT_NEW_TOKENS


def run_request(fields: dict) -> RunRequest:
    """A RunRequest from ``fields`` (a form's, the CLI's), checked as the API checks its body;
    InvalidRequestError names the first bad field."""
    try:
        return msgspec.convert(fields, RunRequest)
    except msgspec.ValidationError as error:
        name, reason = field_and_reason(str(error), literal_fields(RunRequest))
        raise InvalidRequestError(name or "request", reason) from None


def field_and_reason(
    message: str, choices: dict[str, tuple] | None = None, field: str | None = None
) -> tuple[str | None, str]:
    """The top-level field and the reason in a msgspec validation message
    ("Expected `int` >= 1 - at `$.batch_sizes[0]`" is batch_sizes). For a field named in
    ``choices``, a refused value's reason lists the values it may take. ``field`` is the name
    to use when the message names none (a query parameter's)."""
    unknown = re.search(r"unknown field `([^`]+)`", message)
    if unknown:
        return unknown.group(1), "unknown field; allowed fields are listed in the API docs at /schema"
    location = re.search(r"at `\$\.([A-Za-z_]+)([^`]*)`", message)
    missing = re.search(r"missing required field `([^`]+)`", message)
    name = location.group(1) if location else (missing.group(1) if missing else field)
    reason = plain_bound(re.sub(r"\s*- at `[^`]*`$", "", message))
    allowed = (choices or {}).get(name)
    if allowed and reason.startswith("Invalid enum value"):
        reason = f"must be one of {', '.join(allowed)}, not {reason.removeprefix('Invalid enum value ')}"
    if location and location.group(2):  # an element or a key of the field: batch_sizes[1]
        reason = f"{reason} (at {location.group(1)}{location.group(2)})"
    return name, reason


_BOUND = re.compile(r"Expected `(?P<kind>\w+)`(?P<length> of length)? (?P<op>>=|<=|>|<) (?P<limit>\S+)")
_MULTIPLE = re.compile(r"Expected `\w+` that's a multiple of (?P<limit>\S+)")
_NUMBER_BOUNDS = {">=": "at least", "<=": "at most", ">": "above", "<": "below"}
_LENGTH_UNITS = {"str": "character", "array": "item", "object": "entry"}


def plain_bound(reason: str) -> str:
    """msgspec's words for a bound ("Expected `int` <= 4096", "Expected `array` of length >= 1")
    in plain ones ("must be at most 4096", "must have at least 1 item"); any other reason as it is."""
    multiple = _MULTIPLE.fullmatch(reason)
    if multiple:
        return f"must be a multiple of {multiple['limit']}"
    bound = _BOUND.fullmatch(reason)
    if bound is None:
        return reason
    limit, where = bound["limit"], _NUMBER_BOUNDS[bound["op"]]
    if not bound["length"]:
        return f"must be {where} {limit}"
    unit = _LENGTH_UNITS.get(bound["kind"], "item")
    if limit != "1":
        unit = "entries" if unit == "entry" else f"{unit}s"
    return f"must be {where} {limit} {unit} long" if bound["kind"] == "str" else f"must have {where} {limit} {unit}"


def literal_fields(struct: type) -> dict[str, tuple]:
    """The fields of ``struct`` that take one of fixed values, with those values."""
    hints = get_type_hints(struct)
    choices = {name: get_args(kind) for name, kind in hints.items() if get_origin(kind) is Literal}
    for name, kind in hints.items():  # an optional choice: Literal[...] | None
        literal = [arg for arg in get_args(kind) if get_origin(arg) is Literal]
        if name not in choices and len(literal) == 1:
            choices[name] = get_args(literal[0])
    return choices


class RunStatus(msgspec.Struct, kw_only=True):
    """The seed's status message, plus the extensions marked + in DESIGN.md."""

    run_id: str
    status: RunStatusName
    progress: Annotated[float, Meta(ge=0, le=1)]
    current_step: str | None
    start_time: datetime | None
    elapsed_time: float
    estimated_remaining_time: float | None
    completed_models: int
    total_models: int
    error: str | None
    completed_configs: int
    total_configs: int
    priority: Priority
    created_at: datetime
    completion_time: datetime | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class RunRecord(RunStatus, kw_only=True):
    """A test_runs row: the run's latest status, its request and its environment."""

    # None: the row holds no request (another writer stored the run without one): pages say
    # so, and nothing can be planned again from it.
    request: RunRequest | None = None
    environment: dict[str, dict] = {}
    fingerprint: str | None = None
    report_error: str | None = None  # why its report files could not be written, if they could not


class RunResults(msgspec.Struct, kw_only=True):
    """A run's results so far: measured rows and failed, refused or skipped ones, and ``reused``:
    the results of earlier runs it stood on instead of measuring a config again (incremental
    mode), each with the ``run_id`` it came from."""

    run_id: str
    status: RunStatusName
    config: RunRequest | None  # None: the run's row holds no request (RunRecord.request)
    results: list[ResultRow]
    failures: list[ResultRow]
    start_time: datetime | None
    completion_time: datetime | None
    reused: list[ResultRow] = msgspec.field(default_factory=list)


def expand(request: RunRequest, models: list[str], hardware: list[str]) -> list[BenchmarkConfig]:
    """Every point of the request, in request order (the scheduler reorders for progressive mode)."""
    return [
        BenchmarkConfig(
            model_name=model,
            hardware=device,
            batch_size=batch_size,
            precision=request.precision,
            sequence_length=request.sequence_length,
            image_size=request.image_size,
            # A generation is always timed call by call, a device sync at every token.
            timing="latency" if request.scenario == "generate" else request.timing or default_timing(batch_size),
            attn_implementation=request.attn_implementation,
            scenario=request.scenario,
            new_tokens=request.new_tokens if request.scenario == "generate" else None,
        )
        for model in models
        for device in hardware
        for batch_size in request.batch_sizes
    ]


@dataclass
class RunState:
    """Live state of one run. Mutated only by the scheduler, under its lock."""

    request: RunRequest
    configs: list[BenchmarkConfig]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    status: RunStatusName = QUEUED
    current_step: str | None = None
    error: str | None = None
    created_at: datetime = field(default_factory=lambda: utc_now())
    started_at: datetime | None = None
    completed_at: datetime | None = None
    finished_keys: set[str] = field(default_factory=set)
    measured_seconds: float = 0.0
    measured_configs: int = 0
    skipped_configs: int = 0
    failed_configs: int = 0
    fingerprints: dict[str, str] = field(default_factory=dict)
    # progressive mode: (model, hardware, precision) -> (batch size, throughput) last measured
    last_throughput: dict[tuple, tuple[int, float]] = field(default_factory=dict)
    environments: dict[str, dict] = field(default_factory=dict)
    # The stopping rules and thread count this run's configs are measured with (planning sets them).
    settings: MeasurementSettings | None = None
    sequence: int = 0
    # Scheduler bookkeeping: the latest state snapshot taken, the latest told to listeners and
    # the latest stored (a snapshot told but not stored must not keep an older one's row from
    # storage: a cancel's); whether the end of the run is being told to listeners, and when
    # they have heard it.
    version: int = 0
    published_version: int = 0
    stored_version: int = 0
    finishing: bool = False
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def priority(self) -> str:
        return self.request.priority

    @property
    def total_configs(self) -> int:
        return len(self.configs)

    @property
    def completed_configs(self) -> int:
        return len(self.finished_keys)

    @property
    def progress(self) -> float:
        return 1.0 if not self.configs else self.completed_configs / self.total_configs

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def pending(self, hardware: str) -> list[BenchmarkConfig]:
        return [c for c in self.configs if c.hardware == hardware and c.key() not in self.finished_keys]

    def model_names(self) -> list[str]:
        return list(dict.fromkeys(c.model_name for c in self.configs))

    def completed_models(self) -> int:
        return sum(
            all(c.key() in self.finished_keys for c in self.configs if c.model_name == model)
            for model in self.model_names()
        )

    def elapsed_seconds(self) -> float:
        if self.started_at is None:
            return 0.0
        end = self.completed_at or utc_now()
        return max(0.0, (end - self.started_at).total_seconds())

    def estimated_remaining_seconds(self) -> float | None:
        """From the mean wall time of configs measured so far; None before the first."""
        if self.terminal:
            return 0.0
        if not self.measured_configs:
            return None
        remaining = self.total_configs - self.completed_configs
        return remaining * self.measured_seconds / self.measured_configs

    def status_now(self) -> RunStatus:
        remaining = self.estimated_remaining_seconds()
        return RunStatus(
            run_id=self.run_id,
            status=self.status,
            progress=round(self.progress, 6),
            current_step=self.current_step,
            start_time=self.started_at,
            elapsed_time=round(self.elapsed_seconds(), 3),
            estimated_remaining_time=None if remaining is None else round(remaining, 3),
            completed_models=self.completed_models(),
            total_models=len(self.model_names()),
            error=self.error,
            completed_configs=self.completed_configs,
            total_configs=self.total_configs,
            priority=self.priority,
            created_at=self.created_at,
            completion_time=self.completed_at,
        )

    def record(self, status: RunStatus | None = None) -> RunRecord:
        """The run as a test_runs row: ``status`` (now, by default) plus request and environment."""
        status = status or self.status_now()
        return RunRecord(
            **msgspec.structs.asdict(status),
            request=self.request,
            environment=self.environments,
            fingerprint=",".join(sorted(set(self.fingerprints.values()))),
        )
