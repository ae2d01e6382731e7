"""A run: the user's request, its expansion into configs, and its live state."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime

from engine.config import DEFAULT_SEQUENCE_LENGTH, BenchmarkConfig

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = "queued", "running", "completed", "failed", "cancelled"
TERMINAL_STATUSES = (COMPLETED, FAILED, CANCELLED)
PRIORITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3, "all": 3}


@dataclass
class RunRequest:
    """What a user asked for; field names are the seed API's."""

    priority: str = "high"
    hardware: list[str] = field(default_factory=lambda: ["cpu"])
    models: list[str] | None = None
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8])
    precision: str = "fp32"
    progressive_mode: bool = True
    incremental: bool = True
    sequence_length: int = DEFAULT_SEQUENCE_LENGTH
    force: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunRequest:
        return cls(**data)


def expand(request: RunRequest, models: list[str], hardware: list[str]) -> list[BenchmarkConfig]:
    """Every point of the request, in request order (the scheduler reorders for progressive mode)."""
    return [
        BenchmarkConfig(
            model=model,
            hardware=device,
            batch_size=batch_size,
            precision=request.precision,
            sequence_length=request.sequence_length,
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
    status: str = QUEUED
    current_step: str | None = None
    error: str | None = None
    created_at: datetime = field(default_factory=datetime.now)
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
    sequence: int = 0
    # Scheduler bookkeeping: the latest state snapshot taken, and the latest stored.
    version: int = 0
    saved_version: int = 0

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
        return list(dict.fromkeys(c.model for c in self.configs))

    def completed_models(self) -> int:
        return sum(
            all(c.key() in self.finished_keys for c in self.configs if c.model == model)
            for model in self.model_names()
        )

    def elapsed_seconds(self) -> float:
        if self.started_at is None:
            return 0.0
        end = self.completed_at or datetime.now()
        return max(0.0, (end - self.started_at).total_seconds())

    def estimated_remaining_seconds(self) -> float | None:
        """From the mean wall time of configs measured so far; None before the first."""
        if self.terminal:
            return 0.0
        if not self.measured_configs:
            return None
        remaining = self.total_configs - self.completed_configs
        return remaining * self.measured_seconds / self.measured_configs

    def record(self) -> dict:
        """The run as a test_runs row."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "priority": self.priority,
            "request": self.request.to_dict(),
            "total_configs": self.total_configs,
            "completed_configs": self.completed_configs,
            "current_step": self.current_step,
            "error": self.error,
            "total_models": len(self.model_names()),
            "completed_models": self.completed_models(),
            "environment": self.environments,
            "fingerprint": ",".join(sorted(set(self.fingerprints.values()))),
            "created_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
        }

    def status_object(self) -> dict:
        """The seed's status message, plus the extensions marked + in DESIGN.md."""
        remaining = self.estimated_remaining_seconds()
        return {
            "run_id": self.run_id,
            "status": self.status,
            "progress": round(self.progress, 6),
            "current_step": self.current_step,
            "start_time": self.started_at.isoformat() if self.started_at else None,
            "elapsed_time": round(self.elapsed_seconds(), 3),
            "estimated_remaining_time": None if remaining is None else round(remaining, 3),
            "completed_models": self.completed_models(),
            "total_models": len(self.model_names()),
            "error": self.error,
            "completed_configs": self.completed_configs,
            "total_configs": self.total_configs,
            "priority": self.priority,
            "created_at": self.created_at.isoformat(),
            "completion_time": self.completed_at.isoformat() if self.completed_at else None,
        }
