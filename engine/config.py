"""What one benchmark point is, and the knobs of the measurement loop.

These are msgspec Structs: the worker's JSON-lines pipe, storage and the API all
carry them as they are, under the same field names.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal, get_args

import msgspec

Precision = Literal["fp32", "fp16", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
DEFAULT_SEQUENCE_LENGTH = 128
DEFAULT_IMAGE_SIZE = 224  # what a vision model with no stated size of its own takes

# latency: each call timed on its own, with a device sync after it (what a caller waits).
# throughput: calls pipelined, as torch.utils.benchmark's blocked_autorange times them.
Timing = Literal["latency", "throughput"]
TIMINGS: tuple[str, ...] = get_args(Timing)
AttnImplementation = Literal["sdpa", "eager", "flash_attention_2"]
ATTN_IMPLEMENTATIONS: tuple[str, ...] = get_args(AttnImplementation)
DEFAULT_ATTN_IMPLEMENTATION = "sdpa"
# forward: one forward pass, as served by an encoder. generate: greedy decoding of new_tokens
# tokens with the KV cache on (engine.generation): time to first token, per-token latency,
# decode throughput. generate applies to the models whose spec lists it (GENERATE_ARCHITECTURES).
Scenario = Literal["forward", "generate"]
SCENARIOS: tuple[str, ...] = get_args(Scenario)
DEFAULT_SCENARIO = "forward"
DEFAULT_NEW_TOKENS = 32
GENERATE_ARCHITECTURES = ("decoder", "encoder-decoder", "audio")


def default_timing(batch_size: int) -> str:
    """A request that names no timing mode: latency for one item at a time, throughput for batches."""
    return "latency" if batch_size == 1 else "throughput"


class BenchmarkConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One point to measure: model x hardware x batch size x precision x scenario x input shape
    x timing mode x attention implementation.

    ``image_size`` is the size a vision model runs at (planning fills in the model's own
    where the request names none); None for models that take no image. ``attn_implementation``
    is what transformers builds the model with; None leaves the model's own choice (custom
    workloads, whose attention is their code's).
    """

    model_name: str
    hardware: str
    batch_size: int
    precision: Precision = "fp32"
    sequence_length: int = DEFAULT_SEQUENCE_LENGTH
    image_size: int | None = None
    timing: Timing = "latency"
    attn_implementation: AttnImplementation | None = None
    scenario: Scenario = DEFAULT_SCENARIO
    new_tokens: int | None = None  # tokens each generation produces; None for forward configs

    def key(self) -> str:
        """Stable identity of the point, used for incremental skips and resume. A forward
        config's key is the one it had before scenarios, so its stored results still count."""
        image = "-" if self.image_size is None else self.image_size
        key = (
            f"{self.model_name}|{self.hardware}|bs{self.batch_size}|{self.precision}"
            f"|seq{self.sequence_length}|img{image}|{self.timing}|attn-{self.attn_implementation or 'own'}"
        )
        if self.scenario != DEFAULT_SCENARIO:
            key += f"|{self.scenario}-new{self.new_tokens}"
        return key

    def label(self) -> str:
        label = f"{self.model_name} on {self.hardware}, batch {self.batch_size}, {self.precision}"
        if self.scenario != DEFAULT_SCENARIO:
            label += f", {self.scenario} {self.new_tokens} tokens"
        return label


class MeasurementSettings(msgspec.Struct, frozen=True, kw_only=True):
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
    # Throughput mode on the host clock: calls per timed block grow until the clock's own
    # cost is below this share of the block (torch.utils.benchmark's rule of thumb).
    max_timer_share: float = 0.001
    # Throughput mode on CUDA: iterations queued between host syncs, each between its own event pair.
    gpu_block_seconds: float = 0.05


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """What the scheduler hands a worker: a config plus where to find models."""

    config: BenchmarkConfig
    settings: MeasurementSettings = MeasurementSettings()
    models_dir: str | None = None
    custom_benchmarks_dir: str | None = None


def fingerprint(environment: dict) -> str:
    """Short hash of the environment facts that change what a measurement means."""
    blob = json.dumps(environment, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
