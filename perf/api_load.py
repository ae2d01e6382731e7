"""Does every WebSocket watcher get every update, promptly, and how fast is GET /status under load?

    python perf/api_load.py [--watchers 200] [--clients 50] [--requests 40] [--max-seconds 0.3]

Loopback only, bounded, stops by itself: it starts a real server (uvicorn in a
subprocess, tests/integration/server.py) on a free 127.0.0.1 port with a
throwaway database, and stops it at the end.

1. WebSocket fan-out. A blocker run holds the CPU device so the watched run
   (several tiny configs) stays queued while ``--watchers`` sockets connect to
   /api/benchmark/ws/{id}; once every socket has its first message the
   blocker is cancelled and the watched run goes through. Every watcher's
   sequence of updates is compared with the union of what all watchers got
   (an update is a whole status object; it is shown as (status,
   completed_configs, current_step)); any watcher that missed one, or got them
   out of order, is listed. Delivery delay, two ways:
   - spread: receive time minus the earliest receive time of the same update
     across watchers (the status object carries no publish timestamp, so this
     is the judged figure, as agreed). It leaves out the server's time from
     the change to the first delivery.
   - since computed: receive time minus the moment the server built the status
     object (start_time + elapsed_time, same machine clock, ms resolution). It
     also counts the DuckDB write of the run row that precedes each publish, so
     it is an upper bound; shown for context, target not judged on it.
   Target: p99 spread <= 100 ms.
2. GET /api/benchmark/status/{id}: ``--clients`` concurrent clients (one
   keep-alive connection each, opened by a first request timed apart) send
   ``--requests`` requests one after another; p50/p99 of the client-side
   latency. A single client first, for the per-request cost without queueing;
   then all clients with the server otherwise idle, and while a run is
   measuring. Target: p99 <= 50 ms.

All clients run in this one Python process on the same machine as the server,
so the client's own CPU use is part of every figure.
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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import psutil
from websockets.asyncio.client import connect

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from tests.integration.server import start_server  # noqa: E402

WS_P99_TARGET_MS = 100.0
STATUS_P99_TARGET_MS = 50.0
TERMINAL = {"completed", "failed", "cancelled"}
WATCHED_RUN = {"models": ["bert-tiny", "gpt2-tiny", "distilbert-tiny"], "batch_sizes": [1, 2],
               "progressive_mode": False, "force": True}
BLOCKER_RUN = {"models": ["bert-tiny"], "batch_sizes": [1, 2, 4, 8, 16, 32, 64, 128],
               "progressive_mode": False, "force": True}
BUSY_RUN = {"models": ["bert-tiny", "gpt2-tiny", "distilbert-tiny"], "batch_sizes": [1, 2, 4, 8, 16, 32, 64],
            "progressive_mode": False, "force": True}
WATCH_TIMEOUT_S = 300.0


@dataclass
class Watcher:
    number: int
    messages: list[tuple[float, dict]] = field(default_factory=list)  # (time.time() at receipt, status)
    error: str | None = None

    @property
    def updates(self) -> list[tuple[float, dict]]:
        """What the server pushed after the status it sends on connect."""
        return self.messages[1:]


def identity(status: dict) -> str:
    return json.dumps(status, sort_keys=True)


def shown(status: dict) -> tuple:
    return status["status"], status["completed_configs"], status["current_step"]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def start_run(client: httpx.AsyncClient, body: dict) -> str:
    reply = await client.post("/api/benchmark/run", json=body)
    reply.raise_for_status()
    return reply.json()["run_id"]


async def wait_for_status(client: httpx.AsyncClient, run_id: str, wanted: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = (await client.get(f"/api/benchmark/status/{run_id}")).json()
        if status["status"] in wanted:
            return status
        await asyncio.sleep(0.05)
    raise SystemExit(f"run {run_id} did not reach {wanted} within {timeout:.0f} s")


async def watch(url: str, watcher: Watcher, first_received: asyncio.Queue) -> None:
    try:
        async with connect(url, open_timeout=60, max_queue=None) as socket:
            watcher.messages.append((time.time(), json.loads(await socket.recv())))
            first_received.put_nowait(watcher.number)
            async for raw in socket:  # ends when the server closes after the terminal status
                watcher.messages.append((time.time(), json.loads(raw)))
    except Exception as error:  # noqa: BLE001 - a watcher that fails is a finding to report
        watcher.error = f"{type(error).__name__}: {error}"
        if not watcher.messages:  # it never counted as connected
            first_received.put_nowait(watcher.number)


async def websocket_fan_out(server, http: httpx.AsyncClient, count: int) -> list[Watcher]:
    blocker = await start_run(http, BLOCKER_RUN)
    await wait_for_status(http, blocker, {"running"}, 60)
    run_id = await start_run(http, WATCHED_RUN)
    url = f"{server.ws_url}/api/benchmark/ws/{run_id}"
    watchers = [Watcher(n) for n in range(count)]
    first_received: asyncio.Queue = asyncio.Queue()
    connecting = time.perf_counter()
    tasks = [asyncio.create_task(watch(url, w, first_received)) for w in watchers]
    for _ in watchers:
        await first_received.get()
    print(f"{count} watchers connected (or failed) in {time.perf_counter() - connecting:.2f} s; "
          "cancelling the blocker run")
    await http.post(f"/api/benchmark/cancel/{blocker}")
    _, pending = await asyncio.wait(tasks, timeout=WATCH_TIMEOUT_S)
    for task in pending:
        task.cancel()
    if pending:
        print(f"{len(pending)} watchers still open after {WATCH_TIMEOUT_S:.0f} s: stopped")
    return watchers


def report_fan_out(watchers: list[Watcher]) -> list[str]:
    failures = []
    failed = [w for w in watchers if w.error]
    for w in failed[:5]:
        print(f"  watcher {w.number}: {w.error}")
    if failed:
        failures.append(f"{len(failed)} of {len(watchers)} watchers failed (first: {failed[0].error})")
    live = [w for w in watchers if not w.error and w.messages]
    late = [w for w in live if w.messages[0][1]["status"] != "queued"]
    if late:
        failures.append(f"{len(late)} watchers connected after the run started: their comparison is not fair")

    first_seen: dict[str, float] = {}
    by_identity: dict[str, dict] = {}
    for w in live:
        for received, status in w.updates:
            key = identity(status)
            first_seen[key] = min(received, first_seen.get(key, received))
            by_identity[key] = status
    union = sorted(first_seen, key=first_seen.get)
    print(f"  updates pushed (union over watchers): {len(union)}")
    for key in union:
        print(f"    {shown(by_identity[key])}")

    missed, disordered, unfinished = [], [], []
    spreads, since_computed = [], []
    for w in live:
        keys = [identity(status) for _, status in w.updates]
        lost = [shown(by_identity[k]) for k in union if k not in set(keys)]
        if lost:
            missed.append((w.number, lost))
        elif keys != union:
            disordered.append(w.number)
        if not w.updates or w.updates[-1][1]["status"] not in TERMINAL:
            unfinished.append(w.number)
        for received, status in w.updates:
            spreads.append((received - first_seen[identity(status)]) * 1000)
            if status["start_time"]:
                computed = datetime.fromisoformat(status["start_time"]).timestamp() + status["elapsed_time"]
                since_computed.append((received - computed) * 1000)
    for number, lost in missed[:5]:
        print(f"  watcher {number} missed {len(lost)}: {lost}")
    if missed:
        failures.append(f"{len(missed)} watchers missed updates")
    if disordered:
        failures.append(f"{len(disordered)} watchers got updates out of order (e.g. watcher {disordered[0]})")
    if unfinished:
        failures.append(f"{len(unfinished)} watchers never got the terminal status")
    complete = len(live) - len(missed) - len(disordered)
    print(f"  watchers that got every update in order: {complete} of {len(watchers)}")
    if not spreads:
        return failures + ["no update was delivered"]

    print(f"\n  {'delivery delay (ms)':<34}{'samples':>8}{'p50':>8}{'p99':>8}{'max':>8}  target")
    p99_spread = percentile(spreads, 0.99)
    verdict = "PASS" if p99_spread <= WS_P99_TARGET_MS else "MISS"
    for label, samples, judged in (("spread from first receiver", spreads, verdict),
                                   ("since the status was computed **", since_computed, "-")):
        print(f"  {label:<34}{len(samples):>8}{percentile(samples, 0.5):>8.1f}"
              f"{percentile(samples, 0.99):>8.1f}{max(samples):>8.1f}  {judged}")
    print("  ** includes the run-row DuckDB write before each publish; for context only")
    if verdict == "MISS":
        failures.append(f"WebSocket p99 spread {p99_spread:.1f} ms > {WS_P99_TARGET_MS:.0f} ms")
    return failures


async def timed_gets(client: httpx.AsyncClient, path: str, requests: int) -> tuple[list[float], int]:
    latencies, errors = [], 0
    for _ in range(requests):
        started = time.perf_counter()
        reply = await client.get(path)
        latencies.append((time.perf_counter() - started) * 1000)
        errors += reply.status_code != 200
    return latencies, errors


class RawHttpClient:
    """Keep-alive HTTP/1.1 GETs on a bare asyncio stream: a client that costs far less CPU than
    httpx, so on a machine with few cores the figures say more about the server."""

    def __init__(self, url: str):
        self._host, _, port = url.removeprefix("http://").partition(":")
        self._port = int(port)
        self._streams = None

    async def get(self, path: str) -> httpx.Response:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {self._host}\r\n\r\n".encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if line)
        body = await reader.readexactly(int(headers["content-length"]))
        return httpx.Response(int(head[0].split()[1]), content=body)

    async def aclose(self) -> None:
        if self._streams is not None:
            self._streams[1].close()


async def status_load(
    url: str, path: str, clients: int, requests: int, raw: bool = False
) -> tuple[list[float], list[float], int, float]:
    """(latencies, first-request latencies, errors, seconds) of ``clients`` closed-loop clients.

    Each client is built and connected by a first request timed apart: building an httpx
    client loads an SSL context (tens of ms of the client's own CPU each), which says
    nothing about the server.
    """
    pool = [
        RawHttpClient(url) if raw else httpx.AsyncClient(base_url=url, timeout=30) for _ in range(clients)
    ]
    try:
        connects = await asyncio.gather(*(timed_gets(client, path, 1) for client in pool))
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(timed_gets(client, path, requests) for client in pool))
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(client.aclose() for client in pool))
    latencies = [ms for timings, _ in outcomes for ms in timings]
    errors = sum(e for _, e in outcomes) + sum(e for _, e in connects)
    return latencies, [ms for timings, _ in connects for ms in timings], errors, elapsed


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def status_under_load(
    http: httpx.AsyncClient, server_pid: int, run_id: str, clients: int, requests: int
) -> list[str]:
    """A single client first (the per-request cost without queueing), then ``clients`` at once,
    on the finished watched run with the server idle, and on a fresh run while it measures.
    The CPU each side spends per request shows where the machine's cores go."""
    failures = []
    server, client = psutil.Process(server_pid), psutil.Process()
    print(f"  {'scenario':<36}{'requests':>9}{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
          f"{'connect p99':>12}{'CPU ms/req server':>19}{' client':>8}  target")
    scenarios = [  # label, clients, whether a run is measuring, raw-socket client
        ("1 client, server idle", 1, False, False),
        (f"{clients} clients, server idle", clients, False, False),
        (f"{clients} clients, a run measuring", clients, True, False),
        (f"{clients} raw clients, server idle ***", clients, False, True),
        (f"{clients} raw clients, run measuring ***", clients, True, True),
    ]
    for label, count, busy, raw in scenarios:
        watched = run_id
        if busy:
            watched = await start_run(http, BUSY_RUN)
            await wait_for_status(http, watched, {"running"}, 60)
        cpu_before = cpu_seconds(server), cpu_seconds(client)
        latencies, connects, errors, elapsed = await status_load(
            str(http.base_url), f"/api/benchmark/status/{watched}", count, requests, raw
        )
        server_ms, client_ms = (
            (cpu_seconds(p) - before) * 1000 / (len(latencies) + len(connects))
            for p, before in zip((server, client), cpu_before)
        )
        p99 = percentile(latencies, 0.99)
        judged = count == clients
        verdict = ("PASS" if p99 <= STATUS_P99_TARGET_MS and not errors else "MISS") if judged else "-"
        print(
            f"  {label:<36}{len(latencies):>9}{len(latencies) / elapsed:>7.0f}"
            f"{statistics.median(latencies):>8.1f}{p99:>8.1f}{max(latencies):>8.1f}"
            f"{percentile(connects, 0.99):>12.1f}{server_ms:>19.2f}{client_ms:>8.2f}  {verdict}"
        )
        if errors:
            failures.append(f"GET /status ({label}): {errors} non-200 replies")
        if verdict == "MISS":
            failures.append(f"GET /status ({label}): p99 {p99:.1f} ms > {STATUS_P99_TARGET_MS:.0f} ms")
        if busy:
            status = (await http.post(f"/api/benchmark/cancel/{watched}")).json()
            print(f"  (the busy run had finished {status['completed_configs']} of {status['total_configs']} "
                  "configs when the load ended; then cancelled)")
    print("  connect p99: each client's first request, which opens its connection (not in the other columns)")
    print("  CPU ms/req: the server's main process (not its measuring worker) and this client process")
    print("  *** a bare asyncio HTTP/1.1 client instead of httpx, to show the server with less client CPU")
    return failures


async def run_all(args: argparse.Namespace) -> list[str]:
    workdir = Path(tempfile.mkdtemp(prefix="benchboard-api-load-"))
    server = start_server(workdir, max_seconds=args.max_seconds)
    try:
        print(f"server {server.url} (loopback), data under {workdir}, max_seconds={args.max_seconds}")
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            print(f"\n1. {args.watchers} WebSocket watchers on one run")
            watchers = await websocket_fan_out(server, http, args.watchers)
            failures = report_fan_out(watchers)
            run_id = watchers[0].messages[0][1]["run_id"] if watchers[0].messages else None
            print(f"\n2. GET /status, {args.requests} requests per client, one after another")
            if run_id:
                failures += await status_under_load(http, server.pid, run_id, args.clients, args.requests)
        return failures
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=40, help="GET /status requests per client")
    parser.add_argument("--max-seconds", type=float, default=0.3, help="the server's timing cap per config")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    failures = asyncio.run(run_all(args))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    print(f"targets: WebSocket p99 spread <= {WS_P99_TARGET_MS:.0f} ms with every update delivered; "
          f"GET /status p99 <= {STATUS_P99_TARGET_MS:.0f} ms")
    print("all targets met" if not failures else "MISSED:\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    main()
