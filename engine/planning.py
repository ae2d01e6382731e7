"""Turning a user's request into a run: validation, configs fitted to their models, ordering,
the run's measurement settings and the environments its results are fingerprinted by."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from engine.config import DEFAULT_ATTN_IMPLEMENTATION, BenchmarkConfig, MeasurementSettings, fingerprint
from engine.errors import InvalidRequestError, ModelLoadError, UnknownHardwareError, UnknownModelError
from engine.models.spec import ModelSpec
from engine.runs import RunRequest, RunState, expand, run_request

# The measurement settings that change a number, recorded in every run's environment.
RECORDED_SETTINGS = (
    "warmup_iterations", "warmup_seconds", "min_iterations", "min_seconds", "max_seconds", "max_iterations",
    "ci_target", "max_timer_share", "gpu_block_seconds",
)


def validate(request: RunRequest) -> RunRequest:
    """``request`` checked against RunRequest's constraints, whoever built it: a Struct made
    in Python is not validated by msgspec, one decoded from JSON already was."""
    return run_request(msgspec.structs.asdict(request))


def order_configs(configs: list[BenchmarkConfig], parameters: dict[str, float], progressive: bool) -> list[BenchmarkConfig]:
    """Progressive mode runs cheap models first and batch sizes ascending, so that an
    escalation can stop early; otherwise the request's own order is kept."""
    if not progressive:
        return configs
    return sorted(
        configs,
        key=lambda c: (parameters.get(c.model_name, 0.0), c.model_name, c.hardware, c.precision, c.batch_size),
    )


def fit_to_model(config: BenchmarkConfig, spec: ModelSpec) -> BenchmarkConfig:
    """``config`` as ``spec`` runs it: a vision model at the requested image size or its own, no
    image size for models that take none; sdpa for transformers models unless another
    attention was asked for. A custom workload keeps an explicit attention request, which
    its worker refuses with the reason (its attention is its own code's)."""
    image_size = None if spec.image_size is None else config.image_size or spec.image_size
    attention = config.attn_implementation
    if spec.chooses_attention and attention is None:
        attention = DEFAULT_ATTN_IMPLEMENTATION
    return msgspec.structs.replace(config, image_size=image_size, attn_implementation=attention)


def check_scenario(request: RunRequest, specs: dict[str, ModelSpec]) -> None:
    """InvalidRequestError naming ``scenario`` where a model cannot generate, or ``timing`` where a
    generation is asked to be pipelined (it is timed call by call, with a sync at every token)."""
    if request.scenario != "generate":
        return
    refused = [spec for spec in specs.values() if not spec.generates]
    if refused:
        which = ", ".join(f"{spec.name} ({spec.architecture})" for spec in refused)
        raise InvalidRequestError("scenario", (
            f"generate applies to decoder, encoder-decoder and audio models (and custom workloads that "
            f"declare it); {which} cannot generate: measure {'it' if len(refused) == 1 else 'them'} "
            "with scenario forward"
        ))
    if request.repeats > 1:
        # engine.repeats pools the processes' stored samples. A generation's TPOT is the median over
        # generations of each one's mean gap, and a result stores every per-token gap but not those
        # per-generation means, so pooled TPOT (and its CI) could not be the figure one process
        # reports: the pooled row would mix pooled end-to-end statistics with one process's TPOT.
        raise InvalidRequestError("repeats", (
            "generate is measured in one worker process: repeats pools the processes' stored samples, and "
            "a generation's TPOT (the median over generations of each one's mean per-token gap) cannot be "
            "rebuilt from them; leave repeats at 1 and compare runs instead"
        ))
    if request.timing == "throughput":
        raise InvalidRequestError("timing", (
            "generate is timed one generation at a time, with a device sync at every token; "
            "leave timing unset or choose latency"
        ))


def run_settings(settings: MeasurementSettings, request: RunRequest) -> MeasurementSettings:
    """The server's measurement settings with what the request chooses (its thread count)."""
    if request.threads is None:
        return settings
    return msgspec.structs.replace(settings, threads=request.threads)


def run_environment(
    device_environment: dict, settings: MeasurementSettings, request: RunRequest, parallel_devices: bool
) -> dict:
    """The device's facts plus the run's choices that change its numbers: the thread count the
    worker will use, the stopping rules, the timing mode asked for, whether devices measured at
    the same time."""
    threads = settings.threads or device_environment.get("default_threads")
    measurement = {name: getattr(settings, name) for name in RECORDED_SETTINGS}
    measurement["timing"] = request.timing or "auto"  # auto: latency at batch size 1, else throughput
    return {
        **device_environment,
        "threads": threads,
        "measurement": measurement,
        "parallel_devices": parallel_devices,
    }


def plan_run(
    request: RunRequest,
    *,
    registry,
    resolve_hardware: Callable[[list[str]], list[str]],
    environment: Callable[[str], dict],
    settings: MeasurementSettings | None = None,
    parallel_devices: bool = False,
) -> RunState:
    """A queued RunState for ``request``, or InvalidRequestError naming the bad field.

    ``settings`` are the server's measurement settings (the request may choose the thread
    count); ``parallel_devices`` whether this machine's devices measure at the same time.
    Both are recorded in each device's environment, so results measured otherwise never
    count as the same.
    """
    request = validate(request)
    try:
        models = registry.resolve(request.models) if request.models is not None else registry.tier(request.priority)
    except (UnknownModelError, ModelLoadError) as error:
        raise InvalidRequestError("models", str(error)) from None
    try:
        hardware = resolve_hardware(request.hardware)
    except UnknownHardwareError as error:
        raise InvalidRequestError("hardware", str(error)) from None
    # Recorded as resolved ("CPU" is cpu, "cuda" is cuda:0), as the batch sizes below, so that the
    # run's config names its devices as its results do and filters on them find them.
    request.hardware = hardware
    request.batch_sizes = sorted(set(request.batch_sizes)) if request.progressive_mode else list(
        dict.fromkeys(request.batch_sizes)
    )
    specs = {name: registry.get(name) for name in models}
    if request.models is None and request.scenario == "generate":
        # The priority's tier, of the models that generate: naming none asks for no encoder.
        specs = {name: spec for name, spec in specs.items() if spec.generates}
        models = list(specs)
    check_scenario(request, specs)
    parameters = {name: spec.parameters_million for name, spec in specs.items()}
    configs = [fit_to_model(config, specs[config.model_name]) for config in expand(request, models, hardware)]
    configs = order_configs(configs, parameters, request.progressive_mode)
    run = RunState(request=request, configs=configs)
    run.settings = run_settings(settings or MeasurementSettings(), request)
    for device in hardware:
        run.environments[device] = run_environment(environment(device), run.settings, request, parallel_devices)
        run.fingerprints[device] = fingerprint(run.environments[device])
    return run
