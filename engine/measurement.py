"""Measuring one config, inside a worker process: build, warm up, time adaptively, summarize.

The timers, timing modes and the stopping rule are in ``engine.timing``, the
peak-memory trackers in ``engine.memory``, the other processes' CPU time in
``engine.contention`` and the GPU's clocks, temperature and power in ``engine.nvml``.

Throughput is a measured rate: the items the timed loop processed over its wall
seconds (``total_timed_seconds``), never the batch size over a percentile. Its CI is
therefore the mean latency's, not the median's (``engine.stats.throughput_ci``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import time
import warnings

import msgspec
import torch

from engine import generation, nvml
from engine.config import BenchmarkConfig, Job
from engine.contention import ContentionMeter
from engine.errors import UnsupportedConfigError
from engine.hardware import HardwareInfo, get_hardware
from engine.memory import peak_memory_tracker
from engine.precision import incompatibility_reason, torch_dtype
from engine.result import FAILED, INCOMPATIBLE, OK, Measurement
from engine.stats import summarize, throughput_ci
from engine.timing import GPU_EVENT_TYPES, NS_PER_MS, choose_timer, device_synchronizer, kept_samples, time_config, warm_up

# torch's thread count when the worker started, restored for jobs that name none,
# so one job's `threads` never leaks into the next in a long-lived worker.
DEFAULT_THREADS = torch.get_num_threads()
# The SM clock falling by more than this share across the timed loop marks the result throttled.
THROTTLE_DROP = 0.10
FLASH_ATTENTION_PRECISIONS = ("fp16", "bf16")


def measure(job: Job, registry) -> Measurement:
    """Measure ``job.config``; every failure comes back as a Measurement, never as an exception."""
    started = time.perf_counter()
    try:
        result = _measure(job, registry)
    except Exception as exc:  # noqa: BLE001 - the worker must live on to run the next config
        result = failure_result(job.config, exc)
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # so the next config, and the scheduler's free-memory check, start clean
    result.torch_version = str(torch.__version__)  # a TorchVersion, which msgspec does not encode
    result.wall_seconds = time.perf_counter() - started
    return result


def failure_result(config: BenchmarkConfig, exc: BaseException) -> Measurement:
    """A FAILED result naming what went wrong; INCOMPATIBLE for a config the model cannot run as asked."""
    if isinstance(exc, UnsupportedConfigError):
        return Measurement.failure(config, INCOMPATIBLE, "incompatible", str(exc))
    return Measurement.failure(config, FAILED, error_type(exc), str(exc) or type(exc).__name__)


def error_type(exc: BaseException) -> str:
    """The error_type recorded for a failure: "oom" for out-of-memory, else the exception class."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return "oom"
    return type(exc).__name__


def attention_incompatibility(config: BenchmarkConfig, hardware: HardwareInfo, chooses_attention: bool) -> str | None:
    """Why ``config.attn_implementation`` cannot run here, if it cannot (before anything is built)."""
    attention = config.attn_implementation
    if attention is None:
        return None
    if not chooses_attention:
        return (
            f"{config.model_name} is a custom workload whose attention is its own code's; "
            f"attn_implementation {attention} cannot be chosen for it"
        )
    if attention == "flash_attention_2":
        if hardware.type not in GPU_EVENT_TYPES:
            return f"flash_attention_2 runs on CUDA and ROCm GPUs only, not on {hardware.type}"
        if config.precision not in FLASH_ATTENTION_PRECISIONS:
            return f"flash_attention_2 runs in fp16 or bf16 only, not {config.precision}"
    return None


def _measure(job: Job, registry) -> Measurement:
    config, settings = job.config, job.settings
    hardware = get_hardware(config.hardware)
    reason = incompatibility_reason(
        hardware.type, config.precision, {"compute_capability": hardware.compute_capability}
    )
    if reason is not None:
        return Measurement.failure(config, INCOMPATIBLE, "incompatible", reason)
    spec = registry.get(config.model_name)
    reason = attention_incompatibility(config, hardware, spec.chooses_attention)
    if reason is not None:
        return Measurement.failure(config, INCOMPATIBLE, "incompatible", reason)

    torch.set_num_threads(settings.threads or DEFAULT_THREADS)
    device = torch.device(hardware.torch_device)
    if hardware.type in GPU_EVENT_TYPES:
        torch.cuda.set_device(device)  # events and streams below belong to the current device
    timer = choose_timer(hardware.type)
    gpu = _nvml_handle(hardware)
    memory = peak_memory_tracker(hardware.type, device)

    load_started = time.perf_counter_ns()
    built = spec.build(attn_implementation=config.attn_implementation) if spec.chooses_attention else spec.build()
    model = prepare_model(built, config.precision, device)
    del built
    sync = device_synchronizer(hardware.type)
    if sync is not None:
        sync()
    load_time_ms = (time.perf_counter_ns() - load_started) / NS_PER_MS
    load_memory_mb = memory.end_load()

    image_size = config.image_size or spec.image_size  # the size actually run (vision models)
    inputs = prepare_inputs(
        spec.make_inputs(config.batch_size, config.sequence_length, image_size),
        device,
        torch_dtype(config.precision),
    )
    contention = ContentionMeter()
    # The generate scenario (engine.generation) times whole generations, token by token.
    session = None
    if config.scenario == "generate":
        session = generation.GenerationSession(model, config.model_name, inputs, config.new_tokens, hardware.type)
        run_once, timer = session.generate, session.timer
    with torch.inference_mode(), (generation.quiet_transformers() if session else contextlib.nullcontext()):
        if session is None:

            def run_once():
                return model(**inputs)

        cold_latency_ms = timer(run_once) / NS_PER_MS
        memory.sample()
        warm_readings = warm_up(run_once, settings, timer)
        memory.sample()
        before = nvml.readings(gpu)
        contention.start()
        if session is not None:
            loop = session.timed_loop(settings)
        else:
            loop = time_config(
                run_once, settings, hardware.type, config.timing, timer=timer,
                estimate_ns=statistics.median(warm_readings) if warm_readings else None,
            )
        # Over the whole window it watched: with throughput blocks that includes sizing them.
        other_cpu_seconds, contended = contention.stop()
        after = nvml.readings(gpu)
    memory.sample()  # a generation's peak holds its KV cache

    stats = summarize(loop.samples_ms, loop.total_seconds, settings.ci_target)
    items_per_second = config.batch_size * loop.calls / loop.total_seconds if loop.total_seconds > 0 else None
    items_per_second_low, items_per_second_high = throughput_ci(items_per_second, loop.samples_ms)
    tokens_per_second = None
    generated = {}
    if session is not None:
        generated = session.figures(config.batch_size, settings.keep_samples, stats.p50_latency_ms)
        if items_per_second is not None:  # tokens generated per second over the whole timed loop
            tokens_per_second = items_per_second * config.new_tokens
    elif items_per_second is not None and spec.tokens_per_item is not None:
        tokens_per_second = items_per_second * spec.tokens_per_item(config.sequence_length)
    result = Measurement.of(
        config,
        **msgspec.structs.asdict(stats),
        status=OK,
        throughput_items_per_second=items_per_second,
        throughput_ci_low_items_per_second=items_per_second_low,
        throughput_ci_high_items_per_second=items_per_second_high,
        throughput_tokens_per_second=tokens_per_second,
        load_time_ms=load_time_ms,
        cold_latency_ms=cold_latency_ms,
        memory_peak_mb=memory.peak_increase_mb(),
        load_memory_peak_mb=load_memory_mb,
        memory_reserved_peak_mb=memory.reserved_peak_mb(),
        process_device_memory_mb=nvml.process_memory_mb(gpu, os.getpid()),
        calls_per_sample=loop.calls_per_sample,
        samples_ms=kept_samples(loop.samples_ms, settings.keep_samples),
        threads=torch.get_num_threads(),
        device_name=hardware.device,
        weights=spec.weights,
        parameters_million=spec.parameters_million,
        other_cpu_seconds=other_cpu_seconds,
        contended=contended,
        **_gpu_readings(before, after),
        **generated,
    )
    result.image_size = image_size
    return result


def _nvml_handle(hardware: HardwareInfo):
    """NVML's handle of an NVIDIA GPU, for clocks, temperature, power and process memory; None elsewhere."""
    if hardware.type != "cuda":
        return None
    index = hardware.torch_device.partition(":")[2]
    return nvml.device_handle(hardware.uuid, int(index) if index.isdigit() else None)


def _gpu_readings(before: dict, after: dict) -> dict:
    """NVML's readings before and after the timed loop, and whether the SM clock fell by over 10%."""
    fields = {f"{name}_{when}": reading[name] for when, reading in (("before", before), ("after", after))
              for name in ("sm_clock_mhz", "temperature_c", "power_w")}
    clock_before, clock_after = before["sm_clock_mhz"], after["sm_clock_mhz"]
    if clock_before and clock_after is not None:
        fields["throttled"] = clock_after < clock_before * (1 - THROTTLE_DROP)
    return fields


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
