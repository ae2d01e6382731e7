"""Does the engine's timing loop agree with torch's own benchmark timer, and what does it cost?

    python perf/measurement_accuracy.py [--threads N] [--rounds R] [--timing latency|throughput|both]
                                        [--attempts A] [--no-autorange]

1. Accuracy, in both timing modes, on a 256x256 matmul, bert-tiny at batch 1 and gpt2-tiny at
   batch 4, both sides on the same torch thread count, inside one ``torch.inference_mode()``,
   with garbage collection paused while timing (the engine's loop and ``timeit`` alike):

   - **engine**: ``engine.timing.warm_up`` then ``engine.timing.time_config`` in the timing mode,
     as a worker measures a config; its p50 is the median of its samples, each sample the time of
     one call (latency mode) or the mean call of a block of k calls (throughput mode on the host
     clock: k is doubled until the clock's cost is below 0.1% of a block; on these workloads
     k = 1).
   - **torch**: ``torch.utils.benchmark.Timer(...).blocked_autorange(min_run_time=--torch-seconds)``
     with its block size set to the *same* k (``FixedBlockTimer``, in perf/torch_reference.py,
     shared with gpu_check.py), after a warm-up like the engine's; its median is the median of
     those blocks' mean call. So both sides compute the same statistic, the median of k-call
     block means, of the same distribution (judged: within +/-5%). ``Timer.timeit(k)`` repeated
     and merged gives the same statistic through public API only (at load 9 its median was
     within 1% of this one's, median of 10 alternating rounds), but each ``timeit`` runs
     2 untimed calls before its block: three times the wall per sample.

   ``adaptive_autorange()`` and ``blocked_autorange()`` choose their own block size (N calls a
   block, grown tenfold until the cost of the Timer's own clock, about 0.35 us here, is under
   0.01% of a block: at this machine's quiet speeds 100 for the matmul, 10 for bert-tiny, 1 for
   gpt2-tiny; the table prints it) and report the median of N-call block means. That is a different statistic from the median of
   single calls: a block mean takes in every slow call inside the block, so on a right-skewed
   distribution (scheduler interrupts, the other vCPU's work) it sits above the single-call
   median, and further above it the noisier the machine. The script still runs them each round
   (``--no-autorange`` skips it) and prints that ratio beside the judged one, not judged, with
   the N used; see perf/README.md, "Why the engine read low against autorange".

   Each round runs both sides, the engine first in even rounds and torch first in odd ones, so
   a machine that drifts within a round favours neither. A round during which other processes
   took more than 10% of a core (``engine.contention``, the rule results are flagged
   ``contended`` by) is measured again, up to ``--attempts`` rounds in all; the table says how
   many rounds were clean, and a row with none left is judged on its contended rounds and
   marked so. The judged ratio is the median of the clean rounds' ratios.

   The *rate* column is informational too: the engine's measured rate (the timed loop's wall
   seconds over the calls it made, what a row's items/s is computed from) over torch's mean
   call. Means take in every stall, so this ratio is noisier than the medians'.
2. Overhead: the wall time per iteration of ``time_callable`` around a no-op, against a bare
   ``perf_counter_ns`` loop that records the same samples (target: < 5 us), and what each reads
   as the no-op's own duration.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for perf.torch_reference

import torch  # noqa: E402
from torch.utils.benchmark import Timer  # noqa: E402

from engine.config import MeasurementSettings  # noqa: E402
from engine.contention import ContentionMeter  # noqa: E402
from engine.models.registry import ModelRegistry  # noqa: E402
from engine.stats import summarize  # noqa: E402
from engine.timing import perf_counter_timer, time_callable, time_config, warm_up  # noqa: E402
from perf.torch_reference import fixed_block_autorange  # noqa: E402

ACCURACY_TARGET = 0.05
OVERHEAD_TARGET_US = 5.0
SETTINGS = MeasurementSettings(min_seconds=1.0, max_seconds=5.0)


def matmul_workload():
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    return lambda: a @ b


def model_workload(registry: ModelRegistry, name: str, batch_size: int, sequence_length: int = 128):
    spec = registry.get(name)
    model = spec.build().eval()
    inputs = spec.make_inputs(batch_size, sequence_length, None)
    return lambda: model(**inputs)


def engine_side(fn, timing: str) -> tuple[float, float, int]:
    """(p50 ms, wall ms per call of the timed loop, calls per sample) as a worker measures a config."""
    warm_up(fn, SETTINGS, perf_counter_timer())
    loop = time_config(fn, SETTINGS, "cpu", timing)
    p50 = summarize(loop.samples_ms, loop.total_seconds, SETTINGS.ci_target).p50_latency_ms
    return p50, loop.total_seconds * 1000.0 / loop.calls, loop.calls_per_sample


def torch_side(fn, threads: int, calls: int, seconds: float) -> tuple[float, float]:
    """(median ms, mean ms) per call of ``blocked_autorange`` over blocks of ``calls`` calls."""
    measured = fixed_block_autorange(fn, calls, seconds, num_threads=threads,
                                     warmup_seconds=SETTINGS.warmup_seconds)
    return measured.median * 1000.0, measured.mean * 1000.0


def autorange_side(fn, threads: int, timing: str, seconds: float) -> tuple[float, int]:
    """(median ms per call, calls per block) of ``adaptive_autorange`` (latency) or ``blocked_autorange``."""
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    if timing == "throughput":
        measured = timer.blocked_autorange(min_run_time=seconds)
    else:
        measured = timer.adaptive_autorange(min_run_time=seconds, max_run_time=SETTINGS.max_seconds)
    return measured.median * 1000.0, measured.number_per_run


def one_round(fn, threads: int, timing: str, seconds: float, autorange: bool, engine_first: bool,
              calls: int) -> dict:
    """Both sides once. torch's blocks take the engine's k: in a torch-first round the k of the
    round before, and torch is timed again if the engine's loop then chose another k."""
    result = {}

    def engine():
        result["engine"], result["engine_rate"], result["calls"] = engine_side(fn, timing)

    def reference(k):
        result["torch"], result["torch_mean"] = torch_side(fn, threads, k, seconds)
        result["torch_calls"] = k

    def other():
        if autorange:
            result["autorange"], result["number"] = autorange_side(fn, threads, timing, seconds)

    if engine_first:
        engine()
        reference(result["calls"])
        other()
    else:
        other()
        reference(calls)
        engine()
        if result["calls"] != calls:
            reference(result["calls"])
    return result


def compare(fn, threads: int, rounds: int, timing: str, attempts: int, seconds: float,
            autorange: bool) -> dict:
    """The medians over the clean rounds (over every round run when none was clean)."""
    clean, contended = [], []
    meter = ContentionMeter()
    calls = 1
    for index in range(max(rounds, attempts)):
        meter.start()
        result = one_round(fn, threads, timing, seconds, autorange, index % 2 == 0, calls)
        calls = result["calls"]
        (contended if meter.stop()[1] else clean).append(result)
        if len(clean) >= rounds:
            break
    used = clean or contended

    def median(key):
        return statistics.median(r[key] for r in used)

    def median_ratio(top, bottom):
        return statistics.median(r[top] / r[bottom] for r in used)

    return {
        "engine": median("engine"),
        "torch": median("torch"),
        "ratio": median_ratio("engine", "torch"),
        "rate_ratio": median_ratio("engine_rate", "torch_mean"),
        "autorange_ratio": median_ratio("engine", "autorange") if autorange else None,
        "calls": sorted({r["calls"] for r in used}),
        "numbers": sorted({r["number"] for r in used}) if autorange else [],
        "clean": len(clean),
        "ran": len(clean) + len(contended),
    }


def bare_loop(fn, iterations: int) -> tuple[list[int], float]:
    clock = time.perf_counter_ns
    samples = []
    record = samples.append
    start = clock()
    for _ in range(iterations):
        started = clock()
        fn()
        record(clock() - started)
    return samples, (clock() - start) / 1e9


def overhead(rounds: int) -> tuple[float, float, float, float, int]:
    """(harness us/iter, bare us/iter, harness no-op median ns, bare no-op median ns, iterations)."""

    def noop():
        return None

    harness_us, bare_us, harness_ns, bare_ns = [], [], [], []
    for _ in range(rounds):
        samples_ms, total_seconds = time_callable(noop, SETTINGS)
        n = len(samples_ms)
        bare_samples, bare_seconds = bare_loop(noop, n)
        harness_us.append(total_seconds / n * 1e6)
        bare_us.append(bare_seconds / n * 1e6)
        harness_ns.append(statistics.median(samples_ms) * 1e6)
        bare_ns.append(statistics.median(bare_samples))
    return (
        statistics.median(harness_us),
        statistics.median(bare_us),
        statistics.median(harness_ns),
        statistics.median(bare_ns),
        n,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timing", choices=("latency", "throughput", "both"), default="both")
    parser.add_argument("--attempts", type=int, default=9,
                        help="rounds run at most per row, to collect --rounds uncontended ones (default 9)")
    parser.add_argument("--torch-seconds", type=float, default=1.0,
                        help="timed seconds of torch's blocks per round "
                             "(default 1.0, the engine's min_seconds)")
    parser.add_argument("--no-autorange", action="store_true",
                        help="skip the informational adaptive_autorange/blocked_autorange column")
    args = parser.parse_args()
    autorange = not args.no_autorange
    torch.set_num_threads(args.threads)
    registry = ModelRegistry()
    workloads = [
        ("matmul 256x256", matmul_workload()),
        ("bert-tiny bs1 seq128", model_workload(registry, "bert-tiny", 1)),
        ("gpt2-tiny bs4 seq128", model_workload(registry, "gpt2-tiny", 4)),
    ]
    print(f"torch {torch.__version__}, {args.threads} thread(s), up to {args.rounds} clean rounds each "
          f"(engine first in even rounds, torch first in odd ones)\n")
    print("judged: ratio = engine p50 / torch median, both the median of k-call block means "
          "(k = the engine's calls a sample)")
    print("info:   rate = engine wall per call / torch mean call; "
          "autorange = engine p50 / autorange median (N calls a block: a different statistic)\n")
    print(f"{'timing':<12}{'workload':<24}{'engine p50 ms':>14}{'torch median ms':>16}{'ratio':>8}  within 5%"
          f"  clean rounds{'k':>4}{'rate':>8}{'autorange':>11}{'N':>6}")
    timings = ("latency", "throughput") if args.timing == "both" else (args.timing,)
    misses = 0
    with torch.inference_mode():
        for timing in timings:
            for name, fn in workloads:
                row = compare(fn, args.threads, args.rounds, timing, args.attempts, args.torch_seconds,
                              autorange)
                ok = abs(row["ratio"] - 1) <= ACCURACY_TARGET
                misses += not ok
                note = "" if row["clean"] else "  (all contended)"
                calls = "/".join(map(str, row["calls"]))
                numbers = "/".join(map(str, row["numbers"]))
                auto = f"{row['autorange_ratio']:>11.3f}{numbers:>6}" if autorange else ""
                print(f"{timing:<12}{name:<24}{row['engine']:>14.4f}{row['torch']:>16.4f}{row['ratio']:>8.3f}"
                      f"  {'yes' if ok else 'NO':<9}  {row['clean']:>2}/{row['ran']:<9}{calls:>4}"
                      f"{row['rate_ratio']:>8.3f}{auto}{note}", flush=True)

    harness_us, bare_us, harness_ns, bare_ns, n = overhead(args.rounds)
    extra = harness_us - bare_us
    print(f"\nno-op, {n} iterations per round:")
    print(f"  wall per iteration: harness {harness_us:.3f} us, bare perf_counter_ns loop {bare_us:.3f} us")
    print(f"  harness overhead per iteration: {extra:.3f} us (target < {OVERHEAD_TARGET_US:g} us)")
    print(f"  no-op median as read: harness {harness_ns:.0f} ns, bare loop {bare_ns:.0f} ns")
    return 1 if misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
