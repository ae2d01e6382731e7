"""torch.utils.benchmark's side of perf/'s accuracy checks: ``blocked_autorange`` on blocks of the engine's k.

The engine's p50 is the median of its samples, each one call or the mean call of a block of k
calls. ``blocked_autorange()`` picks its own block size N and reports the median of N-call block
means, a different statistic (perf/README.md, "Why the engine read low against autorange").
``FixedBlockTimer`` times blocks of the caller's k instead, so both sides compute the median of
k-call block means. Used by measurement_accuracy.py and gpu_check.py; they put the repo root on
``sys.path`` and import ``perf.torch_reference``, so ``python perf/x.py`` works from any folder.

On an accelerator torch's Timer synchronizes the device at every clock reading
(``torch.utils.benchmark.utils.timer.timer``), so each block is bracketed by syncs and the k
calls inside it are queued without one, as the engine's CUDA throughput blocks are.
"""

from __future__ import annotations

import time

from torch.utils.benchmark import Timer
from torch.utils.benchmark.utils import common

from engine.config import MeasurementSettings

WARMUP_SECONDS = MeasurementSettings().warmup_seconds


class FixedBlockTimer(Timer):
    """torch's Timer whose ``blocked_autorange`` times blocks of ``calls`` calls instead of the size
    its own rule picks. The hook is private (``_estimate_block_size``), so ``fixed_block_autorange``
    checks the result's ``number_per_run``: a torch that renamed it fails loudly instead of quietly
    timing blocks of another size."""

    def __init__(self, calls: int, *, warmup_seconds: float = WARMUP_SECONDS, **kwargs):
        super().__init__(**kwargs)
        self.calls = calls
        self.warmup_seconds = warmup_seconds

    def _estimate_block_size(self, min_run_time: float) -> int:
        # torch's own rule doubles as the warm-up; warm up as the engine's warm_up does instead:
        # at least 3 blocks and warmup_seconds of them, on the Timer's thread count as torch's does.
        with common.set_torch_threads(self._task_spec.num_threads):
            started, blocks = time.perf_counter(), 0
            while blocks < 3 or time.perf_counter() - started < self.warmup_seconds:
                self._timeit(self.calls)
                blocks += 1
        return self.calls


def fixed_block_autorange(fn, calls: int, seconds: float, *, stmt: str = "fn()", extra_globals: dict | None = None,
                          num_threads: int = 1, warmup_seconds: float = WARMUP_SECONDS) -> common.Measurement:
    """``blocked_autorange(min_run_time=seconds)`` of ``stmt`` (``fn`` in its globals) over blocks
    of ``calls`` calls; its ``median`` and ``mean`` are per call, in seconds."""
    timer = FixedBlockTimer(calls, warmup_seconds=warmup_seconds, stmt=stmt,
                            globals={"fn": fn, **(extra_globals or {})}, num_threads=num_threads)
    measured = timer.blocked_autorange(min_run_time=seconds)
    if measured.number_per_run != calls:
        raise RuntimeError(f"torch's Timer timed blocks of {measured.number_per_run} calls, not {calls}: "
                           "its _estimate_block_size hook has changed")
    return measured
