"""How fast do the dashboard pages render over a million results, and what do they add to DuckDB?

    python perf/pages.py [--rows 1000000] [--repeats 30] [--db PATH]

1. Fills a fresh DuckDB file with SYNTHETIC performance_results rows (perf data only:
   models, hardware and runs are all named ``synthetic-*``, weights are "synthetic").
2. Serves each page through the real app (create_app, Litestar's TestClient, full
   pages as a browser gets them) and prints the p95 render time. Target: <= 200 ms.
3. Records every statement the page sent to DuckDB, replays those statements bare
   (execute + fetchall on the same cursors, nothing else) and prints the page's p95
   over the bare statements' p95. Target: <= 2x for the pages that aggregate results
   (overview, comparison, SQL). Runs and Reports run no aggregate (a 50-row list of
   runs, a folder listing): their ratio is printed for information only.
4. Prints, not judged, the median render of each page right after a write: the latest result
   per config is worked out once per write and filter combination (storage.dashboard), so
   the first render after one pays for it (while a run stores results, most renders do).

Render times include Litestar's test transport (about 2 ms a request here), so they
slightly overstate what a browser waits for.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from litestar.testing import TestClient  # noqa: E402

from engine.runs import RunRecord, RunRequest  # noqa: E402
from storage.database import Database  # noqa: E402
from storage.runs import write_run  # noqa: E402
from webapp.app import create_app  # noqa: E402
from webapp.wiring.settings import Settings  # noqa: E402

RENDER_TARGET_MS = 200.0
RATIO_TARGET = 2.0
FAMILIES = ["bert", "roberta", "gpt2", "t5", "bart", "vit", "whisper", "llama", "albert", "electra"]
HARDWARE = [
    ("cpu", "cpu", "Synthetic CPU"),
    ("cuda:0", "cuda", "Synthetic GPU A"),
    ("cuda:1", "cuda", "Synthetic GPU B"),
    ("mps", "mps", "Synthetic Apple GPU"),
]
BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128]
PRECISIONS = ["fp32", "fp16", "bf16", "int8"]
MODELS_PER_FAMILY = 5
RUNS = 200
SEED_QUERY = """SELECT m.model_family, h.hardware_type, AVG(pr.throughput_items_per_second) as avg_throughput
FROM performance_results pr
JOIN models m ON pr.model_id = m.model_id
JOIN hardware_platforms h ON pr.hardware_id = h.hardware_id
GROUP BY m.model_family, h.hardware_type
ORDER BY avg_throughput DESC"""


def fill_synthetic(db: Database, rows: int) -> None:
    """``rows`` synthetic results spread over models, hardware, batch sizes and precisions."""
    models = [
        (f"synthetic-{family}-{size}", family, 10.0 * (size + 1) ** 2)
        for family in FAMILIES
        for size in range(MODELS_PER_FAMILY)
    ]
    with db.writing() as cursor:
        cursor.executemany(
            "INSERT INTO models (model_name, model_family, model_type, modality, parameters_million, source) "
            "VALUES (?, ?, 'encoder', 'text', ?, 'synthetic')",
            models,
        )
        cursor.executemany(
            "INSERT INTO hardware_platforms (platform, hardware_type, device_name) VALUES (?, ?, ?)", HARDWARE
        )
        # Run rows as the server writes them (storage.runs.write_run): every status column set.
        now = datetime.now(timezone.utc)
        for n in range(RUNS):
            created = now - timedelta(minutes=n)
            write_run(
                cursor,
                RunRecord(
                    run_id=f"synthetic-run-{n}", status="completed", progress=1.0, current_step=None,
                    start_time=created, elapsed_time=60.0, estimated_remaining_time=0.0,
                    completed_models=len(models), total_models=len(models), error=None,
                    completed_configs=rows // RUNS, total_configs=rows // RUNS, priority="high",
                    created_at=created, completion_time=created + timedelta(minutes=1),
                    request=RunRequest(models=[name for name, _, _ in models], hardware=[h[0] for h in HARDWARE],
                                       batch_sizes=BATCH_SIZES),
                    fingerprint="synthetic",
                ),
            )
        # Latency grows with parameters and batch size, with noise; hardware scales it.
        cursor.execute(
            f"""INSERT INTO performance_results
                  (run_id, model_id, hardware_id, batch_size, precision, sequence_length, weights, n_samples,
                   average_latency_ms, p50_latency_ms, p90_latency_ms, p95_latency_ms, p99_latency_ms,
                   throughput_items_per_second, memory_peak_mb, config_key, fingerprint, created_at)
                WITH points AS (
                    SELECT i,
                           1 + (i % {len(models)}) AS model_id,
                           1 + ((i // {len(models)}) % {len(HARDWARE)}) AS hardware_id,
                           {BATCH_SIZES}[1 + (i // 7) % {len(BATCH_SIZES)}] AS batch_size,
                           {PRECISIONS}[1 + (i // 11) % {len(PRECISIONS)}] AS precision,
                           0.8 + random() * 0.4 AS noise
                    FROM range({rows}) AS r(i)),
                latency AS (
                    SELECT p.*, (0.5 + m.parameters_million / 50) * sqrt(p.batch_size) * p.noise
                               / (CASE p.hardware_id WHEN 1 THEN 1 WHEN 4 THEN 3 ELSE 8 END) AS p50
                    FROM points p JOIN models m USING (model_id))
                SELECT 'synthetic-run-' || (i % {RUNS}), model_id, hardware_id, batch_size, precision, 128,
                       'synthetic', 50, p50 * 1.02, p50, p50 * 1.1, p50 * 1.15, p50 * 1.3,
                       batch_size / p50 * 1000, 50 + batch_size * p50, 'synthetic-' || i, 'synthetic',
                       localtimestamp - (i % 100000) * INTERVAL 1 SECOND
                FROM latency"""
        )


REGISTER = object()  # a logged cursor.register(name, table), not a statement


class RecordingCursor:
    """A DuckDB cursor that notes every statement it runs, and on which cursor, for the bare replay."""

    def __init__(self, cursor, log: list, number: int):
        self._cursor, self._log, self._number = cursor, log, number

    def execute(self, query, parameters=None):
        self._log.append((self._number, query, parameters))
        return (
            self._cursor.execute(query, parameters) if parameters is not None else self._cursor.execute(query)
        )

    def sql(self, query, *, params=None):
        self._log.append((self._number, query, params))
        return self._cursor.sql(query, params=params)

    def register(self, name, table):
        # The latest-per-config ids a query reads (storage.dashboard): registered again on replay.
        self._log.append((self._number, REGISTER, (name, table)))
        return self._cursor.register(name, table)

    def __getattr__(self, name):
        return getattr(self._cursor, name)


def record_statements(db: Database, render) -> list[tuple]:
    """What ``render()`` sent to DuckDB: (cursor number, statement, parameters) in order."""
    statements: list[tuple] = []
    real_cursor, cursor_numbers = db.cursor, itertools.count()
    db.cursor = lambda: RecordingCursor(real_cursor(), statements, next(cursor_numbers))
    try:
        render()
    finally:
        db.cursor = real_cursor
    return statements


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[18]


def render_once(client: TestClient, method: str, url: str, data: dict | None) -> float:
    started = time.perf_counter()
    response = client.request(method, url, data=data)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:300]}"
    return elapsed


def replay_once(db: Database, statements: list[tuple]) -> float:
    started = time.perf_counter()
    cursors: dict[int, object] = {}
    for number, query, parameters in statements:
        # A statement runs on the same cursor as on the page: a transaction spans several.
        cursor = cursors.setdefault(number, db.cursor())
        if query is REGISTER:
            cursor.register(*parameters)
            continue
        cursor.execute(query, parameters) if parameters is not None else cursor.execute(query)
        if cursor.description is not None:
            cursor.fetchall()
    return (time.perf_counter() - started) * 1000


def measure(client: TestClient, db: Database, page: tuple, statements: list[tuple], repeats: int):
    """Page and bare replay alternate, so both see the same machine (others share its cores)."""
    _, method, url, data, _ = page
    renders, bares = [], []
    for attempt in range(repeats + 3):  # three to warm up
        render, bare = render_once(client, method, url, data), replay_once(db, statements)
        if attempt >= 3:
            renders.append(render)
            bares.append(bare)
    return renders, bares


AFTER_WRITE_ROUNDS = 5


def after_write(client: TestClient, db: Database, page: tuple) -> float:
    """The median render right after a commit (an empty one: the page cannot tell)."""
    _, method, url, data, _ = page
    renders = []
    for _ in range(AFTER_WRITE_ROUNDS):
        with db.writing():
            pass
        renders.append(render_once(client, method, url, data))
    return statistics.median(renders)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--db", type=Path, default=None, help="keep the synthetic database here")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="benchboard-perf-"))
    db_path = args.db or workdir / "synthetic.duckdb"
    if db_path.exists():
        raise SystemExit(f"{db_path} exists: perf/pages.py fills a fresh database")
    started = time.perf_counter()
    with Database(db_path) as db:
        fill_synthetic(db, args.rows)
        count = db.cursor().execute("SELECT count(*) FROM performance_results").fetchone()[0]
    print(
        f"filled {db_path} with {count:,} SYNTHETIC performance_results rows "
        f"in {time.perf_counter() - started:.1f} s (perf data only, not measurements)"
    )

    settings = Settings(
        db_path=str(db_path),
        results_dir=str(workdir / "results"),
        log_dir=str(workdir / "logs"),
        resume=False,
        allowed_hosts=["testserver.local"],  # the Host that Litestar's TestClient sends
    )
    with TestClient(create_app(settings)) as client:
        db = client.app.state.services.db
        client.get("/sql")
        token = client.cookies["csrftoken"]
        pages = [  # name, method, url, form, whether it aggregates results (the ratio target applies)
            ("overview", "GET", "/", None, True),
            ("overview, filtered", "GET", "/?family=bert&hardware=cuda:0&metric=latency_p99", None, True),
            ("comparison", "GET", "/comparison", None, True),
            (
                "comparison, sorted page 40",
                "GET",
                "/comparison?sort=throughput_items_per_second&page=40",
                None,
                True,
            ),
            ("sql (seed query)", "POST", "/sql", {"sql": SEED_QUERY, "_csrf_token": token}, True),
            ("runs", "GET", "/runs", None, False),
            ("reports", "GET", "/reports", None, False),
        ]
        print(
            f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
            "(other work on the machine stretches both columns alike)"
        )
        header = (f"{'p50 render':>12}{'p95 render':>12}{'p95 bare DuckDB':>17}{'ratio':>8}  "
                  f"{'statements':>10}{'after a write':>15}")
        print(f"\n{'page':<30}{header}")
        failures = []
        for name, method, url, data, judged in pages:
            # Recorded from a second render: the statements a page sends until the next write
            # (the first render also works out the latest result per config).
            client.request(method, url, data=data)
            statements = record_statements(db, lambda: client.request(method, url, data=data))  # noqa: B023
            renders, bares = measure(client, db, (name, method, url, data, judged), statements, args.repeats)
            render, bare = p95(renders), p95(bares)
            ratio = f"{render / bare:7.2f}x" if statements else "      -"
            statements = [statement for statement in statements if statement[1] is not REGISTER]
            written = after_write(client, db, (name, method, url, data, judged))
            print(
                f"{name:<30}{statistics.median(renders):>9.1f} ms{render:>9.1f} ms{bare:>14.1f} ms{ratio}"
                f"{'' if judged else '*':1}{len(statements):>11}{written:>12.1f} ms"
            )
            if render > RENDER_TARGET_MS:
                failures.append(f"{name}: p95 {render:.0f} ms > {RENDER_TARGET_MS:.0f} ms")
            if judged and render > RATIO_TARGET * bare:
                failures.append(f"{name}: {render / bare:.2f}x its DuckDB statements > {RATIO_TARGET}x")
        print("\n* runs no aggregate: the ratio is shown for information only")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print(f"targets: p95 <= {RENDER_TARGET_MS:.0f} ms, <= {RATIO_TARGET}x the bare DuckDB statements")
        print("all targets met" if not failures else "MISSED:\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    main()
