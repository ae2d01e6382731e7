"""Measuring one config, inside a worker process: build, warm up, time adaptively, summarize.

Timing. Each iteration is timed on its own. On CPU (and MPS/XPU, with a device
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

Peak memory. CPU: the peak resident set size above the RSS just before the
model is built. On Linux the kernel's own high-water mark is used: it is reset
through ``/proc/self/clear_refs`` (``5``) and ``VmHWM`` is read afterwards, so
transient peaks inside an iteration count; freed heap is first handed back to
the OS (glibc ``malloc_trim``), so memory a previous config freed in this
long-lived worker does not hide this config's allocations. Elsewhere RSS is sampled with
psutil after each phase (build, cold call, warm-up, timing), a lower bound.
CUDA/XPU: ``max_memory_allocated`` after ``reset_peak_memory_stats``, less
what was allocated before the build. MPS has no peak counter: None.
"""

from __future__ import annotations

import ctypes
import gc
import time
import warnings
from collections.abc import Callable

import psutil
import torch

from engine.config import BenchmarkConfig, Job, MeasurementSettings
from engine.hardware import get_hardware
from engine.precision import incompatibility_reason, torch_dtype
from engine.result import FAILED, INCOMPATIBLE, OK, Result
from engine.stats import ci_met, summarize

MIB = 1024 * 1024
NS_PER_MS = 1_000_000

# torch's thread count when the worker started, restored for jobs that name none,
# so one job's `threads` never leaks into the next in a long-lived worker.
DEFAULT_THREADS = torch.get_num_threads()

IterationTimer = Callable[[Callable[[], object]], int]  # runs fn once, returns its duration in ns

_GPU_EVENT_TYPES = ("cuda", "rocm")
_SYNC_BACKENDS = {"cuda": "cuda", "rocm": "cuda", "mps": "mps", "xpu": "xpu"}


def measure(job: Job, registry) -> Result:
    """Measure ``job.config``; every failure comes back as a Result, never as an exception."""
    started = time.perf_counter()
    try:
        result = _measure(job, registry)
    except Exception as exc:  # noqa: BLE001 - the worker must live on to run the next config
        result = failure_result(job.config, exc)
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # so the next config, and the scheduler's free-memory check, start clean
    result.torch_version = torch.__version__
    result.wall_seconds = time.perf_counter() - started
    return result


def failure_result(config: BenchmarkConfig, exc: BaseException) -> Result:
    """A FAILED result naming what went wrong."""
    return Result.failure(config, FAILED, error_type(exc), str(exc) or type(exc).__name__)


def error_type(exc: BaseException) -> str:
    """The error_type recorded for a failure: "oom" for out-of-memory, else the exception class."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return "oom"
    return type(exc).__name__


def _measure(job: Job, registry) -> Result:
    config, settings = job.config, job.settings
    hardware = get_hardware(config.hardware)
    reason = incompatibility_reason(hardware.type, config.precision, hardware.describe())
    if reason is not None:
        return Result.failure(config, INCOMPATIBLE, "incompatible", reason)
    spec = registry.get(config.model)

    torch.set_num_threads(settings.threads or DEFAULT_THREADS)
    device = torch.device(hardware.torch_device)
    if hardware.type in _GPU_EVENT_TYPES:
        torch.cuda.set_device(device)  # events and streams below belong to the current device
    timer = choose_timer(hardware.type)
    memory = peak_memory_tracker(hardware.type, device)

    load_started = time.perf_counter_ns()
    model = prepare_model(spec.build(), config.precision, device)
    sync = device_synchronizer(hardware.type)
    if sync is not None:
        sync()
    load_time_ms = (time.perf_counter_ns() - load_started) / NS_PER_MS
    memory.sample()

    inputs = prepare_inputs(
        spec.make_inputs(config.batch_size, config.sequence_length, config.image_size),
        device,
        torch_dtype(config.precision),
    )
    with torch.inference_mode():

        def run_once():
            return model(**inputs)

        cold_latency_ms = timer(run_once) / NS_PER_MS
        memory.sample()
        warm_up(run_once, settings, timer)
        memory.sample()
        samples_ms, total_seconds = time_callable(run_once, settings, timer=timer)
    memory.sample()

    stats = summarize(samples_ms, total_seconds, settings.ci_target)
    items_per_second = config.batch_size / (stats.p50_ms / 1000.0) if stats.p50_ms > 0 else None
    tokens_per_second = None
    if items_per_second is not None and spec.tokens_per_item is not None:
        tokens_per_second = items_per_second * spec.tokens_per_item(config.sequence_length)
    return Result(
        config=config,
        status=OK,
        stats=stats,
        throughput_items_per_second=items_per_second,
        throughput_tokens_per_second=tokens_per_second,
        load_time_ms=load_time_ms,
        cold_latency_ms=cold_latency_ms,
        memory_peak_mb=memory.peak_increase_mb(),
        samples_ms=kept_samples(samples_ms, settings.keep_samples),
        threads=torch.get_num_threads(),
        device_name=hardware.device_name,
        weights=spec.weights,
        parameters_million=spec.parameters_million,
    )


def prepare_model(model: torch.nn.Module, precision: str, device: torch.device) -> torch.nn.Module:
    """Put a freshly built fp32 CPU model in eval mode on ``device`` at ``precision``."""
    model = model.eval()
    if precision == "int8":
        # Dynamic quantization is CPU-only (the precision check refused other devices).
        # torch.ao.quantization warns that it is deprecated on every call; the
        # warning says nothing about this measurement.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(
                linearize_conv1d(model), {torch.nn.Linear}, dtype=torch.qint8
            )
    return model.to(device=device, dtype=torch_dtype(precision))


def linearize_conv1d(model: torch.nn.Module) -> torch.nn.Module:
    """Swap transformers' ``Conv1D`` (GPT-2's projections) for the equivalent ``nn.Linear``.

    Dynamic quantization only knows nn.Linear, so without this an "int8" GPT-2 would
    quantize its LM head alone and run every attention and MLP projection in fp32.
    Conv1D computes ``x @ W + b`` with W of shape (in, out): a Linear with W transposed.
    """
    for name, child in list(model.named_children()):
        if type(child).__name__ == "Conv1D" and hasattr(child, "nf"):
            linear = torch.nn.Linear(child.weight.shape[0], child.nf, bias=child.bias is not None)
            with torch.no_grad():
                linear.weight.copy_(child.weight.t())
                if child.bias is not None:
                    linear.bias.copy_(child.bias)
            setattr(model, name, linear)
        else:
            linearize_conv1d(child)
    return model


def prepare_inputs(inputs: dict, device: torch.device, dtype: torch.dtype) -> dict:
    """Move input tensors to ``device``; floating ones take the model's dtype, integer ids stay ints."""
    moved = {}
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
        moved[name] = value
    return moved


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
    if device_type in _GPU_EVENT_TYPES:
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


class _CpuPeakMemory:
    """Peak RSS above the baseline at construction (see the module docstring)."""

    def __init__(self):
        self._process = psutil.Process()
        gc.collect()
        self._exact = _reset_rss_high_water_mark()
        self._baseline = self._process.memory_info().rss
        self._peak = self._baseline

    def sample(self) -> None:
        if not self._exact:
            self._peak = max(self._peak, self._process.memory_info().rss)

    def peak_increase_mb(self) -> float:
        self.sample()
        peak = _rss_high_water_mark() if self._exact else self._peak
        return max(0, peak - self._baseline) / MIB


class _AcceleratorPeakMemory:
    """Peak allocator memory above what was allocated at construction (CUDA, XPU)."""

    def __init__(self, backend, device: torch.device):
        self._backend, self._device = backend, device
        backend.reset_peak_memory_stats(device)
        self._baseline = backend.memory_allocated(device)

    def sample(self) -> None:
        """The allocator keeps its own peak."""

    def peak_increase_mb(self) -> float:
        return max(0, self._backend.max_memory_allocated(self._device) - self._baseline) / MIB


class _NoPeakMemory:
    def sample(self) -> None:
        """MPS offers no peak counter."""

    def peak_increase_mb(self) -> None:
        return None


def peak_memory_tracker(device_type: str, device: torch.device):
    if device_type == "cpu":
        return _CpuPeakMemory()
    if device_type in _GPU_EVENT_TYPES:
        return _AcceleratorPeakMemory(torch.cuda, device)
    if device_type == "xpu":
        return _AcceleratorPeakMemory(torch.xpu, device)
    return _NoPeakMemory()


def _reset_rss_high_water_mark() -> bool:
    """Reset the kernel's peak-RSS counter for this process; False where that is not possible."""
    _return_free_heap_to_os()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return _rss_high_water_mark() is not None


def _return_free_heap_to_os() -> None:
    """glibc keeps freed heap pages resident; a previous config's would hide this one's allocations."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc (musl, macOS): nothing to trim


def _rss_high_water_mark() -> int | None:
    """VmHWM from /proc/self/status, in bytes."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except OSError:
        return None
    return None
