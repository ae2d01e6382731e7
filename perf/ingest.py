"""How fast does storage take result rows in bulk, against a plain executemany INSERT?

    python perf/ingest.py [--rows 100000] [--batch 1000] [--executemany-rows 5000] [--samples 50]
                          [--db-threads N]

Every row is SYNTHETIC (perf data only: model ``synthetic-*``, hardware
``synthetic-cpu``, weights and fingerprint "synthetic") and carries a
``samples_ms`` list of ``--samples`` doubles, as a real measurement keeps its
raw latencies. Each way of inserting gets a fresh DuckDB file (schema migrated
before the clock starts), opened as the server opens it (``storage.database.Database``
with the server's ``db_threads``, 1 unless ``--db-threads``). The clock runs over the
insert calls and the file's close, whose checkpoint writes what the WAL still holds
into the file: so a checkpoint threshold that only defers that work cannot flatter a
figure (the close is also printed apart). The first Arrow
insert of a process makes duckdb import pandas (about a second here); a
warm-up insert pays that before any clock starts, as a long-lived server pays
it once, and its time is printed on its own.

1. ``storage.results.insert_results`` with all rows in one call.
2. ``insert_results`` in ``--batch``-row calls, one transaction each.
3. ``insert_results`` one row per call: on a ``--single-rows`` subset, time per call.
   Beside it, on a fresh file of the same schema, DuckDB's own floor for a 1-row
   transaction on this table: ``BEGIN``, an INSERT of two constants, ``COMMIT``. DuckDB
   materialises every column of the table for any INSERT into it (about 25 us a
   column here, and performance_results has 80), so no caller of DuckDB stores a
   result row for less; the 1-row call is printed as a ratio to it. Then, on the
   same subset and interleaved (one config each in turn, so machine load falls on
   both alike), a config as the server stores it: the result and the
   run row that counts it (``run=``, one transaction, one commit), against the
   two transactions it took before (``insert_results`` then ``save_run``).
4. The baseline: ``cursor.executemany`` of a plain parameterised INSERT into
   performance_results, model and hardware ids resolved beforehand (which
   favours the baseline a little), in one transaction. It is slow, so it runs
   on ``--executemany-rows`` rows and its rate is extrapolated to the full count.

Targets: >= 50,000 rows/s for the one call and the ``--batch``-row calls, and
<= 2 ms a call for 1-row calls (each prints PASS or MISS). The ratio of each
path's rate to the executemany rate is printed.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

from engine.hardware import HardwareInfo
from engine.models.spec import ModelInfo
from engine.runs import RunRecord, RunRequest
from storage.catalog import ensure_hardware, ensure_model
from storage.database import Database
from storage.results import RESULT_VALUE_COLUMNS, insert_results
from storage.runs import save_run
from storage.timestamps import stored, utc_now
from webapp.wiring.settings import Settings

TARGET_ROWS_PER_S = 50_000.0
TARGET_SINGLE_ROW_MS = 2.0  # one measured config, as the server stores it (issue 16)
SYNTHETIC_MODELS = [
    ModelInfo(name=f"synthetic-{family}-tiny", family=family, type="encoder", modality="text",
              parameters_million=0.2, source="synthetic", weights="synthetic", tier="low")
    for family in ("bert", "gpt2", "distilbert", "t5", "vit")
]
SYNTHETIC_HARDWARE = HardwareInfo(name="synthetic-cpu", type="cpu", device="Synthetic CPU", memory_gb=16.0)
BATCH_SIZES = (1, 2, 4, 8, 16, 32)


def synthetic_rows(count: int, samples_per_row: int, seed: int = 0) -> list[dict]:
    """``count`` result rows shaped as the server stores them, with plausible numbers."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        model = SYNTHETIC_MODELS[i % len(SYNTHETIC_MODELS)]
        batch_size = BATCH_SIZES[(i // len(SYNTHETIC_MODELS)) % len(BATCH_SIZES)]
        base = 0.5 + batch_size * 0.3
        samples = sorted(base * rng.uniform(0.9, 1.3) for _ in range(samples_per_row))
        mean = sum(samples) / len(samples)
        p50 = samples[len(samples) // 2]
        rows.append({
            "model": model, "hardware": SYNTHETIC_HARDWARE, "run_id": f"synthetic-ingest-{i // 1000}",
            "config_key": f"synthetic-{i}", "fingerprint": "synthetic", "batch_size": batch_size,
            "precision": "fp32", "sequence_length": 128, "image_size": None, "weights": "synthetic",
            "n_samples": len(samples), "average_latency_ms": mean, "std_latency_ms": 0.1 * mean,
            "min_latency_ms": samples[0], "p50_latency_ms": p50,
            "p90_latency_ms": samples[int(len(samples) * 0.9)],
            "p95_latency_ms": samples[int(len(samples) * 0.95)],
            "p99_latency_ms": samples[-1], "max_latency_ms": samples[-1], "ci_low_ms": p50 * 0.99,
            "ci_high_ms": p50 * 1.01, "ci_met": True, "throughput_items_per_second": batch_size / p50 * 1000,
            "throughput_tokens_per_second": batch_size * 128 / p50 * 1000,
            "memory_peak_mb": 10.0 + batch_size,
            "load_time_ms": 40.0, "cold_latency_ms": 3 * p50, "threads": 2, "torch_version": "synthetic",
            "samples_ms": samples, "stop_reason": None,
        })
    return rows


def stored_count(db: Database) -> int:
    return db.cursor().execute("SELECT count(*) FROM performance_results").fetchone()[0]


def time_insert_results(path: Path, rows: list[dict], batch: int, threads: int | None) -> tuple[float, float]:
    """Seconds spent in insert_results calls of ``batch`` rows each on a fresh database, then
    in its close (the checkpoint of what the WAL holds); the rows are checked after reopening."""
    db = Database(path, threads=threads)
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        insert_results(db, rows[start:start + batch])
    inserted = time.perf_counter()
    db.close()
    closed = time.perf_counter()
    with Database(path, threads=threads) as db:
        assert stored_count(db) == len(rows), "not every row was stored"
        stored = db.cursor().execute(
            "SELECT samples_ms FROM performance_results WHERE config_key = ?", [rows[-1]["config_key"]]
        ).fetchone()[0]
        assert stored == rows[-1]["samples_ms"], "samples_ms did not round-trip"
    return closed - started, closed - inserted


def time_floor(path: Path, count: int, threads: int | None) -> float:
    """Seconds for ``count`` transactions of one bare 2-constant INSERT into performance_results
    (DuckDB's floor for a 1-row write to this table), the close included."""
    db = Database(path, threads=threads)
    cursor = db.cursor()
    started = time.perf_counter()
    for _ in range(count):
        cursor.execute("BEGIN TRANSACTION")
        cursor.execute("INSERT INTO performance_results (batch_size, precision) VALUES (1, 'fp32')")
        cursor.execute("COMMIT")
    cursor.close()
    db.close()
    return time.perf_counter() - started


def run_record(completed: int, total: int) -> RunRecord:
    """The SYNTHETIC run's row after ``completed`` of ``total`` configs, as the scheduler saves it."""
    now = utc_now()
    return RunRecord(
        run_id="synthetic-ingest-run", status="running", progress=completed / total, current_step=None,
        start_time=now, elapsed_time=0.0, estimated_remaining_time=None, completed_models=0, total_models=1,
        error=None, completed_configs=completed, total_configs=total, priority="high", created_at=now,
        completion_time=None, request=RunRequest(), fingerprint="synthetic",
    )


def time_configs(path: Path, rows: list[dict], threads: int | None) -> tuple[float, float]:
    """Seconds for each row stored with its run row in one transaction, and in two (the
    result, then save_run), one config of each in turn on two fresh databases."""
    together = separate = 0.0
    with (
        Database(path.with_suffix(".together.duckdb"), threads=threads) as one,
        Database(path.with_suffix(".separate.duckdb"), threads=threads) as two,
    ):
        for done, row in enumerate(rows, start=1):
            record = run_record(done, len(rows))
            started = time.perf_counter()
            insert_results(one, [row], run=record)
            middle = time.perf_counter()
            insert_results(two, [row])
            save_run(two, record)
            separate += time.perf_counter() - middle
            together += middle - started
        for db in (one, two):
            assert stored_count(db) == len(rows), "not every row was stored"
            assert db.cursor().execute("SELECT completed_configs FROM test_runs").fetchall() == [(len(rows),)]
    return together, separate


def time_executemany(path: Path, rows: list[dict], threads: int | None) -> float:
    """Seconds for one executemany INSERT of ``rows`` (ids resolved before the clock starts)."""
    columns = ("model_id", "hardware_id", *RESULT_VALUE_COLUMNS)
    statement = (
        f"INSERT INTO performance_results ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    )
    with Database(path, threads=threads) as db:
        with db.writing() as cursor:
            model_ids = {m.name: ensure_model(cursor, m) for m in SYNTHETIC_MODELS}
            hardware_id = ensure_hardware(cursor, SYNTHETIC_HARDWARE)
        created_at = utc_now()
        values = [
            [model_ids[row["model"].name], hardware_id,
             *(stored(row.get(name, created_at if name == "created_at" else None)) for name in RESULT_VALUE_COLUMNS)]
            for row in rows
        ]
        started = time.perf_counter()
        with db.writing() as cursor:
            cursor.executemany(statement, values)
        elapsed = time.perf_counter() - started
        assert stored_count(db) == len(rows), "not every row was stored"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000, help="rows per insert_results call in path 2")
    parser.add_argument("--single-rows", type=int, default=200, help="rows inserted one call each (path 3)")
    parser.add_argument("--executemany-rows", type=int, default=5_000, help="rows timed for the baseline")
    parser.add_argument("--samples", type=int, default=50, help="samples_ms doubles per row")
    parser.add_argument("--db-threads", type=int, default=Settings().db_threads,
                        help="DuckDB's threads (default: the server's db_threads)")
    args = parser.parse_args()
    threads = args.db_threads

    rows = synthetic_rows(args.rows, args.samples)
    workdir = Path(tempfile.mkdtemp(prefix="benchboard-ingest-"))
    print(
        f"{args.rows:,} SYNTHETIC result rows, {args.samples} samples_ms doubles each, "
        f"fresh DuckDB files under {workdir}, DuckDB threads {threads}"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    warm_up, _ = time_insert_results(workdir / "warm-up.duckdb", rows[:10], 10, threads)
    print(f"warm-up insert of 10 rows (duckdb's one-off pandas import included): {warm_up:.2f} s\n")

    single = min(args.single_rows, args.rows)
    baseline = min(args.executemany_rows, args.rows)
    one_call = time_insert_results(workdir / "one-call.duckdb", rows, args.rows, threads)
    batches = time_insert_results(workdir / "batches.duckdb", rows, args.batch, threads)
    single_rows = time_insert_results(workdir / "single.duckdb", rows[:single], 1, threads)
    floor_seconds = time_floor(workdir / "floor.duckdb", single, threads)
    paths = [  # label, rows timed, seconds (close included), of which the close
        (f"insert_results, 1 call of {args.rows:,}", args.rows, *one_call),
        (f"insert_results, {args.batch:,}-row calls", args.rows, *batches),
        ("insert_results, 1-row calls *", single, *single_rows),
        ("executemany INSERT *", baseline,
         time_executemany(workdir / "executemany.duckdb", rows[:baseline], threads), float("nan")),
    ]
    executemany_rate = baseline / paths[-1][2]
    together, separate = time_configs(workdir / "configs", rows[:single], threads)

    print(f"{'path':<36}{'rows timed':>12}{'seconds':>10}{'close s':>9}{'rows/s':>12}{'ms/call':>9}"
          f"{'vs executemany':>16}  target")
    failures = []
    for label, count, seconds, close_seconds in paths:
        rate = count / seconds
        calls = count if "1-row" in label else -(-count // (args.rows if "1 call" in label else args.batch))
        per_call_ms = seconds / calls * 1000
        if "1-row" in label:
            verdict = "PASS" if per_call_ms <= TARGET_SINGLE_ROW_MS else "MISS"
            if verdict == "MISS":
                failures.append(f"{label}: {per_call_ms:.2f} ms a call > {TARGET_SINGLE_ROW_MS:g} ms")
        elif label.startswith("insert_results"):
            verdict = "PASS" if rate >= TARGET_ROWS_PER_S else "MISS"
            if verdict == "MISS":
                failures.append(f"{label}: {rate:,.0f} rows/s < {TARGET_ROWS_PER_S:,.0f}")
        else:
            verdict, per_call_ms = "-", float("nan")
        print(
            f"{label:<36}{count:>12,}{seconds:>10.3f}{close_seconds:>9.3f}{rate:>12,.0f}{per_call_ms:>9.2f}"
            f"{rate / executemany_rate:>15.1f}x  {verdict}"
        )
    print(
        f"\n* timed on a subset; the rate is extrapolated to {args.rows:,} rows "
        f"(executemany: {args.rows / executemany_rate:.0f} s estimated for all of them)"
    )
    single_ms, floor_ms = paths[2][2] / single * 1000, floor_seconds / single * 1000
    print(
        "  1-row calls are how the server stores each measured config "
        f"({single_ms:.2f} ms a call, the catalog ids cached per database and one commit each)"
    )
    print(
        f"  DuckDB's floor for a 1-row transaction on performance_results (BEGIN, a 2-constant INSERT, COMMIT; "
        f"{single} of them, close included): {floor_ms:.2f} ms; the 1-row call is {single_ms / floor_ms:.2f}x it"
    )
    print(
        f"  a config as the server stores it (result + run row), {single} configs interleaved: one transaction "
        f"{together / single * 1000:.2f} ms, two transactions (before) {separate / single * 1000:.2f} ms, "
        f"ratio {together / separate:.2f}"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"targets: bulk insert (1 call, {args.batch:,}-row calls) >= {TARGET_ROWS_PER_S:,.0f} rows/s; "
          f"1-row calls <= {TARGET_SINGLE_ROW_MS:g} ms a call")
    print("all targets met" if not failures else "MISSED:\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    main()
