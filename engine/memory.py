"""Peak memory of one config, per device type, in two phases: loading and inference.

A tracker is made just before the model is built. ``end_load()`` closes the load
phase (build, cast, move: for fp16, bf16 and int8 that includes the fp32 build and
its conversion) and returns its peak above the starting point; from then on the
peak is measured above the loaded model, so ``peak_increase_mb()`` is what the
inference itself needs (activations, workspaces), not the weights.

CPU: peak resident set size. On Linux the kernel's own high-water mark is used: it
is reset through ``/proc/self/clear_refs`` (``5``) and ``VmHWM`` is read afterwards,
so transient peaks inside an iteration count; freed heap is first handed back to
the OS (glibc ``malloc_trim``), so memory a previous phase or config freed in this
long-lived worker does not hide this one's allocations. Elsewhere RSS is sampled
with psutil after each phase, a lower bound.
CUDA/XPU: ``max_memory_allocated`` after ``reset_peak_memory_stats``, less what was
allocated at the start of the phase; ``reserved_peak_mb()`` is the caching
allocator's reserved peak over both phases (CUDA). MPS has no peak counter: None.
"""

from __future__ import annotations

import ctypes
import gc

import psutil
import torch

from engine.timing import GPU_EVENT_TYPES

MIB = 1024 * 1024


class _CpuPeakMemory:
    """Peak RSS above the baseline of the current phase (see the module docstring)."""

    def __init__(self):
        self._process = psutil.Process()
        self._start_phase()

    def _start_phase(self) -> None:
        gc.collect()
        self._exact = _reset_rss_high_water_mark()
        self._baseline = self._process.memory_info().rss
        self._peak = self._baseline

    def sample(self) -> None:
        if not self._exact:
            self._peak = max(self._peak, self._process.memory_info().rss)

    def _phase_peak_mb(self) -> float:
        self.sample()
        peak = _rss_high_water_mark() if self._exact else self._peak
        return max(0, peak - self._baseline) / MIB

    def end_load(self) -> float:
        load = self._phase_peak_mb()
        self._start_phase()  # the loaded model is the new baseline
        return load

    def peak_increase_mb(self) -> float:
        return self._phase_peak_mb()

    def reserved_peak_mb(self) -> None:
        return None


class _AcceleratorPeakMemory:
    """Peak allocator memory above what was allocated at the start of the phase (CUDA, XPU)."""

    def __init__(self, backend, device: torch.device):
        self._backend, self._device = backend, device
        self._reserved_peak = 0
        self._start_phase()

    def _start_phase(self) -> None:
        self._backend.reset_peak_memory_stats(self._device)
        self._baseline = self._backend.memory_allocated(self._device)

    def sample(self) -> None:
        """The allocator keeps its own peak."""

    def _phase_peak_mb(self) -> float:
        reserved = getattr(self._backend, "max_memory_reserved", None)
        if reserved is not None:
            self._reserved_peak = max(self._reserved_peak, reserved(self._device))
        return max(0, self._backend.max_memory_allocated(self._device) - self._baseline) / MIB

    def end_load(self) -> float:
        load = self._phase_peak_mb()
        self._start_phase()
        return load

    def peak_increase_mb(self) -> float:
        return self._phase_peak_mb()

    def reserved_peak_mb(self) -> float | None:
        self._phase_peak_mb()
        return self._reserved_peak / MIB if self._reserved_peak else None


class _NoPeakMemory:
    def sample(self) -> None:
        """MPS offers no peak counter."""

    def end_load(self) -> None:
        return None

    def peak_increase_mb(self) -> None:
        return None

    def reserved_peak_mb(self) -> None:
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
