"""How much wall time does a sweep through the server spend beyond the timed iterations?

    python perf/sweep_overhead.py [--max-seconds 1.0] [--models bert-tiny,gpt2-tiny,distilbert-tiny]
                                  [--batch-sizes 1,2,4,8]

Loopback only, stops by itself: starts a real server (uvicorn in a subprocess,
tests/integration/server.py) with a throwaway database, POSTs one sweep
(3 tiny models x 4 batch sizes = 12 configs, force=true, progressive_mode=false),
follows it over the run's WebSocket and reads GET /results at the end.

- wall: from just before the POST to the receipt of the terminal status.
- timed: the sum over configs of the timed iterations, n_samples x
  average_latency_ms of each result row.
- judged: wall / timed, targets <= 1.5 for the sweep posted the moment a fresh
  server answers and <= 1.3 for the same sweep again on its warm worker (the
  long-lived worker must amortise torch's import and the model builds).

For context, per config: the wall time seen by this client (from the update
that names the config as the current step to the one that counts it done),
and the worker's own wall time for it (engine ``Result.wall_seconds``, summed
by the scheduler and not in the API: recovered from ``estimated_remaining_time``,
which is remaining x summed wall / configs measured, so it is missing for the
last config). The first config also pays the worker's start (a new process that
imports torch and transformers); its cost is printed apart, with the ratio
without the first config. The sweep then runs a second time on the same
server, whose worker is now warm: the steady state of a long-lived server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from engine.config import MeasurementSettings  # noqa: E402
from tests.integration.server import start_server  # noqa: E402

FRESH_TARGET = 1.5  # the first pass, on a server that has just started (issue 16)
WARM_TARGET = 1.3  # the second, on its warm worker
TERMINAL = {"completed", "failed", "cancelled"}
SWEEP_TIMEOUT_S = 540.0


FRESH = "fresh server (its pre-started worker may still be importing torch)"
WARM = "same sweep again on the warm worker"


def step_name(model: str, batch_size: int) -> str:
    """The scheduler's current_step for a config on the CPU at fp32."""
    return f"{model} on cpu, batch size {batch_size} (fp32)"


async def run_sweep(server, body: dict) -> tuple[float, list[tuple[float, dict]], dict]:
    """(POST time, every status update with its receipt time, the /results reply), perf_counter clock."""
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        posted = time.perf_counter()
        reply = await http.post("/api/benchmark/run", json=body)
        reply.raise_for_status()
        run_id = reply.json()["run_id"]
        updates = []
        async with connect(f"{server.ws_url}/api/benchmark/ws/{run_id}", open_timeout=60) as socket:
            async for raw in socket:  # the server closes it after the terminal status
                updates.append((time.perf_counter(), json.loads(raw)))
        results = (await http.get(f"/api/benchmark/results/{run_id}")).json()
    return posted, updates, results


def config_walls(
    posted: float, updates: list[tuple[float, dict]], steps: list[str]
) -> list[tuple[float, float]]:
    """(start, end) of each config as this client saw it; the first starts at the POST."""
    spans = []
    for index, step in enumerate(steps):
        start = posted if index == 0 else next(t for t, s in updates if s["current_step"] == step)
        end = next(t for t, s in updates if s["completed_configs"] > index)
        spans.append((start, end))
    return spans


def engine_walls(updates: list[tuple[float, dict]], total: int) -> list[float | None]:
    """The worker's wall time of each config, from estimated_remaining_time (None for the last)."""
    summed = {0: 0.0}
    for _, status in updates:
        done, estimate = status["completed_configs"], status["estimated_remaining_time"]
        if status["status"] == "running" and 0 < done < total and estimate is not None:
            summed[done] = estimate * done / (total - done)
    return [summed[k + 1] - summed[k] if k + 1 in summed and k in summed else None for k in range(total)]


def report_pass(label: str, steps: list[str], posted: float, updates: list, results: dict) -> dict:
    """Print one sweep's per-config table; return its summary figures."""
    final = updates[-1][1]
    rows = {step_name(r["model_name"], r["batch_size"]): r for r in results["results"]}
    if final["status"] != "completed" or results["failures"] or set(rows) != set(steps):
        raise SystemExit(f"the sweep did not measure every config: {final}, failures {results['failures']}")
    ordered = [rows[step] for step in steps]
    timed = [r["n_samples"] * r["average_latency_ms"] / 1000 for r in ordered]
    spans = config_walls(posted, updates, steps)
    walls = [end - start for start, end in spans]
    engine = engine_walls(updates, len(steps))

    print(f"\n{label}")
    print(f"  {'config':<36}{'n':>6}{'mean ms':>9}{'timed s':>9}{'load ms':>9}{'cold ms':>9}"
          f"{'wall s':>8}{'worker s':>10}")
    for step, row, seconds, span_wall, worker_wall in zip(steps, ordered, timed, walls, engine):
        worker = f"{worker_wall:>10.3f}" if worker_wall is not None else f"{'-':>10}"
        print(
            f"  {step.removesuffix(' (fp32)'):<36}{row['n_samples']:>6}{row['average_latency_ms']:>9.2f}"
            f"{seconds:>9.3f}{row['load_time_ms']:>9.1f}{row['cold_latency_ms']:>9.1f}"
            f"{span_wall:>8.3f}{worker}"
        )
    known = [k for k, w in enumerate(engine) if w is not None]
    # What the measurement itself takes beyond the timed samples, before any harness work: each
    # config's build, its cold call and at least warmup_seconds of warm-up (the server's default).
    protocol = sum((r["load_time_ms"] + r["cold_latency_ms"]) / 1000 for r in ordered)
    protocol += len(ordered) * MeasurementSettings().warmup_seconds
    return {
        "protocol_floor": (sum(timed) + protocol) / sum(timed),
        "wall": updates[-1][0] - posted,
        "timed": sum(timed),
        "config_walls": sum(walls),
        "after_first": (updates[-1][0] - spans[0][1]) / sum(timed[1:]),
        "worker_ratio": sum(engine[k] for k in known) / sum(timed[k] for k in known) if known else None,
        "first_wall": walls[0],
        "median_wall": statistics.median(walls[1:]),
        "worker_start": walls[0] - engine[0] if engine[0] is not None else None,
    }


def verdict(ratio: float, target: float) -> str:
    return "PASS" if ratio <= target else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seconds", type=float, default=1.0, help="the server's timing cap per config")
    parser.add_argument("--models", default="bert-tiny,gpt2-tiny,distilbert-tiny")
    parser.add_argument("--batch-sizes", default="1,2,4,8")
    args = parser.parse_args()
    models = args.models.split(",")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    body = {"models": models, "batch_sizes": batch_sizes, "force": True, "progressive_mode": False}
    steps = [step_name(m, b) for m in models for b in batch_sizes]

    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    workdir = Path(tempfile.mkdtemp(prefix="benchboard-sweep-"))
    server = start_server(workdir, max_seconds=args.max_seconds)
    passes = {}
    try:
        print(f"server {server.url} (loopback), data under {workdir}, max_seconds={args.max_seconds}")
        print(f"sweep: {', '.join(models)} x batch sizes {batch_sizes} = {len(steps)} configs, run twice")
        for label in (FRESH, WARM):
            outcome = asyncio.run(asyncio.wait_for(run_sweep(server, body), SWEEP_TIMEOUT_S))
            passes[label] = report_pass(label, steps, *outcome)
    finally:
        server.stop()
    print("  wall s: seen by this client over the WebSocket; worker s: Result.wall_seconds inside the worker")

    print(f"\n{'pass':<44}{'wall s':>8}{'timed s':>9}{'wall/timed':>12}{'w/o 1st':>9}{'worker/timed':>14}"
          f"{'floor':>7}")
    for label, p in passes.items():
        worker_ratio = f"{p['worker_ratio']:>14.2f}" if p["worker_ratio"] is not None else f"{'-':>14}"
        ratio = p["wall"] / p["timed"]
        target = FRESH_TARGET if label == FRESH else WARM_TARGET
        print(f"{label:<44}{p['wall']:>8.2f}{p['timed']:>9.2f}{ratio:>7.2f} {verdict(ratio, target)}"
              f"{p['after_first']:>9.2f}{worker_ratio}{p['protocol_floor']:>7.2f}")
    cold = next(iter(passes.values()))
    start = cold["worker_start"]
    start_cost = "" if start is None else f" (worker start: process + imports ~ {start:.2f} s)"
    print(f"\ncold pass: first config {cold['first_wall']:.2f} s, "
          f"median of the rest {cold['median_wall']:.2f} s{start_cost}")
    print("wall/timed: POST to terminal status over the summed timed iterations (n x mean); targets <= "
          f"{FRESH_TARGET} on the fresh server, <= {WARM_TARGET} on the warm worker")
    print("w/o 1st: the same after the first config is done; worker/timed: the worker's own wall per config"
          " over its timed iterations (every config but the last)")
    print(f"floor: what the measurement protocol alone costs over the timed samples: each config's build and "
          f"cold call (load ms, cold ms) and at least {MeasurementSettings().warmup_seconds:g} s of warm-up; "
          "the harness (worker start, pipe, storage, status) comes on top")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
