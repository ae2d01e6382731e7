"""The adaptive timing loop and the per-iteration timers.

Each iteration is timed on its own. On CPU (and MPS/XPU, with a device
synchronize before the stop reading) the timer is ``time.perf_counter_ns``
around the call. On CUDA (and ROCm, which torch drives through ``torch.cuda``)
it is a pair of ``torch.cuda.Event(enable_timing=True)`` recorded around the
call on the current stream, read after ``end.synchronize()``: GPU time of the
work without the host-side clock reads.

Stopping. The loop stops once the 95% CI of the median (``engine.stats``) is
within ``ci_target`` after ``min_iterations`` and ``min_seconds``, or gives up
at ``max_seconds`` / ``max_iterations``. The CI is only computed each time the
iteration count has grown by a quarter, so its O(n log n) sort adds a constant
amortised cost per iteration, and the time budget is checked every iteration.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import torch

from engine.config import MeasurementSettings
from engine.stats import ci_met

NS_PER_MS = 1_000_000

IterationTimer = Callable[[Callable[[], object]], int]  # runs fn once, returns its duration in ns

GPU_EVENT_TYPES = ("cuda", "rocm")
_SYNC_BACKENDS = {"cuda": "cuda", "rocm": "cuda", "mps": "mps", "xpu": "xpu"}


def warm_up(fn: Callable[[], object], settings: MeasurementSettings, timer: IterationTimer) -> None:
    """At least ``warmup_iterations`` calls and at least ``warmup_seconds`` of them."""
    clock = time.perf_counter_ns
    deadline = clock() + int(settings.warmup_seconds * 1e9)
    done = 0
    while done < settings.warmup_iterations or clock() < deadline:
        timer(fn)
        done += 1


def time_callable(
    fn: Callable[[], object],
    settings: MeasurementSettings,
    sync: Callable[[], object] | None = None,
    *,
    timer: IterationTimer | None = None,
) -> tuple[list[float], float]:
    """The adaptive timing loop alone: (per-iteration latencies in ms, wall seconds of the loop).

    ``timer`` defaults to ``perf_counter_ns`` around ``fn()`` followed by ``sync()``.
    """
    time_once = timer or perf_counter_timer(sync)
    # Like timeit: a garbage collection inside the loop would be a pause of Python's,
    # not of the model's, and would land in the tail percentiles.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _timed_loop(fn, settings, time_once)
    finally:
        if collecting:
            gc.enable()


def _timed_loop(fn: Callable[[], object], settings: MeasurementSettings, time_once: IterationTimer) -> tuple[list[float], float]:
    clock = time.perf_counter_ns
    samples_ns: list[int] = []
    record = samples_ns.append
    max_iterations = max(1, settings.max_iterations)
    start = clock()
    deadline = start + int(settings.max_seconds * 1e9)
    earliest_stop = start + int(settings.min_seconds * 1e9)
    next_check = min(max(1, settings.min_iterations), max_iterations)
    n = 0
    while True:
        record(time_once(fn))
        n += 1
        if n < next_check and clock() < deadline:
            continue
        now = clock()
        if n >= max_iterations or now >= deadline:
            break
        if now >= earliest_stop and n >= settings.min_iterations and ci_met(samples_ns, settings.ci_target):
            break
        next_check = min(n + max(1, n // 4), max_iterations)
    total_seconds = (clock() - start) / 1e9
    return [sample / NS_PER_MS for sample in samples_ns], total_seconds


def perf_counter_timer(sync: Callable[[], object] | None = None) -> IterationTimer:
    clock = time.perf_counter_ns
    if sync is None:

        def time_once(fn):
            started = clock()
            fn()
            return clock() - started

    else:

        def time_once(fn):
            started = clock()
            fn()
            sync()
            return clock() - started

    return time_once


def cuda_event_timer() -> IterationTimer:
    """Times one call with a CUDA event pair on the current stream of the current device."""
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)

    def time_once(fn):
        start.record()
        fn()
        end.record()
        end.synchronize()
        return round(start.elapsed_time(end) * NS_PER_MS)  # elapsed_time is in ms

    return time_once


def choose_timer(device_type: str) -> IterationTimer:
    """CUDA events on CUDA/ROCm; ``perf_counter_ns`` (with the device's synchronize) elsewhere."""
    if device_type in GPU_EVENT_TYPES:
        return cuda_event_timer()
    return perf_counter_timer(device_synchronizer(device_type))


def device_synchronizer(device_type: str) -> Callable[[], None] | None:
    """What a host clock must wait for before it reads the end of work on the device; None on CPU."""
    backend = _SYNC_BACKENDS.get(device_type)
    return getattr(torch, backend).synchronize if backend else None


def kept_samples(samples_ms: list[float], cap: int) -> list[float]:
    """At most ``cap`` samples, evenly strided over the whole run so they keep its time order and spread."""
    if cap <= 0:
        return []
    if len(samples_ms) <= cap:
        return list(samples_ms)
    stride = len(samples_ms) / cap
    return [samples_ms[int(i * stride)] for i in range(cap)]
