"""Does the engine's timing loop agree with torch's own benchmark timer, and what does it cost?

    python perf/measurement_accuracy.py [--threads N] [--rounds R] [--timing latency|throughput|both]

1. Accuracy, in both timing modes: on a 256x256 matmul, bert-tiny at batch 1 and
   gpt2-tiny at batch 4, the median of ``engine.timing.time_config`` against
   ``torch.utils.benchmark.Timer``, both on the same torch thread count:
   latency mode against ``adaptive_autorange()``'s median, throughput mode (blocks
   of k calls) against ``blocked_autorange()``'s median time per call. The two
   alternate for ``--rounds`` rounds and the median ratio is printed (target:
   within +/-5%). torch's median is over blocks of many calls, the engine's
   latency median over single calls, so a skewed distribution can separate them
   a little. A round during which other processes took more than 10% of a core
   (``engine.contention``, the rule results are flagged ``contended`` by) is
   measured again, up to ``--attempts`` rounds in all; the table says how many
   rounds were clean, and a row with none left is judged on its contended rounds
   and marked so.
2. Overhead: the wall time per iteration of ``time_callable`` around a no-op,
   against a bare ``perf_counter_ns`` loop that records the same samples
   (target: < 5 us), and what each reads as the no-op's own duration.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.utils.benchmark import Timer  # noqa: E402

from engine.config import MeasurementSettings  # noqa: E402
from engine.contention import ContentionMeter  # noqa: E402
from engine.models.registry import ModelRegistry  # noqa: E402
from engine.stats import summarize  # noqa: E402
from engine.timing import time_callable, time_config  # noqa: E402

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


def engine_median_ms(fn, timing: str) -> float:
    loop = time_config(fn, SETTINGS, "cpu", timing)
    return summarize(loop.samples_ms, loop.total_seconds, SETTINGS.ci_target).p50_latency_ms


def torch_median_ms(fn, threads: int, timing: str) -> float:
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    if timing == "throughput":
        return timer.blocked_autorange(min_run_time=1.0).median * 1000.0
    return timer.adaptive_autorange(min_run_time=1.0).median * 1000.0


def compare(name: str, fn, threads: int, rounds: int, timing: str, attempts: int):
    """(name, engine median, torch median, median ratio, clean rounds, rounds run) over the clean
    rounds, or over every round run when none was clean."""
    clean, contended = [], []
    meter = ContentionMeter()
    for _ in range(max(rounds, attempts)):
        meter.start()
        pair = (engine_median_ms(fn, timing), torch_median_ms(fn, threads, timing))
        (contended if meter.stop()[1] else clean).append(pair)
        if len(clean) >= rounds:
            break
    used = clean or contended
    engine_ms, torch_ms = [e for e, _ in used], [t for _, t in used]
    ratios = [e / t for e, t in used]
    return (name, statistics.median(engine_ms), statistics.median(torch_ms), statistics.median(ratios),
            len(clean), len(clean) + len(contended))


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    registry = ModelRegistry()
    workloads = [
        ("matmul 256x256", matmul_workload()),
        ("bert-tiny bs1 seq128", model_workload(registry, "bert-tiny", 1)),
        ("gpt2-tiny bs4 seq128", model_workload(registry, "gpt2-tiny", 4)),
    ]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} alternating rounds each\n")
    print(f"{'timing':<12}{'workload':<24}{'engine p50 ms':>15}{'torch median ms':>17}{'ratio':>9}"
          f"  within 5%  clean rounds")
    timings = ("latency", "throughput") if args.timing == "both" else (args.timing,)
    misses = 0
    with torch.inference_mode():
        for timing in timings:
            for name, fn in workloads:
                _, engine_ms, torch_ms, ratio, clean, ran = compare(
                    name, fn, args.threads, args.rounds, timing, args.attempts)
                ok = abs(ratio - 1) <= ACCURACY_TARGET
                misses += not ok
                note = "" if clean else "  (all contended)"
                print(f"{timing:<12}{name:<24}{engine_ms:>15.4f}{torch_ms:>17.4f}{ratio:>9.3f}"
                      f"  {'yes' if ok else 'NO':<9}  {clean}/{ran}{note}")

    harness_us, bare_us, harness_ns, bare_ns, n = overhead(args.rounds)
    extra = harness_us - bare_us
    print(f"\nno-op, {n} iterations per round:")
    print(f"  wall per iteration: harness {harness_us:.3f} us, bare perf_counter_ns loop {bare_us:.3f} us")
    print(f"  harness overhead per iteration: {extra:.3f} us (target < {OVERHEAD_TARGET_US:g} us)")
    print(f"  no-op median as read: harness {harness_ns:.0f} ns, bare loop {bare_ns:.0f} ns")
    return 1 if misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
