"""One config measured in R worker processes (``repeats``): one result from the R measurements.

Samples from one process are correlated: they share its memory layout, its threads' placement
and whatever else ran on the machine meanwhile, so their confidence interval understates how
much a rerun moves (asv's authors make the same point). Measuring a config in several fresh
processes and pooling the samples gives statistics over all of them, and the spread of the
per-process medians, ``between_process_cv`` (standard deviation over mean), says how far one
process's median can be from another's. engine.compare widens a pooled median's CI by it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import msgspec

from engine.config import MeasurementSettings
from engine.result import Measurement
from engine.stats import summarize, throughput_ci


def between_process_cv(medians: Sequence[float]) -> float | None:
    """Standard deviation of the per-process medians over their mean; None for fewer than two."""
    values = [m for m in medians if m is not None and math.isfinite(m)]
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean > 0 else None


def _weighted_rate(results: Sequence[Measurement], field: str) -> float | None:
    """A rate over all processes: what each processed (rate x timed seconds), over their summed time."""
    pairs = [(getattr(r, field), r.total_timed_seconds) for r in results]
    if any(rate is None or seconds is None for rate, seconds in pairs):
        return None
    seconds = math.fsum(s for _, s in pairs)
    return math.fsum(rate * s for rate, s in pairs) / seconds if seconds > 0 else None


def _maximum(values) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _sum(values) -> float | None:
    present = [v for v in values if v is not None]
    return math.fsum(present) if present else None


def pool(results: Sequence[Measurement], settings: MeasurementSettings) -> Measurement:
    """The measurements of one config in several processes as one result.

    Statistics are over the pooled samples (capped at ``settings.keep_samples``, evenly, as a
    single process's are); rates are items (tokens) over the summed timed seconds; memory peaks
    are the highest; the load time and cold latency are the first process's (later ones would
    be just as cold, but one is what a single measurement reports); contended if any was.
    """
    from engine.timing import kept_samples  # imports torch: not at import (the CLI plans without it, issue 16)

    if not results:
        raise ValueError("pool() needs at least one measurement")
    if len(results) == 1:
        return msgspec.structs.replace(results[0], repeats=1)
    first = results[0]
    samples = [x for result in results for x in (result.samples_ms or [])]
    timed = _sum(r.total_timed_seconds for r in results) or 0.0
    stats = summarize(samples, timed, settings.ci_target)
    items_per_second = _weighted_rate(results, "throughput_items_per_second")
    items_per_second_low, items_per_second_high = throughput_ci(items_per_second, samples)
    pooled = {
        **msgspec.structs.asdict(stats),
        "samples_ms": kept_samples(samples, settings.keep_samples),
        "throughput_items_per_second": items_per_second,
        "throughput_ci_low_items_per_second": items_per_second_low,
        "throughput_ci_high_items_per_second": items_per_second_high,
        "throughput_tokens_per_second": _weighted_rate(results, "throughput_tokens_per_second"),
        "memory_peak_mb": _maximum(r.memory_peak_mb for r in results),
        "wall_seconds": _sum(r.wall_seconds for r in results),
        "repeats": len(results),
        "between_process_cv": between_process_cv([r.p50_latency_ms for r in results]),
    }
    # Fields a result may carry (engine.result grows them): pooled where they mean something.
    for field, combine in (("load_memory_peak_mb", _maximum), ("memory_reserved_peak_mb", _maximum),
                           ("process_device_memory_mb", _maximum), ("other_cpu_seconds", _sum)):
        if field in first.__struct_fields__:
            pooled[field] = combine(getattr(r, field) for r in results)
    if "contended" in first.__struct_fields__:
        flags = [r.contended for r in results]
        pooled["contended"] = True if any(flags) else (None if all(f is None for f in flags) else False)
    if "throttled" in first.__struct_fields__:
        flags = [r.throttled for r in results]
        pooled["throttled"] = True if any(flags) else (None if all(f is None for f in flags) else False)
    return msgspec.structs.replace(first, **pooled)
