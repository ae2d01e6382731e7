"""What does measuring through a Ray cluster cost, and does it change the numbers?

    python perf/ray_overhead.py [--rounds 3] [--one-node] [--threads 1] [--max-seconds 1.0]
                                [--models bert-tiny,gpt2-tiny] [--batch-sizes 1,2,4,8]

Loopback only, stops by itself. The same 8-config tiny sweep (2 models x 4 batch sizes,
force=true, progressive_mode=false) runs on a server measuring this machine's CPU
(``local``) and through a real 2-node Ray cluster on this machine
(tests/integration/ray_local.py: ``ray start`` head and second node, one CPU each, each
with its own BENCHBOARD_NODE_NAME) with the first model's configs on ``head/cpu`` and the
second's on ``second/cpu`` (``ray``): two runs posted together, 4 configs each. Both nodes
are this machine, so by default they measure one config at a time, like the local sweep.
Both servers run side by side (the idle one costs next to nothing); each warms its
workers (actors) with one config per device first, then the sweeps alternate, local and
ray, for ``--rounds`` rounds, so that both meet the same load of the machine over time; the
order turns each round, so neither always follows the other. ``--one-node`` adds a third
sweep to each round, a control: every config on ``head/cpu``, so one actor's worker measures
both models in turn, as the local worker does (the split sweep gives each node's worker one
model): what is left between it and local is Ray's, what differs from the split is the layout.

- wall: from just before the first POST to the last terminal status (status polled every 50 ms).
- wall ratio: the median over rounds of ray wall / local wall (target <= 1.3).
- medians' agreement: per config, the median over rounds of ray p50 over the same of
  local p50; the judged figure is the largest deviation from 1 over the 8 configs
  (target within 5%), with their median deviation for context. ``contended`` counts the
  sweeps in which the engine saw other processes take more than 10% of a core while
  that config was timed: a contended p50 says more about the machine than about Ray.
  ``spread`` is (largest - smallest) / median of one side's p50s over the rounds: how far
  a config moves between sweeps of the same server, for scale.
- settings, checked rather than assumed: after the warm-up and again after the last round,
  each side's measuring ``engine.worker`` processes are read (psutil): niceness, CPU
  affinity and the variables that steer torch's threads and allocator; with the torch
  threads each side's rows recorded, they must be the same on both sides (Ray's raylet
  starts its workers at nice 15 and sets OMP_NUM_THREADS in them; the actor gives the
  measuring worker its node's own values back). ``--threads 0`` sends no ``threads``, so
  both sides use their default, which must then be the same too.
- contention, recorded rather than guessed: ``overlaps`` counts, per ray sweep, the pairs of
  configs of the two nodes whose windows (stored time minus the config's wall time) overlap
  by more than 0.1 s, which the one-config-per-machine rule across nodes that share a host
  must keep at 0; ``ray daemons`` is the CPU time the cluster's own processes (GCS, raylets,
  agents, the actors' Ray workers; not the measuring ``engine.worker``) used during the ray
  sweeps, in cores; ``other cpu`` is the median of the engine's own count, per config, of
  the CPU seconds other processes used while it timed, for each side.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from tests.integration.ray_local import LocalRayCluster  # noqa: E402
from tests.integration.server import start_server  # noqa: E402

WALL_TARGET = 1.3
MEDIAN_TARGET = 0.05
TERMINAL = {"completed", "failed", "cancelled"}
OVERLAP_TOLERANCE_S = 0.1  # a row is stored just after its config ends: windows are that approximate
SWEEP_TIMEOUT_S = 600.0
WARM_TIMEOUT_S = 300.0


def sweep(server, bodies: list[dict]) -> tuple[float, dict[tuple[str, int], dict]]:
    """Post every body at once; (wall from the first POST to the last terminal status, rows by config)."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        started = time.perf_counter()
        run_ids = []
        for body in bodies:
            reply = http.post("/api/benchmark/run", json=body)
            reply.raise_for_status()
            run_ids.append(reply.json()["run_id"])
        pending = set(run_ids)
        deadline = started + SWEEP_TIMEOUT_S
        while pending:
            for run_id in list(pending):
                if http.get(f"/api/benchmark/status/{run_id}").json()["status"] in TERMINAL:
                    pending.discard(run_id)
            if time.perf_counter() > deadline:
                raise SystemExit(f"the sweep did not finish in {SWEEP_TIMEOUT_S:g} s")
            time.sleep(0.05)
        wall = time.perf_counter() - started
        rows = {}
        for run_id in run_ids:
            outcome = http.get(f"/api/benchmark/results/{run_id}").json()
            if outcome["status"] != "completed" or outcome["failures"]:
                raise SystemExit(f"run {run_id} did not measure every config: {outcome['failures']}")
            for row in outcome["results"]:
                rows[(row["model_name"], row["batch_size"])] = row
    return wall, rows


def overlaps(rows: dict) -> int:
    """Pairs of configs measured on different nodes whose windows overlap (beyond the tolerance)."""
    windows = []
    for row in rows.values():
        end = _timestamp(row["created_at"])
        windows.append((row["node"], end - (row["wall_seconds"] or 0.0), end))
    return sum(
        1 for (node_a, start_a, end_a), (node_b, start_b, end_b) in itertools.combinations(windows, 2)
        if node_a != node_b and min(end_a, end_b) - max(start_a, start_b) > OVERLAP_TOLERANCE_S
    )


def _timestamp(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def ray_daemon_cpu_seconds(cluster) -> float:
    """CPU seconds used so far by the cluster's own processes, the measuring workers left out."""
    total = 0.0
    for name in cluster.node_names:
        for process in cluster.processes(name):
            try:
                if "engine.worker" in " ".join(process.cmdline()):
                    continue
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
    return total


# What steers a measuring worker's speed besides the code: read from its environment.
SETTING_PREFIXES = ("OMP_", "MKL_", "OPENBLAS_", "KMP_", "GOMP_", "MALLOC_", "LD_PRELOAD", "PYTORCH_", "TORCH_",
                    "PYTHONMALLOC", "PYTHONHASHSEED")


def measuring_workers(processes) -> list[psutil.Process]:
    found = []
    for process in processes:
        try:
            if "engine.worker" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            pass
    return found


def worker_settings(process: psutil.Process) -> dict:
    """A measuring worker's niceness, CPU affinity and thread/allocator variables."""
    environ = process.environ()
    return {
        "nice": process.nice(),
        "cpus": process.cpu_affinity(),
        "env": {name: value for name, value in sorted(environ.items()) if name.startswith(SETTING_PREFIXES)},
    }


def settings_of(local_server, cluster) -> dict[str, dict]:
    """Each measuring worker's settings, by side and device: local cpu, head/cpu, second/cpu."""
    sides = {"local cpu": measuring_workers(psutil.Process(local_server.pid).children(recursive=True))}
    for name in cluster.node_names:
        sides[f"ray {name}/cpu"] = measuring_workers(cluster.processes(name))
    found = {}
    for side, processes in sides.items():
        if len(processes) != 1:
            raise SystemExit(f"{side}: {len(processes)} measuring worker processes, expected 1")
        found[side] = {"pid": processes[0].pid, **worker_settings(processes[0])}
    return found


def print_settings(found: dict[str, dict], when: str) -> list[str]:
    """Print them; the names of what differs from the local worker's."""
    print(f"  measuring workers' settings ({when}):")
    for side, settings in found.items():
        env = ", ".join(f"{k}={v}" for k, v in settings["env"].items()) or "no thread/allocator variables"
        print(f"    {side:<16} pid {settings['pid']:>7}: nice {settings['nice']}, cpus {settings['cpus']}, {env}")
    reference = found["local cpu"]
    differ = sorted({f"{side}: {key}" for side, settings in found.items() for key in ("nice", "cpus", "env")
                     if settings[key] != reference[key]})
    print(f"    {'the same on both sides' if not differ else 'DIFFERENT: ' + '; '.join(differ)}")
    return differ


def warm_up(server, devices: list[str], models: list[str]) -> None:
    """One config per device, so that every worker (or actor) has started and built once."""
    wall, _ = sweep(server, [body([models[0]], [device], [1]) for device in devices])
    print(f"  warm-up ({', '.join(devices)}): {wall:.1f} s")


THREADS = {"threads": 1}


def body(models: list[str], hardware: list[str], batch_sizes: list[int]) -> dict:
    return {"models": models, "hardware": hardware, "batch_sizes": batch_sizes, "precision": "fp32",
            "force": True, "incremental": False, "progressive_mode": False, **THREADS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seconds", type=float, default=1.0, help="the servers' timing cap per config")
    parser.add_argument("--models", default="bert-tiny,gpt2-tiny", help="two models: one per Ray node")
    parser.add_argument("--batch-sizes", default="1,2,4,8")
    parser.add_argument("--rounds", type=int, default=3, help="local and ray sweeps, alternated")
    parser.add_argument("--one-node", action="store_true",
                        help="each round also sweeps every config on head/cpu alone, one actor's worker measuring "
                             "both models in turn as the local worker does: Ray without the split across nodes")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per worker (default 1: on a shared machine, fewer threads are "
                             "less at the mercy of other processes); 0 sends none, so each side uses its default")
    args = parser.parse_args()
    THREADS.clear()
    if args.threads:
        THREADS["threads"] = args.threads
    models = args.models.split(",")
    if len(models) != 2:
        raise SystemExit("--models takes two models, one per Ray node")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    root = Path(tempfile.mkdtemp(prefix="benchboard-ray-overhead-"))
    settings = {"max_seconds": args.max_seconds, "prestart_workers": True}

    print(f"sweep: {', '.join(models)} x batch sizes {batch_sizes} = {2 * len(batch_sizes)} configs, "
          f"max_seconds {args.max_seconds:g}, {args.threads or 'default'} thread(s), {args.rounds} rounds; "
          f"load average {_load()}")
    local_body = [body(models, ["cpu"], batch_sizes)]
    ray_bodies = [body([models[0]], ["head/cpu"], batch_sizes), body([models[1]], ["second/cpu"], batch_sizes)]
    one_node_body = [body(models, ["head/cpu"], batch_sizes)]
    started = time.perf_counter()
    with LocalRayCluster(root / "cluster", ["head", "second"]) as cluster, \
            start_server(root / "local", **settings) as local_server, \
            start_server(root / "ray", ray_address=cluster.address, **settings) as ray_server:
        print(f"cluster and both servers up in {time.perf_counter() - started:.1f} s (cluster at {cluster.address})")
        warm_up(local_server, ["cpu"], models)
        warm_up(ray_server, ["head/cpu", "second/cpu"], models)
        differ = print_settings(settings_of(local_server, cluster), "after the warm-up")
        local, ray, one_node = [], [], []
        daemon_cpu, ray_wall = 0.0, 0.0
        sides = ["local", "ray"] + (["one-node"] if args.one_node else [])
        for round_ in range(1, args.rounds + 1):
            # Alternated, so that all meet the same load over time, and the order turns each round,
            # so that none is always the first after the others.
            shift = (round_ - 1) % len(sides)
            for side in sides[shift:] + sides[:shift]:
                if side == "local":
                    local.append(sweep(local_server, local_body))
                elif side == "ray":
                    before = ray_daemon_cpu_seconds(cluster)
                    ray.append(sweep(ray_server, ray_bodies))
                    daemon_cpu += ray_daemon_cpu_seconds(cluster) - before
                    ray_wall += ray[-1][0]
                else:
                    one_node.append(sweep(ray_server, one_node_body))
            control = f", one-node wall {one_node[-1][0]:6.2f} s" if one_node else ""
            print(f"  round {round_} ({' then '.join(sides[shift:] + sides[:shift])}): local wall "
                  f"{local[-1][0]:6.2f} s, ray wall {ray[-1][0]:6.2f} s (ratio {ray[-1][0] / local[-1][0]:.3f})"
                  f"{control}, overlaps across nodes {overlaps(ray[-1][1])}; load average {_load()}")
        differ += print_settings(settings_of(local_server, cluster), "after the last round")

    threads = {side: sorted({row["threads"] for _, rows in sweeps for row in rows.values()})
               for side, sweeps in (("local", local), ("ray", ray + one_node))}
    print(f"  torch threads the rows recorded: local {threads['local']}, ray {threads['ray']}")
    if threads["local"] != threads["ray"]:
        differ.append(f"threads: local {threads['local']}, ray {threads['ray']}")

    print("\nper config: median over rounds of each side's p50")
    print(f"  {'config':<18}{'local p50 ms':>14}{'ray p50 ms':>12}{'ray/local':>11}{'node':>8}{'contended':>11}"
          f"{'local spread':>14}{'ray spread':>12}" + (f"{'one-node/local':>16}" if one_node else ""))
    ratios, control_ratios = [], []
    for key in sorted(local[0][1]):
        local_p50s = [rows[key]["p50_latency_ms"] for _, rows in local]
        ray_p50s = [rows[key]["p50_latency_ms"] for _, rows in ray]
        mine, theirs = statistics.median(local_p50s), statistics.median(ray_p50s)
        contended = sum(bool(rows[key].get("contended")) for _, rows in (*local, *ray))
        ratios.append(theirs / mine)
        print(f"  {key[0] + ' bs' + str(key[1]):<18}{mine:>14.3f}{theirs:>12.3f}{theirs / mine:>11.3f}"
              f"{ray[0][1][key]['node']:>8}{contended:>8}/{2 * len(local)}"
              f"{_spread(local_p50s):>14.1%}{_spread(ray_p50s):>12.1%}", end="")
        if one_node:
            control_ratios.append(statistics.median(rows[key]["p50_latency_ms"] for _, rows in one_node) / mine)
            print(f"{control_ratios[-1]:>16.3f}", end="")
        print()
    wall_ratio = statistics.median(r[0] / l[0] for l, r in zip(local, ray, strict=True))
    worst = max(abs(r - 1) for r in ratios)
    crossed = sum(overlaps(rows) for _, rows in ray)
    other = {side: statistics.median(row["other_cpu_seconds"] or 0.0 for _, rows in sweeps for row in rows.values())
             for side, sweeps in (("local", local), ("ray", ray))}
    print(f"\ncontention: {crossed} overlapping pairs of configs across the two nodes in {len(ray)} ray sweeps "
          f"(one config at a time per machine holds across nodes that share a host); the Ray cluster's own "
          f"processes used {daemon_cpu:.1f} CPU s over {ray_wall:.1f} s of ray sweeps "
          f"({daemon_cpu / ray_wall:.2f} cores); other processes' CPU while a config was timed, median per config: "
          f"local {other['local']:.3f} s, ray {other['ray']:.3f} s")
    print(f"\nwall ratio (ray / local, median of the rounds' ratios): {wall_ratio:.3f}  target <= {WALL_TARGET}  "
          f"{'PASS' if wall_ratio <= WALL_TARGET else 'MISS'}")
    print(f"medians' agreement: largest deviation {worst:.1%}, median deviation "
          f"{statistics.median(abs(r - 1) for r in ratios):.1%}  target within {MEDIAN_TARGET:.0%}  "
          f"{'PASS' if worst <= MEDIAN_TARGET else 'MISS'}")
    if control_ratios:
        print(f"  one-node control (both models on head/cpu, one worker, as locally): largest deviation "
              f"{max(abs(r - 1) for r in control_ratios):.1%}, median deviation "
              f"{statistics.median(abs(r - 1) for r in control_ratios):.1%}; ray faster than local in "
              f"{sum(r < 1 for r in ratios)} of {len(ratios)} configs split across nodes, "
              f"{sum(r < 1 for r in control_ratios)} of {len(control_ratios)} on one node")
    if differ:
        print("  the two sides did not measure with the same settings (" + "; ".join(differ) + "): a defect")
    if worst > MEDIAN_TARGET:
        print("  why: " + (
            "configs of the two nodes were measured at the same time, which the per-machine rule should prevent: "
            "a defect" if crossed else
            "not the two nodes measuring at once (no overlap); on a loaded machine a config's p50 moves between "
            "sweeps of the same server by the spread above, and the cluster's daemons add their share of CPU "
            "while the ray side measures. Measure on a quiet machine before reading the gap as Ray's"))


def _spread(values: list[float]) -> float:
    """(largest - smallest) / median of one side's p50s over the rounds: how much a config moves on its own."""
    return (max(values) - min(values)) / statistics.median(values)


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
