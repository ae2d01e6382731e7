"""What measuring one config produced: statistics, or a failure with its reason.

``Measurement`` is the one shape of a result, from the worker's pipe to storage, the
Channels events, the API and the pages. Its field names are the storage columns.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from engine.config import DEFAULT_SEQUENCE_LENGTH, BenchmarkConfig, Precision, default_timing

# What happened to one config. Not a run's status: a run is queued/running/... (engine.runs).
ResultStatus = Literal["ok", "incompatible", "failed", "refused", "skipped"]
OK: ResultStatus = "ok"
INCOMPATIBLE: ResultStatus = "incompatible"  # the precision/device pair cannot run; not a crash
FAILED: ResultStatus = "failed"  # crash, OOM kill, timeout, exception
REFUSED: ResultStatus = "refused"  # the scheduler refused it up front (memory estimate)
SKIPPED: ResultStatus = "skipped"  # progressive mode left it unmeasured, on purpose


class Statistics(msgspec.Struct, kw_only=True):
    """Latency statistics in milliseconds over ``n_samples`` timed iterations.

    Every field is optional because a failed config has none of them; ``summarize``
    always fills them all.
    """

    n_samples: int | None = None
    average_latency_ms: float | None = None
    std_latency_ms: float | None = None
    min_latency_ms: float | None = None
    p50_latency_ms: float | None = None
    p90_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    p99_latency_ms: float | None = None
    max_latency_ms: float | None = None
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None
    ci_met: bool | None = None
    # One-sided 95% order-statistic bounds of p90 and p99 (engine.stats.quantile_bounds);
    # None where too few samples reach one (p99's upper bound needs n >= 299).
    p90_ci_low_ms: float | None = None
    p90_ci_high_ms: float | None = None
    p99_ci_low_ms: float | None = None
    p99_ci_high_ms: float | None = None
    total_timed_seconds: float | None = None


class Measurement(Statistics, kw_only=True):
    """One config's result or failure, with what is needed to reproduce it."""

    model_name: str
    hardware: str
    batch_size: int
    precision: Precision = "fp32"
    sequence_length: int | None = DEFAULT_SEQUENCE_LENGTH
    image_size: int | None = None  # the size a vision model ran at; None for models without images
    timing: str | None = None  # "latency" | "throughput"; None in rows stored before timing modes
    attn_implementation: str | None = None  # sdpa | eager | flash_attention_2; None: the model's own
    # forward | generate (issue 11). For generate the latency statistics above (p50_latency_ms,
    # ci_low_ms, samples_ms, ...) are those of the whole generation, end to end.
    scenario: str | None = "forward"
    new_tokens: int | None = None  # generate: tokens each generation produced
    status: ResultStatus = OK
    throughput_items_per_second: float | None = None
    # 95% CI of throughput_items_per_second, from the mean latency's (engine.stats.throughput_ci):
    # the throughput is mean-based, so the median's CI says nothing of it. The high end is None
    # where no finite rate is ruled out; both are None in rows stored before they were kept.
    throughput_ci_low_items_per_second: float | None = None
    throughput_ci_high_items_per_second: float | None = None
    throughput_tokens_per_second: float | None = None
    # generate (engine.generation), None for forward results. TTFT: from the call to the first
    # token's logits (the prefill). TPOT: a sample's mean gap between consecutive tokens after
    # the first; tpot_ms and its CI are over samples, tpot_p90/p99_ms over every per-token gap.
    ttft_ms: float | None = None  # median
    ttft_p90_ms: float | None = None
    ttft_p99_ms: float | None = None
    ttft_ci_low_ms: float | None = None  # 95% CI of the median (engine.stats.median_ci)
    ttft_ci_high_ms: float | None = None
    tpot_ms: float | None = None  # median over samples
    tpot_p90_ms: float | None = None
    tpot_p99_ms: float | None = None
    tpot_ci_low_ms: float | None = None
    tpot_ci_high_ms: float | None = None
    e2e_ms: float | None = None  # median end-to-end generation latency (= p50_latency_ms)
    decode_tokens_per_second: float | None = None  # batch * (new_tokens - 1) / median decode seconds
    prefill_tokens_per_second: float | None = None  # batch * prompt tokens / median TTFT
    load_time_ms: float | None = None
    cold_latency_ms: float | None = None
    memory_peak_mb: float | None = None  # inference peak above the loaded model
    load_memory_peak_mb: float | None = None  # build, cast and move, above the worker before the build
    memory_reserved_peak_mb: float | None = None  # CUDA: the caching allocator's reserved peak
    process_device_memory_mb: float | None = None  # CUDA: this worker's device memory as NVML reports it
    calls_per_sample: int | None = None  # calls timed together per sample (throughput blocks on the host clock)
    # GPU readings (NVML) just before and just after the timed loop; throttled when the SM clock
    # fell by more than 10% across it.
    sm_clock_mhz_before: float | None = None
    sm_clock_mhz_after: float | None = None
    temperature_c_before: float | None = None
    temperature_c_after: float | None = None
    power_w_before: float | None = None
    power_w_after: float | None = None
    throttled: bool | None = None
    # CPU seconds that other processes used while this config was timed, and whether that
    # exceeded 10% of one core (engine.contention): a contended result is not to be trusted.
    other_cpu_seconds: float | None = None
    contended: bool | None = None
    # Every timed iteration (capped at keep_samples); None where not measured or not loaded
    # (API rows leave them out: a row's samples are served on their own).
    samples_ms: list[float] | None = None
    # generate: every sample's TTFT and every per-token gap (capped at keep_samples each).
    ttft_samples_ms: list[float] | None = None
    tpot_samples_ms: list[float] | None = None
    threads: int | None = None
    torch_version: str | None = None
    device_name: str | None = None
    weights: str | None = None
    parameters_million: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    wall_seconds: float | None = None
    stop_reason: str | None = None  # progressive mode: why escalation stopped here
    # Measured in this many fresh worker processes, samples pooled (engine.repeats), and the
    # spread of their medians (standard deviation over mean); None for a single process.
    repeats: int | None = None
    between_process_cv: float | None = None
    # Where it was measured (issue 13): the Ray node's name (None on the server's own
    # devices) and the machine's hostname.
    node: str | None = None
    host: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def config(self) -> BenchmarkConfig:
        return BenchmarkConfig(
            model_name=self.model_name, hardware=self.hardware, batch_size=self.batch_size,
            precision=self.precision, sequence_length=self.sequence_length or DEFAULT_SEQUENCE_LENGTH,
            image_size=self.image_size, timing=self.timing or default_timing(self.batch_size),
            attn_implementation=self.attn_implementation, scenario=self.scenario or "forward",
            new_tokens=self.new_tokens,
        )

    @classmethod
    def of(cls, config: BenchmarkConfig, **fields) -> Measurement:
        """A measurement of ``config``; ``fields`` are the rest of it."""
        return cls(**msgspec.structs.asdict(config), **fields)

    @classmethod
    def failure(cls, config: BenchmarkConfig, status: ResultStatus, error_type: str, message: str) -> Measurement:
        return cls.of(config, status=status, error_type=error_type, error_message=message)


class ResultRow(Measurement, kw_only=True):
    """A stored measurement or failure as read back: the measurement plus what storage adds.

    ``results_view`` and ``failures_view`` rows, the API's result rows and the pages' rows.
    """

    run_id: str | None = None
    result_id: int | None = None
    model_family: str | None = None
    model_type: str | None = None
    hardware_type: str | None = None
    created_at: datetime | None = None
