"""Peak memory of one config, per device type.

CPU: the peak resident set size above the RSS just before the model is built.
On Linux the kernel's own high-water mark is used: it is reset through
``/proc/self/clear_refs`` (``5``) and ``VmHWM`` is read afterwards, so transient
peaks inside an iteration count; freed heap is first handed back to the OS
(glibc ``malloc_trim``), so memory a previous config freed in this long-lived
worker does not hide this config's allocations. Elsewhere RSS is sampled with
psutil after each phase (build, cold call, warm-up, timing), a lower bound.
CUDA/XPU: ``max_memory_allocated`` after ``reset_peak_memory_stats``, less what
was allocated before the build. MPS has no peak counter: None.
"""

from __future__ import annotations

import ctypes
import gc

import psutil
import torch

from engine.timing import GPU_EVENT_TYPES

MIB = 1024 * 1024


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
    if device_type in GPU_EVENT_TYPES:
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
