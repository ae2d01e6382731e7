"""Memory estimates that let the scheduler refuse a config instead of crashing a device."""

from __future__ import annotations

from engine.config import BenchmarkConfig

BYTES_PER_PARAMETER = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
# Live activations per token and layer, in hidden-size units: attention scores, MLP
# expansion and residual copies held at once under inference_mode.
ACTIVATION_FACTOR = 16
# Allocator slack and framework buffers on top of the estimate.
OVERHEAD_BYTES = 256 * 1024**2


def estimate_memory_bytes(config: BenchmarkConfig, parameters_million: float) -> int:
    """Weights plus activations. Hidden size and depth are inferred from the parameter
    count with the transformer rule of thumb params ~= 12 * layers * hidden^2,
    taking layers ~= hidden / 64 (BERT-base: 12 layers, 768 hidden)."""
    parameters = parameters_million * 1e6
    weights = parameters * BYTES_PER_PARAMETER[config.precision]
    hidden = max(64.0, (parameters * 64 / 12) ** (1 / 3))
    activation_bytes = 2 if config.precision in ("fp16", "bf16") else 4
    tokens = config.batch_size * max(config.sequence_length, 1)
    activations = tokens * hidden * ACTIVATION_FACTOR * activation_bytes
    return int(weights + activations + OVERHEAD_BYTES)


def refusal_reason(config: BenchmarkConfig, parameters_million: float, free_bytes: int) -> str | None:
    """None when the config should fit, else the reason it is refused."""
    needed = estimate_memory_bytes(config, parameters_million)
    if needed <= free_bytes:
        return None
    return f"needs ~{needed / 1024**3:.1f} GB, device {config.hardware} has {free_bytes / 1024**3:.1f} GB free"
