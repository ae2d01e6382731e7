"""NVIDIA's management library, where ``nvidia-ml-py`` (import name ``pynvml``) is installed.

NVML reads a GPU without a CUDA context: the server asks it for free device memory
(the server process never initialises CUDA), and the worker for the SM clock,
temperature and power around the timed loop and for its own device memory. Every
function answers None where NVML, the device or the reading is not available;
nothing here raises.

Devices are found by UUID (``GPU-...``, as hardware detection records it), since
NVML's indices ignore ``CUDA_VISIBLE_DEVICES`` and torch's do not; by index
where no UUID is known.
"""

from __future__ import annotations

import logging
from functools import cache

log = logging.getLogger(__name__)

try:  # optional: pip install nvidia-ml-py (the [gpu] extra)
    import pynvml
except ImportError:  # pragma: no cover - depends on the environment
    pynvml = None


@cache
def available() -> bool:
    if pynvml is None:
        return False
    try:
        pynvml.nvmlInit()
    except Exception as error:  # noqa: BLE001 - no driver, no device: NVML is just not there
        log.debug("NVML is not available: %s", error)
        return False
    return True


def device_handle(uuid: str | None = None, index: int | None = None):
    """NVML's handle of a device, by UUID first, else by index; None when there is none."""
    if not available():
        return None
    if uuid:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(uuid)
        except Exception:  # noqa: BLE001
            pass
    if index is not None:
        try:
            return pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception:  # noqa: BLE001
            return None
    return None


def _read(function, *args):
    try:
        return function(*args)
    except Exception:  # noqa: BLE001 - a reading a device or driver does not support
        return None


def readings(handle) -> dict[str, float | None]:
    """The SM clock (MHz), the temperature (C) and the power draw (W) now."""
    if handle is None:
        return {"sm_clock_mhz": None, "temperature_c": None, "power_w": None}
    clock = _read(pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_SM)
    temperature = _read(pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU)
    power_mw = _read(pynvml.nvmlDeviceGetPowerUsage, handle)
    return {
        "sm_clock_mhz": None if clock is None else float(clock),
        "temperature_c": None if temperature is None else float(temperature),
        "power_w": None if power_mw is None else power_mw / 1000.0,
    }


def free_memory_bytes(handle) -> int | None:
    if handle is None:
        return None
    info = _read(pynvml.nvmlDeviceGetMemoryInfo, handle)
    return None if info is None else int(info.free)


def process_memory_mb(handle, pid: int) -> float | None:
    """Device memory NVML charges to process ``pid`` (None where it cannot see it, as in some containers)."""
    if handle is None:
        return None
    processes = _read(pynvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
    for process in processes:
        used = getattr(process, "usedGpuMemory", None)
        if getattr(process, "pid", None) == pid and used is not None:
            return used / (1024 * 1024)
    return None
