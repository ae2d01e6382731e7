"""What one benchmark point is, and the knobs of the measurement loop."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
PRIORITIES = ("critical", "high", "medium", "low")
DEFAULT_SEQUENCE_LENGTH = 128
DEFAULT_IMAGE_SIZE = 224


@dataclass(frozen=True)
class BenchmarkConfig:
    """One point to measure: model x hardware x batch size x precision x input shape."""

    model: str
    hardware: str
    batch_size: int
    precision: str = "fp32"
    sequence_length: int = DEFAULT_SEQUENCE_LENGTH
    image_size: int = DEFAULT_IMAGE_SIZE

    def key(self) -> str:
        """Stable identity of the point, used for incremental skips and resume."""
        return (
            f"{self.model}|{self.hardware}|bs{self.batch_size}|{self.precision}"
            f"|seq{self.sequence_length}|img{self.image_size}"
        )

    def label(self) -> str:
        return f"{self.model} on {self.hardware}, batch {self.batch_size}, {self.precision}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BenchmarkConfig:
        return cls(**data)


@dataclass(frozen=True)
class MeasurementSettings:
    """Stopping rules of the adaptive timing loop.

    The loop stops once the 95% CI of the median is within ``ci_target`` (relative)
    after at least ``min_iterations`` and ``min_seconds``; it gives up at
    ``max_seconds`` and reports ``ci_met=False``.
    """

    warmup_iterations: int = 3
    warmup_seconds: float = 0.05
    min_iterations: int = 10
    min_seconds: float = 0.2
    max_seconds: float = 10.0
    max_iterations: int = 100_000
    ci_target: float = 0.02
    threads: int | None = None
    keep_samples: int = 10_000

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MeasurementSettings:
        return cls(**data)


@dataclass(frozen=True)
class Job:
    """What the scheduler hands a worker: a config plus where to find models."""

    config: BenchmarkConfig
    settings: MeasurementSettings = field(default_factory=MeasurementSettings)
    models_dir: str | None = None
    custom_benchmarks_dir: str | None = None

    def to_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "settings": self.settings.to_dict(),
            "models_dir": self.models_dir,
            "custom_benchmarks_dir": self.custom_benchmarks_dir,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Job:
        return cls(
            config=BenchmarkConfig.from_dict(data["config"]),
            settings=MeasurementSettings.from_dict(data.get("settings") or {}),
            models_dir=data.get("models_dir"),
            custom_benchmarks_dir=data.get("custom_benchmarks_dir"),
        )


def fingerprint(environment: dict) -> str:
    """Short hash of the environment facts that change what a measurement means."""
    blob = json.dumps(environment, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
