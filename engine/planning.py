"""Turning a user's request into a run: validation, defaults and config ordering."""

from __future__ import annotations

from collections.abc import Callable

from engine.config import PRECISIONS, BenchmarkConfig, fingerprint
from engine.errors import InvalidRequestError, ModelLoadError, UnknownHardwareError, UnknownModelError
from engine.runs import PRIORITY_RANK, RunRequest, RunState, expand

MAX_BATCH_SIZE = 4096
MAX_SEQUENCE_LENGTH = 8192


def validate(request: RunRequest) -> None:
    if request.priority not in PRIORITY_RANK:
        raise InvalidRequestError("priority", f"must be one of {', '.join(PRIORITY_RANK)}, not {request.priority!r}")
    if request.precision not in PRECISIONS:
        raise InvalidRequestError("precision", f"must be one of {', '.join(PRECISIONS)}, not {request.precision!r}")
    if not request.batch_sizes:
        raise InvalidRequestError("batch_sizes", "must name at least one batch size")
    for size in request.batch_sizes:
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
            raise InvalidRequestError("batch_sizes", f"each must be an integer from 1 to {MAX_BATCH_SIZE}, not {size!r}")
    if not request.hardware:
        raise InvalidRequestError("hardware", "must name at least one device")
    if request.models is not None and not request.models:
        raise InvalidRequestError("models", "must name at least one model, or be null for the priority's tier")
    if not 1 <= request.sequence_length <= MAX_SEQUENCE_LENGTH:
        raise InvalidRequestError("sequence_length", f"must be from 1 to {MAX_SEQUENCE_LENGTH}")


def order_configs(configs: list[BenchmarkConfig], parameters: dict[str, float], progressive: bool) -> list[BenchmarkConfig]:
    """Progressive mode runs cheap models first and batch sizes ascending, so that an
    escalation can stop early; otherwise the request's own order is kept."""
    if not progressive:
        return configs
    return sorted(
        configs,
        key=lambda c: (parameters.get(c.model, 0.0), c.model, c.hardware, c.precision, c.batch_size),
    )


def plan_run(
    request: RunRequest,
    *,
    registry,
    resolve_hardware: Callable[[list[str]], list[str]],
    environment: Callable[[str], dict],
) -> RunState:
    """A queued RunState for ``request``, or InvalidRequestError naming the bad field."""
    validate(request)
    try:
        models = registry.resolve(request.models) if request.models is not None else registry.tier(request.priority)
    except (UnknownModelError, ModelLoadError) as error:
        raise InvalidRequestError("models", str(error)) from None
    try:
        hardware = resolve_hardware(request.hardware)
    except UnknownHardwareError as error:
        raise InvalidRequestError("hardware", str(error)) from None
    request.batch_sizes = sorted(set(request.batch_sizes)) if request.progressive_mode else list(
        dict.fromkeys(request.batch_sizes)
    )
    parameters = {name: registry.get(name).parameters_million for name in models}
    configs = order_configs(expand(request, models, hardware), parameters, request.progressive_mode)
    run = RunState(request=request, configs=configs)
    for device in hardware:
        run.environments[device] = environment(device)
        run.fingerprints[device] = fingerprint(run.environments[device])
    return run
