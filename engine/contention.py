"""How much CPU other processes took while a config was timed.

A benchmark shares its machine: another benchmark, a build, a browser. Their CPU
time during the timed loop is the system's busy CPU time (``psutil.cpu_times``:
user, nice, system, irq, softirq) less this process's own (all of its threads),
both read just before and just after the loop. The kernel reports both in clock
ticks (1/100 s on Linux), so a few ticks of rounding are allowed for before a
result is called contended: when the others' share exceeded ``CONTENDED_CORE_SHARE``
(10%) of one core over the timed wall time.
"""

from __future__ import annotations

import os
import time

import psutil

CONTENDED_CORE_SHARE = 0.10
_BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq", "interrupt", "dpc")


def _clock_tick_seconds() -> float:
    try:
        return 1.0 / os.sysconf("SC_CLK_TCK")
    except (AttributeError, ValueError, OSError):
        return 0.01


# Rounding of the readings: the system's busy total and this process's own time are each
# truncated to whole ticks when read, before and after.
ROUNDING_SLACK_SECONDS = 3 * _clock_tick_seconds()


def _system_busy_seconds() -> float:
    times = psutil.cpu_times()
    return sum(getattr(times, name, 0.0) for name in _BUSY_FIELDS)


class ContentionMeter:
    """``start()`` before the timed loop, ``stop(wall_seconds)`` after it."""

    def __init__(self):
        self._process = psutil.Process()
        self._system = self._own = self._started = 0.0

    def _own_seconds(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system

    def start(self) -> None:
        self._system, self._own = _system_busy_seconds(), self._own_seconds()
        self._started = time.perf_counter()

    def stop(self, wall_seconds: float | None = None) -> tuple[float, bool]:
        """(CPU seconds other processes used since ``start``, whether that makes the result contended
        over ``wall_seconds``, by default the wall time since ``start``)."""
        others = (_system_busy_seconds() - self._system) - (self._own_seconds() - self._own)
        others = max(0.0, others)
        if wall_seconds is None:
            wall_seconds = time.perf_counter() - self._started
        return others, is_contended(others, wall_seconds)


def is_contended(other_cpu_seconds: float, wall_seconds: float) -> bool:
    """Whether others used more than 10% of one core over ``wall_seconds``, beyond the readings' rounding."""
    return other_cpu_seconds > CONTENDED_CORE_SHARE * wall_seconds + ROUNDING_SLACK_SECONDS
