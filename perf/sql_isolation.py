"""Does the heaviest custom SQL stay inside its bounds, and off everyone else's back?

    python perf/sql_isolation.py [--seconds 30] [--sql-clients 4] [--pollers 20] [--rows 100000]
                                 [--baseline-seconds 10] [--queries "runaway recursive counter,wide rows"]
                                 [--py-spy gil.txt] [--server-setting db_threads=1 ...]
    python perf/sql_isolation.py --ab db_threads=1 [--ab db_threads=1,sql_pool_size=1] [--ab-rounds 3]
                                 [--ab-seconds 15]

Loopback only, bounded, stops by itself: it fills a throwaway database with SYNTHETIC
results (perf/pages.py's ``fill_synthetic``), starts a real server on it (uvicorn in a
subprocess on a free 127.0.0.1 port, tests/integration/server.py, workers not
pre-started), and for ``--seconds``:

- ``--sql-clients`` threads post the heaviest queries the guard allows (the ones issue 15
  reported, and the ones the guard now clamps), round robin, one after another; a query
  refused with 429 is posted again after a quarter of its Retry-After;
- ``--pollers`` clients (one asyncio loop, one keep-alive connection each) poll
  ``GET /api/benchmark/status/{run_id}`` back to back, of a run the server stored (posted
  and cancelled before the load, so nothing measures meanwhile);
- a sampler reads the server process's RSS every 20 ms (psutil).

Before the load, the pollers run alone for ``--baseline-seconds`` on the same server: the
status p50/p99 without SQL, at the machine's load of the moment, which the figures with SQL
are read against on a shared machine. The load average (``os.getloadavg``) is printed at
the start and the end.

With ``--py-spy FILE`` (py-spy installed: the dev extra), py-spy samples the server during
the load, only threads holding the GIL (``--gil --nonblocking``), writes the raw stacks to
FILE and prints who held the GIL: the event loop, the SQL pool's threads (and in what), or
other threads.

Then it prints, with PASS/FAIL:
- status p99, target <= 100 ms;
- the server's peak RSS growth over its RSS before the load, target <= 1 GB;
- the longest SQL answer, target <= the server's SQL time limit + 0.5 s.
It also prints each query's outcomes (200 / 400 / 429) and longest answer.

All clients run in this one Python process on the same machine as the server, so their
CPU use is part of every figure.

``--server-setting NAME=VALUE`` (repeatable) sets a server Setting (``db_threads``: DuckDB's
threads; ``sql_pool_size``: guarded queries at once). ``--ab A,B`` (repeatable) is the A/B
for a shared machine: the default server and one server per ``--ab`` variant start side by
side, each on its own copy of the database, and for ``--ab-rounds`` rounds each in turn takes
the same load (the SQL clients and the pollers) for ``--ab-seconds``; it prints each
variant's status p99 per round and pooled, and its ratio to the default's, so the machine's
load hits them alike. The targets are judged only by the plain (non-A/B) run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from perf.pages import fill_synthetic  # noqa: E402
from storage.database import Database  # noqa: E402
from tests.integration.server import start_server  # noqa: E402

STATUS_P99_TARGET_MS = 100.0
RSS_GROWTH_TARGET_BYTES = 1024**3
SQL_LATE_TARGET_S = 0.5
SQL_TIMEOUT_S = 5.0  # the server's default limit, set explicitly here

# The heaviest queries the guard lets through, each bounded a different way.
HEAVY_QUERIES = {
    # issue 15: 13.9 s past the 5 s limit, converting 3 million map entries under the GIL
    "map of a million x 3 rows": "SELECT map(l, l) AS m FROM (SELECT list(x) AS l "
                                "FROM unnest(generate_series(1, 1000000)) t(x)), unnest(generate_series(1, 3))",
    # issue 15: 3.4 s
    "histogram of a million": "SELECT histogram(x) AS h FROM unnest(generate_series(1, 1000000)) t(x)",
    # issue 15: three at once took the server from 1.7 to 4.9 GB; now refused when it runs
    # (a concatenation in a recursive CTE is checked), and the memory limit stops row doubling
    "recursive string doubling": "WITH RECURSIVE r(s, i) AS (SELECT 'x', 0 UNION ALL "
                                 "SELECT s || s, i + 1 FROM r WHERE i < 40) SELECT max(length(s)) FROM r",
    "recursive row doubling": "WITH RECURSIVE r(i, s) AS (SELECT 1, repeat('x', 1000) UNION ALL "
                              "SELECT i + 1, s FROM r, (VALUES (1), (2)) AS v(x) WHERE i < 40) SELECT count(*) FROM r",
    # counts to a billion one row at a time: stopped by the time limit
    "runaway recursive counter": "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c "
                                 "WHERE n < 1000000000) SELECT count(*) FROM c",
    # a three-way self join of the results: stopped by the time limit
    "cross join of results": "SELECT sum(a.throughput_items_per_second * b.batch_size + c.batch_size) "
                             "FROM performance_results a, performance_results b, performance_results c",
    # computed sizes, clamped in the SQL that runs
    "computed repeat per row": "SELECT result_id, repeat('#', (throughput_items_per_second / 10)::BIGINT) AS bar "
                               "FROM performance_results",
    "computed series per row": "SELECT result_id, generate_series(1, batch_size * 1000000) AS s "
                               "FROM performance_results",
    "computed lpad per row": "SELECT lpad(config_key, batch_size * 100000, '.') AS padded FROM performance_results",
    # a wide answer: cut at the byte cap
    "wide rows": "SELECT *, repeat(config_key, 1000) AS filler FROM results_view",
    # a growing replacement over a long string: refused when it runs
    "growing regexp_replace": "SELECT length(regexp_replace(repeat('x', 10000), 'x', 'yyyyyyyyyy', 'g'))",
}


def stored_run(http: httpx.Client) -> str:
    """A run the server stored itself, to poll: posted and cancelled at once, so that no
    benchmark measures while SQL runs (the synthetic runs lack the live fields)."""
    run_id = http.post("/api/benchmark/run", json={"models": ["bert-tiny"], "batch_sizes": [1]}).json()["run_id"]
    http.post(f"/api/benchmark/cancel/{run_id}").raise_for_status()
    deadline = time.monotonic() + 30
    while http.get(f"/api/benchmark/status/{run_id}").json()["status"] != "cancelled":
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run_id} was not cancelled within 30 s")
        time.sleep(0.1)
    return run_id


def percentile(samples: list[float], fraction: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def sample_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    process = psutil.Process(pid)
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], process.memory_info().rss)
        except psutil.Error:
            return
        time.sleep(0.02)


def sql_client(url: str, names: list[str], offset: int, until: float, answers: list) -> None:
    with httpx.Client(base_url=url, timeout=60.0) as http:
        turn = offset
        while time.monotonic() < until:
            name = names[turn % len(names)]
            started = time.monotonic()
            reply = http.post("/api/benchmark/sql", json={"sql": HEAVY_QUERIES[name]})
            elapsed = time.monotonic() - started
            body = reply.json()
            detail = body.get("truncated_reason") or body.get("error") or ""
            answers.append((name, reply.status_code, elapsed, detail))
            if reply.status_code == 429:  # the same query again, soon, so that every one runs
                time.sleep(float(reply.headers.get("Retry-After", "1")) / 4)
            else:
                turn += 1


async def poll_status(url: str, path: str, clients: int, until: float) -> list[float]:
    latencies: list[float] = []

    async def one_client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60.0) as http:
            await http.get(path)  # opens the connection; not timed
            while time.monotonic() < until:
                started = time.perf_counter()
                reply = await http.get(path)
                latencies.append((time.perf_counter() - started) * 1000)
                reply.raise_for_status()

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies


def start_py_spy(pid: int, seconds: float, out: str) -> subprocess.Popen:
    spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if spy is None:
        raise SystemExit("--py-spy needs py-spy: pip install -c constraints.txt py-spy (the dev extra has it)")
    return subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "100", "--gil",
                             "--nonblocking", "-f", "raw", "-o", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def gil_holders(raw: Path) -> tuple[Counter, Counter, int]:
    """Samples per holder (event loop / SQL pool / other threads) and per SQL-pool leaf frame."""
    holders: Counter = Counter()
    sql_leaves: Counter = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        if frames[0].startswith("_run_module_as_main"):
            holders["event loop (main thread)"] += samples
        elif any("sql_execution.py" in frame or "sql_guard.py" in frame for frame in frames):
            holders["SQL pool threads"] += samples
            sql_leaves[frames[-1]] += samples
        else:
            holders["other threads (handlers' pool, scheduler, timers)"] += samples
    return holders, sql_leaves, total


def print_gil_holders(raw: Path, seconds: float) -> None:
    holders, sql_leaves, total = gil_holders(raw)
    possible = seconds * 100
    print(f"\nGIL held in {total:,} of ~{possible:,.0f} samples ({100 * total / possible:.0f}% of the time), by:")
    for holder, samples in holders.most_common():
        print(f"  {holder:48} {100 * samples / max(total, 1):5.1f}% of the held samples")
    for frame, samples in sql_leaves.most_common(5):
        print(f"    SQL: {frame[:70]:70} {100 * samples / max(total, 1):5.1f}%")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def server_settings(pairs: list[str]) -> dict:
    """``NAME=VALUE`` strings as start_server keywords (values stay strings: env variables)."""
    settings = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"a server setting is NAME=VALUE, not {pair!r}")
        settings[name.strip()] = value.strip()
    return settings


def load_phase(url: str, path: str, names: list[str], sql_clients: int, pollers: int, seconds: float,
               offset: int = 0) -> tuple[list[float], list]:
    """The SQL clients and the pollers against one server for ``seconds``: status latencies, SQL answers."""
    until = time.monotonic() + seconds
    answers: list = []
    clients = [threading.Thread(target=sql_client, args=(url, names, offset + n * 3, until, answers))
               for n in range(sql_clients)]
    for client in clients:
        client.start()
    latencies = asyncio.run(poll_status(url, path, pollers, until))
    for client in clients:
        client.join(timeout=120)
    return latencies, answers


def prepared_path(server) -> str:
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        path = f"/api/benchmark/status/{stored_run(http)}"
        http.get(path).raise_for_status()
        for _ in range(20):  # warm the status path
            http.get(path)
    return path


def run_ab(args, names: list[str], workdir: Path, db_path: Path) -> None:
    """The default server against each ``--ab`` variant, phases interleaved round by round."""
    from contextlib import ExitStack

    variants = [("default", {})] + [(spec, server_settings(spec.split(","))) for spec in args.ab]
    with ExitStack() as stack:
        servers = []
        for index, (label, overrides) in enumerate(variants):
            folder = workdir / f"variant{index}"
            folder.mkdir()
            shutil.copy(db_path, folder / db_path.name)
            server = stack.enter_context(start_server(folder, db_path=folder / db_path.name, sql_timeout_s=SQL_TIMEOUT_S,
                                                      prestart_workers=False, **overrides))
            servers.append((label, server, prepared_path(server)))
        time.sleep(3)  # let the servers settle after the runs they stored
        p99s: dict[str, list[float]] = defaultdict(list)
        pooled: dict[str, list[float]] = defaultdict(list)
        longest: dict[str, float] = defaultdict(float)
        baselines: dict[str, list[float]] = defaultdict(list)
        for label, server, path in servers:
            baselines[label] = asyncio.run(poll_status(server.url, path, args.pollers,
                                                       time.monotonic() + args.baseline_seconds / 2))
        for round_index in range(args.ab_rounds):
            order = servers if round_index % 2 == 0 else servers[::-1]  # ABBA: drift cancels
            for label, server, path in order:
                latencies, answers = load_phase(server.url, path, names, args.sql_clients, args.pollers,
                                                args.ab_seconds, offset=round_index)
                p99s[label].append(percentile(latencies, 0.99))
                pooled[label].extend(latencies)
                longest[label] = max([longest[label], *(e for _, status, e, _ in answers if status != 429)])
                print(f"round {round_index + 1} {label:32} status p99 {p99s[label][-1]:7.1f} ms "
                      f"({len(latencies):,} polls, {sum(1 for a in answers if a[1] != 429)} SQL answers), "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
    reference = percentile(pooled["default"], 0.99)
    print(f"\n{'variant':34} {'no-SQL p99':>10} {'p99 per round (ms)':>30} {'pooled p99':>10} {'/ default':>9} "
          f"{'longest SQL':>11}")
    for label, _ in variants:
        rounds = " ".join(f"{value:.0f}" for value in p99s[label])
        value = percentile(pooled[label], 0.99)
        print(f"{label:34} {percentile(baselines[label], 0.99):10.1f} {rounds:>30} {value:10.1f} "
              f"{value / reference:9.2f} {longest[label]:10.2f}s")
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the load runs")
    parser.add_argument("--sql-clients", type=int, default=4)
    parser.add_argument("--pollers", type=int, default=20)
    parser.add_argument("--rows", type=int, default=100_000, help="synthetic results to fill first")
    parser.add_argument("--queries", default="", help="comma-separated names of HEAVY_QUERIES to run (default: all)")
    parser.add_argument("--py-spy", default="", metavar="FILE",
                        help="sample the server's GIL holders with py-spy during the load into FILE")
    parser.add_argument("--baseline-seconds", type=float, default=10.0,
                        help="the pollers alone first, for the status latency without SQL (0: skip)")
    parser.add_argument("--server-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a server Setting, e.g. db_threads=1 or sql_pool_size=1 (repeatable)")
    parser.add_argument("--ab", action="append", default=[], metavar="NAME=VALUE[,NAME=VALUE]",
                        help="A/B: a variant server against the default one, interleaved (repeatable)")
    parser.add_argument("--ab-rounds", type=int, default=3)
    parser.add_argument("--ab-seconds", type=float, default=15.0, help="each variant's load phase per round")
    args = parser.parse_args()
    names = [name.strip() for name in args.queries.split(",") if name.strip()] or list(HEAVY_QUERIES)
    unknown = [name for name in names if name not in HEAVY_QUERIES]
    if unknown:
        raise SystemExit(f"unknown queries {unknown}; known: {', '.join(HEAVY_QUERIES)}")

    print("load average at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    workdir = Path(tempfile.mkdtemp(prefix="benchboard-sql-isolation-"))
    db_path = workdir / "benchmarks.duckdb"
    filling = time.perf_counter()
    with Database(db_path) as db:
        fill_synthetic(db, args.rows)
    print(f"filled {args.rows:,} synthetic results in {time.perf_counter() - filling:.1f} s ({workdir})")
    if args.ab:
        run_ab(args, names, workdir, db_path)
        return

    with start_server(workdir, db_path=db_path, sql_timeout_s=SQL_TIMEOUT_S, prestart_workers=False,
                      **server_settings(args.server_setting)) as server:
        with httpx.Client(base_url=server.url, timeout=30.0) as http:
            path = f"/api/benchmark/status/{stored_run(http)}"
            http.get(path).raise_for_status()
            time.sleep(3)  # let the server settle after the run it stored
            for _ in range(20):  # warm the status path before the baseline
                http.get(path)
        alone: list[float] = []
        if args.baseline_seconds > 0:
            alone = asyncio.run(poll_status(server.url, path, args.pollers, time.monotonic() + args.baseline_seconds))
        process = psutil.Process(server.pid)
        baseline = process.memory_info().rss
        peak = [baseline]
        stop = threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(server.pid, stop, peak), daemon=True)
        sampler.start()

        until = time.monotonic() + args.seconds
        answers: list = []
        clients = [
            threading.Thread(target=sql_client, args=(server.url, names, n * 3, until, answers))
            for n in range(args.sql_clients)
        ]
        for client in clients:
            client.start()
        spy = start_py_spy(server.pid, args.seconds, args.py_spy) if args.py_spy else None
        latencies = asyncio.run(poll_status(server.url, path, args.pollers, until))
        if spy is not None:
            spy.wait(timeout=120)
        for client in clients:
            client.join(timeout=120)
        stop.set()
        sampler.join(timeout=5)

    by_query: dict[str, list] = defaultdict(list)
    for name, status, elapsed, detail in answers:
        by_query[name].append((status, elapsed, detail))
    print(f"\n{args.sql_clients} SQL clients, {args.pollers} pollers of {path}, {args.seconds:.0f} s, "
          f"SQL time limit {SQL_TIMEOUT_S:g} s")
    print(f"{'query':28} {'answers':>7} {'outcomes':24} {'longest s':>9}  example")
    for name in names:
        replies = by_query.get(name, [])
        if not replies:
            print(f"{name:28} {0:>7}")
            continue
        outcomes = ", ".join(f"{status}x{count}" for status, count in sorted(Counter(r[0] for r in replies).items()))
        example = next((detail for status, _, detail in replies if status != 429), replies[0][2])
        print(f"{name:28} {len(replies):>7} {outcomes:24} {max(r[1] for r in replies):>9.2f}  {example[:60]}")

    answered = [elapsed for _, status, elapsed, _ in answers if status != 429]
    busy = [elapsed for _, status, elapsed, _ in answers if status == 429]
    longest = max(answered, default=0.0)
    growth = peak[0] - baseline
    p99 = percentile(latencies, 0.99) if latencies else float("inf")
    if alone:
        print(f"\nstatus polls without SQL ({args.baseline_seconds:.0f} s first): {len(alone):,}, "
              f"p50 {statistics.median(alone):.1f} ms, p99 {percentile(alone, 0.99):.1f} ms, max {max(alone):.1f} ms")
    # No poll at all (a client starved past the whole load) reads p99 inf: a FAIL, never a pass.
    print(f"{'' if alone else chr(10)}status polls with SQL: {len(latencies):,}, p50 {percentile(latencies, 0.5):.1f} ms, "
          f"p99 {p99:.1f} ms, max {max(latencies, default=float('nan')):.1f} ms")
    print(f"SQL answers: {len(answered)} (+{len(busy)} refused 429, longest {max(busy, default=0):.2f} s)")
    print(f"server RSS: {baseline / 2**20:.0f} MB before, peak {peak[0] / 2**20:.0f} MB")
    if args.py_spy and Path(args.py_spy).exists():
        print_gil_holders(Path(args.py_spy), args.seconds)
    print()
    print(f"status p99             {p99:8.1f} ms   target <= {STATUS_P99_TARGET_MS:.0f} ms   "
          f"{verdict(p99 <= STATUS_P99_TARGET_MS)}")
    print(f"peak RSS growth        {growth / 2**20:8.0f} MB   target <= {RSS_GROWTH_TARGET_BYTES / 2**20:.0f} MB  "
          f"{verdict(growth <= RSS_GROWTH_TARGET_BYTES)}")
    print(f"longest SQL answer     {longest:8.2f} s    target <= {SQL_TIMEOUT_S + SQL_LATE_TARGET_S:.1f} s    "
          f"{verdict(longest <= SQL_TIMEOUT_S + SQL_LATE_TARGET_S)}")
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
