"""A cold `benchboard run` against optimum-benchmark's process launcher on the same 2 configs.

    python perf/vs_optimum_benchmark.py [--ob-python PATH] [--rounds 1] [--sequence-length 128] [--threads N]

Both tools measure the same tiny BERT checkpoint (``BertModel`` with benchboard's built-in
bert-tiny sizes, random weights, written with ``save_pretrained`` into a temporary folder) on
the CPU at batch sizes 1 and 8 and sequence length 128, each with its own defaults otherwise:
benchboard stops a config once its median's 95% CI is within 2% (``--max-seconds`` 10 caps
it), optimum-benchmark runs 10 warm-up calls and then at least 10 calls and 10 s per config.

1. **Cold wall.** ``benchboard run --models CKPT --batch-sizes 1 8 --sequence-length 128
   --no-incremental --json`` as a fresh process, to its exit, into a fresh database; against a
   fresh interpreter that imports optimum_benchmark and runs ``Benchmark.launch`` with
   ``ProcessConfig()`` once per config (each config in its own spawned process, the way its
   CLI runs them). Target: benchboard's wall <= 0.15x optimum-benchmark's.
2. **Medians.** benchboard's p50 against optimum-benchmark's forward latency p50 (its
   ``report["forward"]["latency"]``: one perf_counter reading per call, in seconds, numpy's
   50th percentile), per config, taken from optimum-benchmark's *inline* launcher in a fresh
   interpreter, run right after benchboard's in each round; the median over rounds is
   compared. Target: within 5%. Not from its process launcher: that launcher's parent
   busy-waits for the child's answer (``while isolated_process.is_alive() and not
   parent_connection.poll(): pass``), keeping a core busy for the whole measurement, so on a
   2-core machine the child's 2 torch threads share the other core's time with it; its p50
   and the launching process's CPU share are printed beside, for the record. Both tools
   otherwise build the model alike (``from_pretrained``, fp32, transformers' default
   attention, eval mode, ``torch.inference_mode()``) with torch's default thread count.
3. **Inputs, for the explanation.** optimum-benchmark feeds BERT ``input_ids``,
   ``attention_mask`` (ones), ``token_type_ids`` (random 0..type_vocab_size-1) and
   ``position_ids`` (0..seq-1 per row); benchboard feeds ``input_ids`` and ``attention_mask``
   (ones), and the model takes zeros and its own position buffer for the rest. The script
   times both input sets on the same model in one process (``torch.utils.benchmark``,
   interleaved) at each batch size and prints the difference, and prints the torch thread
   count. ``--threads N`` sets the same torch thread count in both tools (default: neither is
   told, and both start with torch's own, the physical cores); on a shared machine
   ``--threads 1`` keeps OpenMP's waiting threads out of the figures.

It installs nothing. optimum-benchmark runs only where it is importable: in this
interpreter, or in ``--ob-python`` (another venv's python, with the same torch and
transformers: the script prints both tools' versions and refuses to compare across
different ones). Without it, the script measures benchboard alone and prints the comparison
as not run (exit 2). Everything it writes goes to a fresh ``/tmp/benchboard-vsob-*`` folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_WALL_RATIO = 0.15
TARGET_MEDIAN_DEVIATION = 0.05
BATCH_SIZES = (1, 8)

OB_DRIVER = textwrap.dedent('''
    """optimum-benchmark on one checkpoint, one config per batch size, with the launcher asked for."""
    import json, resource, sys, time

    def cpu_seconds():
        usage = resource.getrusage(resource.RUSAGE_SELF)  # this (the launching) process only
        return usage.ru_utime + usage.ru_stime

    def main():
        started = time.perf_counter()
        from optimum_benchmark import (Benchmark, BenchmarkConfig, InferenceConfig, InlineConfig, ProcessConfig,
                                       PyTorchConfig)
        import optimum_benchmark, torch, transformers
        launcher_name, checkpoint, sequence_length, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        batch_sizes = [int(b) for b in sys.argv[5:]]
        # inter_op_num_threads is what optimum-benchmark hands to torch.set_num_threads.
        thread_options = {"inter_op_num_threads": threads} if threads > 0 else {}
        out = {"versions": {"optimum_benchmark": getattr(optimum_benchmark, "__version__", None)
                            or __import__("importlib.metadata").metadata.version("optimum-benchmark"),
                            "torch": str(torch.__version__), "transformers": transformers.__version__},
               "launcher": launcher_name, "configs": []}
        for batch_size in batch_sizes:
            config = BenchmarkConfig(
                name=f"bert-tiny-bs{batch_size}",
                launcher=ProcessConfig() if launcher_name == "process" else InlineConfig(),
                scenario=InferenceConfig(latency=True, memory=False,
                                         input_shapes={"batch_size": batch_size, "sequence_length": sequence_length}),
                backend=PyTorchConfig(model=checkpoint, device="cpu", task="feature-extraction", **thread_options),
            )
            launch_started, cpu_started = time.perf_counter(), cpu_seconds()
            report = Benchmark.launch(config).to_dict()
            launch_wall, launch_cpu = time.perf_counter() - launch_started, cpu_seconds() - cpu_started
            latency = report["forward"]["latency"]  # seconds, one value per forward call
            out["configs"].append({"batch_size": batch_size, "p50_ms": latency["p50"] * 1000,
                                   "mean_ms": latency["mean"] * 1000, "count": latency["count"],
                                   "launch_wall_s": launch_wall, "launcher_cpu_s": launch_cpu,
                                   "threads": torch.get_num_threads()})
        out["wall_inside_s"] = time.perf_counter() - started
        print("OB-RESULT " + json.dumps(out), flush=True)

    if __name__ == "__main__":
        main()
''')

INPUTS_CHECK = textwrap.dedent('''
    """Both tools' inputs on one model in one process, interleaved (torch.utils.benchmark)."""
    import json, sys
    import torch, transformers
    from torch.utils.benchmark import Timer

    checkpoint, sequence_length, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    batch_sizes = [int(b) for b in sys.argv[4:]]
    if threads > 0:
        torch.set_num_threads(threads)
    model = transformers.AutoModel.from_pretrained(checkpoint, dtype=torch.float32).eval()
    config = model.config
    out = {"threads": torch.get_num_threads(), "configs": []}
    generator = torch.Generator().manual_seed(0)
    for batch_size in batch_sizes:
        shape = (batch_size, sequence_length)
        ids = torch.randint(0, config.vocab_size, shape, generator=generator)
        ones = torch.ones_like(ids)
        ours = {"input_ids": ids, "attention_mask": ones}
        theirs = {**ours, "token_type_ids": torch.randint(0, config.type_vocab_size, shape, generator=generator),
                  "position_ids": torch.arange(sequence_length).expand(shape).contiguous()}
        medians = {"benchboard": [], "optimum_benchmark": []}
        with torch.inference_mode():
            for _ in range(5):  # interleaved rounds: drift hits both sides alike
                for label, inputs in (("benchboard", ours), ("optimum_benchmark", theirs)):
                    timer = Timer("model(**inputs)", globals={"model": model, "inputs": inputs})
                    medians[label].append(timer.blocked_autorange(min_run_time=0.3).median * 1000)
        out["configs"].append({"batch_size": batch_size,
                               **{k: sorted(v)[len(v) // 2] for k, v in medians.items()}})
    print("INPUTS-RESULT " + json.dumps(out), flush=True)
''')


def make_checkpoint(folder: Path) -> Path:
    """bert-tiny's sizes as a save_pretrained checkpoint (random weights, seed 0)."""
    code = (
        "import sys, torch, transformers\n"
        "from engine.models.builtin import TINY_ENCODER\n"
        "torch.manual_seed(0)\n"
        "transformers.BertModel(transformers.BertConfig(**TINY_ENCODER)).save_pretrained(sys.argv[1])\n"
    )
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, cwd=ROOT, env=_env(),
                   capture_output=True, text=True, timeout=600)
    return folder


def _env(extra: dict | None = None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT)}
    return {**env, **(extra or {})}


def importable(python: str, module: str) -> bool:
    try:
        done = subprocess.run([python, "-c", f"import {module}"], capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def run_benchboard(checkpoint: Path, workdir: Path, sequence_length: int, label: str, threads: int) -> dict:
    """A cold `benchboard run` in a fresh process; its wall, p50s and torch threads."""
    command = [
        sys.executable, "-m", "webapp.cli", "run", "--models", str(checkpoint),
        "--batch-sizes", *map(str, BATCH_SIZES), "--sequence-length", str(sequence_length),
        "--no-incremental", "--json", *(["--threads", str(threads)] if threads > 0 else []),
        "--db-path", str(workdir / f"{label}.duckdb"), "--results-dir", str(workdir / f"{label}-results"),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"benchboard run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    outcome = json.loads(done.stdout)
    configs = sorted(outcome["results"], key=lambda r: r["batch_size"])
    return {
        "wall_s": wall,
        "configs": [{"batch_size": r["batch_size"], "p50_ms": r["p50_latency_ms"], "timing": r["timing"],
                     "n_samples": r["n_samples"], "threads": r["threads"], "contended": r["contended"]}
                    for r in configs],
        "contention_warnings": done.stderr.count("(contended)"),
    }


def run_ob(python: str, checkpoint: Path, workdir: Path, sequence_length: int, threads: int,
           launcher: str = "process") -> dict:
    """optimum-benchmark in a fresh interpreter: ``process`` (its CLI's default: each config in a
    spawned child) for the cold wall, ``inline`` (the configs in this fresh process) for the medians."""
    driver = workdir / "ob_driver.py"
    driver.write_text(OB_DRIVER)
    started = time.perf_counter()
    done = subprocess.run([python, str(driver), launcher, str(checkpoint), str(sequence_length), str(threads),
                           *map(str, BATCH_SIZES)],
                          cwd=workdir, env=_env(), capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("OB-RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"optimum-benchmark failed ({done.returncode}):\n{(done.stderr or done.stdout)[-3000:]}")
    return {"wall_s": wall, **json.loads(lines[-1].removeprefix("OB-RESULT "))}


def check_inputs(python: str, checkpoint: Path, sequence_length: int, threads: int) -> dict:
    done = subprocess.run([python, "-c", INPUTS_CHECK, str(checkpoint), str(sequence_length), str(threads),
                           *map(str, BATCH_SIZES)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("INPUTS-RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"the inputs check failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("INPUTS-RESULT "))


def versions(python: str) -> dict:
    code = "import json, torch, transformers; print(json.dumps([str(torch.__version__), transformers.__version__]))"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300, env=_env())
    torch_version, transformers_version = json.loads(done.stdout.strip().splitlines()[-1])
    return {"torch": torch_version, "transformers": transformers_version}


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ob-python", default=None,
                        help="a python that can import optimum_benchmark (default: this one, if it can)")
    parser.add_argument("--rounds", type=int, default=1, help="cold runs of each tool, alternated (median wall)")
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for both tools (benchboard --threads, optimum-benchmark "
                             "inter_op_num_threads); default 0: each tool's default, torch's own")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="benchboard-vsob-"))
    print(f"work folder {workdir}; load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    checkpoint = make_checkpoint(workdir / "bert-tiny-checkpoint")
    ob_python = args.ob_python or sys.executable
    have_ob = importable(ob_python, "optimum_benchmark")
    ours = versions(sys.executable)
    print(f"benchboard: {sys.executable} (torch {ours['torch']}, transformers {ours['transformers']})")
    if have_ob:
        theirs = versions(ob_python)
        print(f"optimum-benchmark: {ob_python} (torch {theirs['torch']}, transformers {theirs['transformers']})")
        if theirs != ours:
            print("refused: the two interpreters have different torch/transformers; medians would not compare")
            return 2
    else:
        print(f"optimum-benchmark is not importable from {ob_python}: measuring benchboard only "
              "(pass --ob-python with a venv that has it; this script installs nothing)")

    bench_runs, ob_runs, ob_inline_runs = [], [], []
    for round_index in range(args.rounds):
        bench_runs.append(run_benchboard(checkpoint, workdir, args.sequence_length, f"round{round_index}", args.threads))
        print(f"round {round_index + 1}: benchboard cold wall {bench_runs[-1]['wall_s']:.2f} s", flush=True)
        if have_ob:
            # Right after benchboard's run, so drift hits the two medians least.
            ob_inline_runs.append(run_ob(ob_python, checkpoint, workdir, args.sequence_length, args.threads, "inline"))
            print(f"round {round_index + 1}: optimum-benchmark inline (medians) {ob_inline_runs[-1]['wall_s']:.2f} s",
                  flush=True)
            ob_runs.append(run_ob(ob_python, checkpoint, workdir, args.sequence_length, args.threads, "process"))
            print(f"round {round_index + 1}: optimum-benchmark cold wall {ob_runs[-1]['wall_s']:.2f} s", flush=True)
    shutil.rmtree(workdir / "round0-results", ignore_errors=True)

    bench_wall = statistics.median(r["wall_s"] for r in bench_runs)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    print(f"benchboard cold CLI wall (median of {len(bench_runs)}): {bench_wall:.2f} s")
    if not have_ob:
        for config in bench_runs[-1]["configs"]:
            print(f"  bs{config['batch_size']}: p50 {config['p50_ms']:.4f} ms ({config['timing']}, "
                  f"{config['n_samples']} samples, {config['threads']} threads)")
        print("comparison NOT RUN: optimum-benchmark is not importable here")
        return 2

    ob_wall = statistics.median(r["wall_s"] for r in ob_runs)
    ratio = bench_wall / ob_wall
    failures = []
    print(f"optimum-benchmark cold wall (median of {len(ob_runs)}): {ob_wall:.2f} s "
          f"(optimum-benchmark {ob_runs[-1]['versions']['optimum_benchmark']})")
    print(f"\n{'figure':<52}{'value':>12}  target       verdict")
    print(f"{'cold wall, benchboard / optimum-benchmark':<52}{ratio:>11.3f}x  <= {TARGET_WALL_RATIO:.2f}x     "
          f"{verdict(ratio <= TARGET_WALL_RATIO)}")
    if ratio > TARGET_WALL_RATIO:
        failures.append(f"wall ratio {ratio:.3f} > {TARGET_WALL_RATIO}")
    # Medians: benchboard's worker (a fresh process whose parent waits on a pipe) against
    # optimum-benchmark's inline launcher (the configs in a fresh process, nothing else running).
    # Its process launcher's parent busy-waits for the child's answer (`while
    # isolated_process.is_alive() and not parent_connection.poll(): pass`, launchers/process/
    # launcher.py), which keeps a core busy for the whole measurement: on 2 cores the child's
    # 2 OpenMP threads then share one core with it. Its p50 is printed, not compared.
    # Each round's pair is measured back to back; the median over rounds is compared.
    by_batch = {}
    for bench_run, inline_run, process_run in zip(bench_runs, ob_inline_runs, ob_runs, strict=True):
        for ours_config, inline_config, process_config in zip(
                bench_run["configs"], inline_run["configs"], process_run["configs"], strict=True):
            entry = by_batch.setdefault(ours_config["batch_size"], {"ours": [], "inline": [], "process": [],
                                                                    "contended": False, "spin": []})
            entry["ours"].append(ours_config["p50_ms"])
            entry["inline"].append(inline_config["p50_ms"])
            entry["process"].append(process_config["p50_ms"])
            entry["contended"] |= bool(ours_config["contended"])
            entry["spin"].append(process_config["launcher_cpu_s"] / process_config["launch_wall_s"])
    for batch_size, entry in by_batch.items():
        ours_p50, inline_p50 = statistics.median(entry["ours"]), statistics.median(entry["inline"])
        deviation = ours_p50 / inline_p50 - 1
        label = f"bs{batch_size} p50: benchboard {ours_p50:.4f} ms vs {inline_p50:.4f}"
        ok = abs(deviation) <= TARGET_MEDIAN_DEVIATION
        print(f"{label:<52}{deviation:>+11.1%}   within 5%    {verdict(ok)}"
              + ("  (benchboard flagged it contended)" if entry["contended"] else ""))
        if not ok:
            failures.append(f"bs{batch_size} medians {deviation:+.1%} apart")
    print("\n(medians: optimum-benchmark's inline launcher in a fresh process, its own defaults otherwise; "
          f"{ob_inline_runs[-1]['configs'][0]['threads']} torch threads there, "
          f"{bench_runs[-1]['configs'][0]['threads']} in benchboard's worker)")
    for batch_size, entry in by_batch.items():
        process_p50 = statistics.median(entry["process"])
        print(f"  bs{batch_size}: its process launcher read p50 {process_p50:.4f} ms "
              f"({process_p50 / statistics.median(entry['inline']) - 1:+.1%} against inline) while its launching "
              f"process was on a CPU {statistics.median(entry['spin']):.0%} of the launch's wall (busy-waiting)")

    inputs = check_inputs(ob_python, checkpoint, args.sequence_length, args.threads)
    print(f"\ninputs, one model in one process ({inputs['threads']} torch threads; benchboard's results say "
          f"{bench_runs[-1]['configs'][0]['threads']}):")
    for config in inputs["configs"]:
        effect = config["optimum_benchmark"] / config["benchboard"] - 1
        print(f"  bs{config['batch_size']}: benchboard's inputs {config['benchboard']:.4f} ms, optimum-benchmark's "
              f"(+ token_type_ids, position_ids) {config['optimum_benchmark']:.4f} ms: {effect:+.1%}")
    print("\nall targets met" if not failures else "\nMISSED:\n  " + "\n  ".join(failures))
    print("(one run on a shared machine; the figures need a quiet machine to be judged, see perf/README.md)")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
