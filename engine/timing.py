"""The adaptive timing loop, its two timing modes, and the per-iteration timers.

**latency** (``timing="latency"``): each call is timed on its own and the device
is synchronised after it: what a caller waits for one call. On CPU (and MPS/XPU,
with a device synchronize before the stop reading) the timer is
``time.perf_counter_ns`` around the call. On CUDA (and ROCm, which torch drives
through ``torch.cuda``) it is a pair of ``torch.cuda.Event(enable_timing=True)``
recorded around the call on the current stream, read after ``end.synchronize()``.

**throughput** (``timing="throughput"``): calls are pipelined, as
``torch.utils.benchmark``'s ``blocked_autorange`` and optimum-benchmark time them.
On CUDA each iteration still has its own event pair, but the host does not wait
between iterations: a block of iterations (about ``gpu_block_seconds`` of work) is
queued, then one synchronize ends the block and every pair is read. On the host
clock (CPU, MPS, XPU) a sample is a block of k calls timed together (one device
sync at its end), k doubled until the clock's own cost is below
``max_timer_share`` (0.1%) of the block; the sample is the block's time over k.

Either way a sample is the time of one call, and the items/s of a config is the
items it processed over the wall seconds of the whole timed loop (``total_seconds``).

Stopping. The loop stops once the 95% CI of the median (``engine.stats``) is
within ``ci_target`` after ``min_iterations`` samples and ``min_seconds``, or gives up
at ``max_seconds`` / ``max_iterations``. The CI is only computed each time the
sample count has grown by a quarter, so its O(n log n) sort adds a constant
amortised cost per sample, and the time budget is checked after every step.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import torch

from engine.config import MeasurementSettings
from engine.stats import ci_met

NS_PER_MS = 1_000_000

IterationTimer = Callable[[Callable[[], object]], int]  # runs fn once, returns its duration in ns
# Runs one or more calls and records one sample (ns per call) for each of at most `limit` of them.
Step = Callable[[Callable[[], object], Callable[[float], None], int], None]

GPU_EVENT_TYPES = ("cuda", "rocm")
_SYNC_BACKENDS = {"cuda": "cuda", "rocm": "cuda", "mps": "mps", "xpu": "xpu"}
MAX_BLOCK_CALLS = 1 << 20
MAX_GPU_BLOCK = 1024


class TimedLoop(NamedTuple):
    samples_ms: list[float]  # one per sample: the time of one call
    total_seconds: float  # wall time of the whole timed loop
    calls_per_sample: int  # calls timed together per sample (1 but for host-clock throughput blocks)

    @property
    def calls(self) -> int:
        return len(self.samples_ms) * self.calls_per_sample


def warm_up(fn: Callable[[], object], settings: MeasurementSettings, timer: IterationTimer) -> list[int]:
    """At least ``warmup_iterations`` calls and at least ``warmup_seconds`` of them; their timings in ns."""
    clock = time.perf_counter_ns
    deadline = clock() + int(settings.warmup_seconds * 1e9)
    readings: list[int] = []
    while len(readings) < settings.warmup_iterations or clock() < deadline:
        readings.append(timer(fn))
    return readings


def time_callable(
    fn: Callable[[], object],
    settings: MeasurementSettings,
    sync: Callable[[], object] | None = None,
    *,
    timer: IterationTimer | None = None,
) -> tuple[list[float], float]:
    """The adaptive loop in latency mode: (per-iteration latencies in ms, wall seconds of the loop).

    ``timer`` defaults to ``perf_counter_ns`` around ``fn()`` followed by ``sync()``.
    """
    loop = _run_loop(fn, settings, single_call_step(timer or perf_counter_timer(sync)), 1)
    return loop.samples_ms, loop.total_seconds


def time_config(
    fn: Callable[[], object],
    settings: MeasurementSettings,
    device_type: str,
    timing: str,
    *,
    timer: IterationTimer | None = None,
    estimate_ns: float | None = None,
) -> TimedLoop:
    """The adaptive loop in ``timing`` mode on a ``device_type`` device.

    ``timer`` is the latency timer (``choose_timer``'s by default); ``estimate_ns`` a
    warm-up reading of one call, which sizes CUDA throughput blocks and stands for the first
    trial block of host-clock ones.
    """
    if timing == "latency":
        return _run_loop(fn, settings, single_call_step(timer or choose_timer(device_type)), 1)
    if timing != "throughput":
        raise ValueError(f"unknown timing mode {timing!r}; choose latency or throughput")
    if device_type in GPU_EVENT_TYPES:
        return _run_loop(fn, settings, cuda_block_step(gpu_block_size(settings, estimate_ns)), 1)
    sync = device_synchronizer(device_type)
    calls = block_size(fn, sync, settings.max_timer_share, one_call_ns=estimate_ns)
    return _run_loop(fn, settings, host_block_step(calls, sync), calls)


def _run_loop(fn: Callable[[], object], settings: MeasurementSettings, step: Step, calls_per_sample: int) -> TimedLoop:
    # Like timeit: a garbage collection inside the loop would be a pause of Python's,
    # not of the model's, and would land in the tail percentiles.
    collecting = gc.isenabled()
    gc.disable()
    try:
        samples_ns, total_seconds = _timed_loop(fn, settings, step)
    finally:
        if collecting:
            gc.enable()
    return TimedLoop([sample / NS_PER_MS for sample in samples_ns], total_seconds, calls_per_sample)


def _timed_loop(fn: Callable[[], object], settings: MeasurementSettings, step: Step) -> tuple[list[float], float]:
    clock = time.perf_counter_ns
    samples_ns: list[float] = []
    record = samples_ns.append
    max_iterations = max(1, settings.max_iterations)
    start = clock()
    deadline = start + int(settings.max_seconds * 1e9)
    earliest_stop = start + int(settings.min_seconds * 1e9)
    next_check = min(max(1, settings.min_iterations), max_iterations)
    while True:
        step(fn, record, max_iterations - len(samples_ns))
        n = len(samples_ns)
        if n < next_check and clock() < deadline:
            continue
        now = clock()
        if n >= max_iterations or now >= deadline:
            break
        if now >= earliest_stop and n >= settings.min_iterations and ci_met(samples_ns, settings.ci_target):
            break
        next_check = min(n + max(1, n // 4), max_iterations)
    total_seconds = (clock() - start) / 1e9
    return samples_ns, total_seconds


def single_call_step(time_once: IterationTimer) -> Step:
    def step(fn, record, limit):
        record(time_once(fn))

    return step


def host_block_step(calls: int, sync: Callable[[], object] | None) -> Step:
    """k calls between two host-clock readings, one device sync at the end; a sample is the mean call."""
    clock = time.perf_counter_ns
    block = range(calls)

    def step(fn, record, limit):
        started = clock()
        for _ in block:
            fn()
        if sync is not None:
            sync()
        record((clock() - started) / calls)

    return step


def clock_overhead_ns(readings: int = 101) -> float:
    """What one pair of ``perf_counter_ns`` readings costs, the median of ``readings`` empty blocks."""
    clock = time.perf_counter_ns
    pairs = []
    for _ in range(readings):
        started = clock()
        pairs.append(clock() - started)
    return float(statistics.median(pairs))


def block_size(
    fn: Callable[[], object], sync: Callable[[], object] | None, max_share: float, *, one_call_ns: float | None = None
) -> int:
    """Calls per host-clock block: doubled from 1 until the clock's cost is at most ``max_share``
    of the block (as torch.utils.benchmark sizes its blocks).

    ``one_call_ns`` is the warm-up's reading of one call, taken as a 1-call trial block is (the
    clock around the call and the device sync): where it already meets the share, the block is
    that one call and no call is spent sizing it (the trial was a whole untimed call of the
    model: 1-7 ms a config at the tiny models' batch sizes 2-8). Otherwise trials start at 2 calls.
    """
    overhead = clock_overhead_ns()
    clock = time.perf_counter_ns
    calls = 1
    if one_call_ns is not None and one_call_ns > 0:
        if overhead / one_call_ns <= max_share:
            return 1
        calls = 2
    while calls < MAX_BLOCK_CALLS:
        started = clock()
        for _ in range(calls):
            fn()
        if sync is not None:
            sync()
        elapsed = clock() - started
        if elapsed > 0 and overhead / elapsed <= max_share:
            break
        calls *= 2
    return calls


def gpu_block_size(settings: MeasurementSettings, estimate_ns: float | None) -> int:
    """Iterations queued per CUDA block: about ``gpu_block_seconds`` of work, 1 to 1024."""
    if not estimate_ns or estimate_ns <= 0:
        return 16
    return max(1, min(MAX_GPU_BLOCK, math.ceil(settings.gpu_block_seconds * 1e9 / estimate_ns)))


def cuda_block_step(size: int) -> Step:
    """A block of iterations on the current stream, an event pair around each and no host sync
    between them; one synchronize at the end, then every pair is read."""
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(size)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(size)]

    def step(fn, record, limit):
        count = max(1, min(size, limit))
        for index in range(count):
            starts[index].record()
            fn()
            ends[index].record()
        ends[count - 1].synchronize()
        for index in range(count):
            record(starts[index].elapsed_time(ends[index]) * NS_PER_MS)  # elapsed_time is in ms

    return step


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
