"""Which precisions a device type can run, and why not when it cannot.

``capabilities`` is what hardware detection knows about one device; only ``compute_capability`` is read, for
CUDA's bf16. Without it a device is judged by its type alone.
"""

from __future__ import annotations

from functools import cache

from engine.config import PRECISIONS

INT8_CPU_ONLY = "int8 dynamic quantization runs on cpu only"
BF16_MIN_COMPUTE_CAPABILITY = (8, 0)  # Ampere: the first NVIDIA generation with bf16 tensor cores

# Dynamic quantization keeps fp32 activations; only Linear weights become int8.
_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "float32"}


def torch_dtype(precision: str):
    """The dtype the model and its floating inputs are cast to for ``precision``.

    torch is imported by the functions that need it: a process that only plans (the CLI,
    issue 16) judges fp32 without it."""
    import torch

    try:
        return getattr(torch, _DTYPES[precision])
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}") from None


def incompatibility_reason(device_type: str, precision: str, capabilities: dict | None = None) -> str | None:
    """None when ``precision`` can run on a ``device_type`` device, else the reason it cannot."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}"
    judge = _JUDGES.get(device_type)
    if judge is None:
        return f"unknown device type {device_type!r}; known: {', '.join(_JUDGES)}"
    return judge(precision, capabilities or {})


def supported_precisions(device_type: str, capabilities: dict | None = None) -> list[str]:
    return [p for p in PRECISIONS if incompatibility_reason(device_type, p, capabilities) is None]


def _cpu(precision: str, capabilities: dict) -> str | None:
    if precision == "fp16" and not _cpu_runs_half_linear():
        return "this torch build cannot run fp16 Linear layers on cpu"
    if precision == "int8" and not _cpu_has_quantized_engine():
        return "this torch build has no quantized engine for int8 dynamic quantization on cpu"
    return None


def _cuda(precision: str, capabilities: dict) -> str | None:
    if precision == "int8":
        return INT8_CPU_ONLY
    if precision == "bf16":
        capability = _parse_capability(capabilities.get("compute_capability"))
        if capability is not None and capability < BF16_MIN_COMPUTE_CAPABILITY:
            wanted = ".".join(map(str, BF16_MIN_COMPUTE_CAPABILITY))
            has = capabilities["compute_capability"]
            return f"bf16 needs compute capability {wanted} or newer; this GPU has {has}"
    return None


def _rocm(precision: str, capabilities: dict) -> str | None:
    # Every GPU a current ROCm build of torch supports (gfx9 and newer) does bf16.
    return INT8_CPU_ONLY if precision == "int8" else None


def _mps(precision: str, capabilities: dict) -> str | None:
    if precision == "int8":
        return INT8_CPU_ONLY
    if precision == "bf16":
        return "bf16 is not supported on mps here; use fp16 or fp32"
    return None


def _xpu(precision: str, capabilities: dict) -> str | None:
    return INT8_CPU_ONLY if precision == "int8" else None


_JUDGES = {"cpu": _cpu, "cuda": _cuda, "rocm": _rocm, "mps": _mps, "xpu": _xpu}


def _parse_capability(value) -> tuple[int, int] | None:
    if not value:
        return None
    major, _, minor = str(value).partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return None  # a ROCm arch name such as "gfx90a" is no CUDA capability


@cache
def _cpu_runs_half_linear() -> bool:
    """Asks torch for real: CPU half kernels exist in torch 2.x builds, not in every older one."""
    import torch

    try:
        layer = torch.nn.Linear(8, 8).to(torch.float16)
        with torch.inference_mode():
            layer(torch.ones(2, 8, dtype=torch.float16))
    except RuntimeError:
        return False
    return True


@cache
def _cpu_has_quantized_engine() -> bool:
    import torch

    return any(engine != "none" for engine in torch.backends.quantized.supported_engines)
