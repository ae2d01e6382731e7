"""Do benchboard's GPU numbers hold? One script for a CUDA machine, under 5 minutes.

    python perf/gpu_check.py [--db-path FILE] [--max-seconds S] [--tolerance 0.05] [--quick]

1. Detects the device the way the server does (a probe process; this process opens no
   CUDA context until step 3) and says whether NVML (nvidia-ml-py) is there.
2. Measures bert-base-uncased at batch 1 and 32 and gpt2 at batch 8, in fp32, fp16 and
   bf16, in both timing modes, through benchboard's own path (Services: planner,
   scheduler, a worker process on ``--hardware cuda``, DuckDB), into ``--db-path``.
3. Times each config again with ``torch.utils.benchmark.Timer(...).blocked_autorange()``
   in this process, its block size pinned to the engine's k (perf/torch_reference.py's
   ``FixedBlockTimer``, as measurement_accuracy.py does), after a warm-up like the worker's,
   so both sides report the median of the same blocks' mean call, not autorange's median of
   N-call means of its own N (perf/README.md, "Why the engine read low against autorange").
   torch's Timer syncs the device at each clock reading, i.e. at the ends of a block only.
   Latency: blocks of 1 call of ``fn(); torch.cuda.synchronize()`` (what a caller waits per
   call). Throughput: blocks of plain ``fn()``, k = the calls the worker queues between two
   syncs (on CUDA ``engine.timing.gpu_block_size`` from the warm-up's event readings, about
   50 ms of calls; each engine sample is one call's event pair inside such a block, so there
   the statistics differ by block mean against single call, which a GPU's tight call times
   make small; on the CPU the row's ``calls_per_sample``). The table's ``k`` is that size.
   Each median must be within ``--tolerance`` (5%) of the Timer's.
4. Prints one table with the medians, the ratio, load and inference memory, the reserved
   peak, NVML's SM clock, temperature and power around the timed loop, throttling and
   contention, and exits 1 on any miss (2 where there is no CUDA device).

``--help`` works anywhere; everything that needs a GPU runs only once one is found.
``--smoke`` runs the same pipeline on the CPU with bert-tiny and gpt2-tiny, a check of
the script itself on a machine without a GPU (its ratios say nothing about a GPU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORKLOADS = (("bert-base-uncased", (1, 32)), ("gpt2", (8,)))
SMOKE_WORKLOADS = (("bert-tiny", (1, 32)), ("gpt2-tiny", (8,)))
PRECISIONS = ("fp32", "fp16", "bf16")
TIMINGS = ("latency", "throughput")
SEQUENCE_LENGTH = 128
EXIT_NO_GPU = 2


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--db-path", default=None, help="DuckDB file for the results (default: a fresh temporary one)")
    parser.add_argument("--max-seconds", type=float, default=3.0, help="timing budget per config (default 3)")
    parser.add_argument("--tolerance", type=float, default=0.05, help="allowed relative miss against Timer (0.05)")
    parser.add_argument("--quick", action="store_true", help="fp16 only, for a first look")
    parser.add_argument("--smoke", action="store_true",
                        help="the same pipeline on the CPU with tiny models: checks this script, not a GPU")
    return parser.parse_args(argv)


def detect(kind: str = "cuda"):
    """The first ``kind`` device, found as the server finds it (no CUDA context here); None if absent."""
    from engine import nvml
    from engine.hardware import detect_hardware

    gpus = [hw for hw in detect_hardware() if hw.type == kind]
    if not gpus:
        return None, False
    return gpus[0], nvml.available()


def measure_all(db_path: str, gpu, precisions, max_seconds: float, workloads=WORKLOADS) -> list:
    """Every config through benchboard's own path, one run per model, precision and timing mode."""
    from engine.result import ResultRow
    from engine.runs import RunRequest
    from storage import results as result_rows
    from webapp.wiring.services import Services
    from webapp.wiring.settings import Settings

    settings = Settings(db_path=db_path, results_dir=str(Path(db_path).parent / "results"),
                        max_seconds=max_seconds, prestart_workers=False, resume=False)
    services = Services(settings)
    rows, failures = [], []
    try:
        for precision in precisions:
            for timing in TIMINGS:
                for model, batch_sizes in workloads:
                    request = RunRequest(models=[model], hardware=[gpu.name], batch_sizes=list(batch_sizes),
                                         precision=precision, timing=timing, progressive_mode=False, force=True,
                                         sequence_length=SEQUENCE_LENGTH)
                    run = services.start_run(request)
                    services.scheduler.wait(run.run_id)
                    rows += result_rows.results_for_run(services.db, run.run_id, ResultRow)
                    failures += result_rows.failures_for_run(services.db, run.run_id, ResultRow)
                    print(f"  measured {model} {precision} {timing}: {run.status}", file=sys.stderr, flush=True)
    finally:
        services.close()
    return rows, failures


def reference_block(row, device_type: str, settings, warm_readings: list[int]) -> int:
    """Calls per Timer block for ``row``'s config: the engine's calls between two host syncs, so
    that both sides time the same thing and report the median of the same blocks' mean call."""
    from engine.timing import GPU_EVENT_TYPES, gpu_block_size

    if row.timing == "latency":
        return 1  # one call, synced after it
    if device_type in GPU_EVENT_TYPES:
        # Each sample is one call's event pair, but the worker queues a block of calls with no host
        # sync between them, sized by this rule from its warm-up readings; a Timer block of 1 would
        # sync after every call and time latency instead.
        return gpu_block_size(settings, statistics.median(warm_readings))
    return row.calls_per_sample or 1  # host-clock blocks: k calls, one sync at the end


def timer_median_ms(row, registry, settings) -> tuple[float, int]:
    """torch.utils.benchmark's median per call for ``row``'s config, in this process, over blocks
    of the engine's size (``reference_block``), and that size."""
    import torch

    from engine.measurement import prepare_inputs, prepare_model
    from engine.precision import torch_dtype
    from engine.timing import choose_timer, warm_up
    from perf.torch_reference import fixed_block_autorange

    device = torch.device("cuda:0" if row.hardware == "cuda" else row.hardware)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    spec = registry.get(row.model_name)
    model = prepare_model(spec.build(attn_implementation=row.attn_implementation), row.precision, device)
    inputs = prepare_inputs(spec.make_inputs(row.batch_size, row.sequence_length, row.image_size), device,
                            torch_dtype(row.precision))
    with torch.inference_mode():

        def fn():
            return model(**inputs)

        # Warm up as the worker does, with its timer (CUDA events on a GPU): its readings size the
        # CUDA throughput block, as the worker's sized its own.
        calls = reference_block(row, device.type, settings, warm_up(fn, settings, choose_timer(device.type)))
        sync()
        # torch's Timer synchronizes the device at each clock reading, so a block of k calls is
        # queued with no sync inside it and ends with one; latency mode also syncs after each call.
        stmt = "fn(); sync()" if row.timing == "latency" else "fn()"
        measurement = fixed_block_autorange(fn, calls, 1.0, stmt=stmt, extra_globals={"sync": sync},
                                            num_threads=row.threads or torch.get_num_threads(),
                                            warmup_seconds=settings.warmup_seconds)
    del model, inputs
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return measurement.median * 1000.0, calls


def fmt(value, spec=".1f") -> str:
    return "-" if value is None else format(value, spec)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    gpu, has_nvml = detect("cpu" if args.smoke else "cuda")
    if gpu is None:
        print("gpu_check: no CUDA device here (detected none); nothing to check", file=sys.stderr)
        return EXIT_NO_GPU
    print(f"device {gpu.name}: {gpu.device}, {gpu.memory_gb} GiB, compute capability {gpu.compute_capability}, "
          f"CUDA {gpu.cuda_version}, driver {gpu.driver_version}; NVML {'present' if has_nvml else 'absent'}")
    precisions = ("fp16",) if args.quick else tuple(p for p in PRECISIONS if p in gpu.precisions)
    db_path = args.db_path or str(Path(tempfile.mkdtemp(prefix="benchboard-gpu-check-")) / "gpu.duckdb")
    rows, failures = measure_all(db_path, gpu, precisions, args.max_seconds,
                                 SMOKE_WORKLOADS if args.smoke else WORKLOADS)
    if not args.smoke:
        import torch

        torch.cuda.init()  # only now: the measurements above ran with no CUDA context in this process

    from engine.config import MeasurementSettings
    from engine.models.registry import ModelRegistry

    registry = ModelRegistry()
    settings = MeasurementSettings(max_seconds=args.max_seconds)  # as Services builds the workers'
    header = (f"{'model':<18}{'bs':>4} {'prec':<5}{'timing':<11}{'p50 ms':>9}{'Timer ms':>10}{'k':>5}{'ratio':>7} "
              f"{'ok':<4}{'items/s':>10}{'n':>6}{'load MB':>9}{'inf MB':>8}{'rsv MB':>8}{'dev MB':>8}"
              f"{'SM MHz':>12}{'temp C':>10}{'power W':>12} thr cont")
    print(f"\n{header}\n{'-' * len(header)}")
    misses = len(failures)
    for row in sorted(rows, key=lambda r: (r.model_name, r.batch_size, r.precision, r.timing)):
        reference, calls = timer_median_ms(row, registry, settings)
        ratio = row.p50_latency_ms / reference
        ok = abs(ratio - 1) <= args.tolerance
        misses += not ok
        print(f"{row.model_name:<18}{row.batch_size:>4} {row.precision:<5}{row.timing:<11}"
              f"{row.p50_latency_ms:>9.3f}{reference:>10.3f}{calls:>5}{ratio:>7.3f} {'yes' if ok else 'NO':<4}"
              f"{row.throughput_items_per_second:>10.1f}{row.n_samples:>6}{fmt(row.load_memory_peak_mb):>9}"
              f"{fmt(row.memory_peak_mb):>8}{fmt(row.memory_reserved_peak_mb):>8}{fmt(row.process_device_memory_mb):>8}"
              f"{fmt(row.sm_clock_mhz_before, '.0f') + '>' + fmt(row.sm_clock_mhz_after, '.0f'):>12}"
              f"{fmt(row.temperature_c_before, '.0f') + '>' + fmt(row.temperature_c_after, '.0f'):>10}"
              f"{fmt(row.power_w_before, '.0f') + '>' + fmt(row.power_w_after, '.0f'):>12}"
              f" {'yes' if row.throttled else 'no':<4}{'yes' if row.contended else 'no'}")
    for failure in failures:
        print(f"NOT MEASURED {failure.model_name} bs{failure.batch_size} {failure.precision}: "
              f"{failure.error_type}: {failure.error_message}")
    print(f"\n{len(rows)} measured, {len(failures)} not measured, {misses} miss(es); "
          f"results in {db_path}; {time.monotonic() - started:.0f} s")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
