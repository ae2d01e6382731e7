"""What measuring one config produced: statistics, or a failure with its reason."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from engine.config import BenchmarkConfig

OK = "ok"
INCOMPATIBLE = "incompatible"  # the precision/device pair cannot run; not a crash
FAILED = "failed"  # crash, OOM kill, timeout, exception
REFUSED = "refused"  # the scheduler refused it up front (memory estimate)


@dataclass
class Statistics:
    """Latency statistics in milliseconds over ``n`` timed iterations."""

    n: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    ci_low_ms: float
    ci_high_ms: float
    ci_met: bool
    total_seconds: float


@dataclass
class Result:
    config: BenchmarkConfig
    status: str
    stats: Statistics | None = None
    throughput_items_per_second: float | None = None
    throughput_tokens_per_second: float | None = None
    load_time_ms: float | None = None
    cold_latency_ms: float | None = None
    memory_peak_mb: float | None = None
    samples_ms: list[float] = field(default_factory=list)
    threads: int | None = None
    torch_version: str | None = None
    device_name: str | None = None
    weights: str | None = None
    parameters_million: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    wall_seconds: float | None = None
    stop_reason: str | None = None  # progressive mode: why escalation stopped here

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict:
        data = asdict(self)
        data["config"] = self.config.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Result:
        data = dict(data)
        data["config"] = BenchmarkConfig.from_dict(data["config"])
        if data.get("stats") is not None:
            data["stats"] = Statistics(**data["stats"])
        return cls(**data)

    @classmethod
    def failure(cls, config: BenchmarkConfig, status: str, error_type: str, message: str) -> Result:
        return cls(config=config, status=status, error_type=error_type, error_message=message)
