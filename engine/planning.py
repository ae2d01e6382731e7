"""Turning a user's request into a run: validation, config ordering and environments."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from engine.config import BenchmarkConfig, fingerprint
from engine.errors import InvalidRequestError, ModelLoadError, UnknownHardwareError, UnknownModelError
from engine.runs import RunRequest, RunState, expand, run_request


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


def plan_run(
    request: RunRequest,
    *,
    registry,
    resolve_hardware: Callable[[list[str]], list[str]],
    environment: Callable[[str], dict],
) -> RunState:
    """A queued RunState for ``request``, or InvalidRequestError naming the bad field."""
    request = validate(request)
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
