"""A result measured in several worker processes shows its repeats, their spread and the
throughput's own CI on every channel a result leaves by: `run --json`, results.json, the API's
result rows and /query, as the database holds them."""

from __future__ import annotations

import json

import httpx
import pytest

from storage.database import Database
from tests.integration.cli_process import benchboard
from tests.integration.server import start_server

FIELDS = ("repeats", "between_process_cv", "throughput_items_per_second", "throughput_ci_low_items_per_second",
          "throughput_ci_high_items_per_second")


@pytest.fixture(scope="module")
def repeated(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("repeats")
    done = benchboard(
        "run", "--models", "bert-tiny", "--batch-sizes", "1", "--repeats", "2", "--no-incremental",
        "--max-seconds", "0.3", "--threads", "1", "--json",
        "--db-path", str(folder / "b.duckdb"), "--results-dir", str(folder / "results"),
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    with Database(folder / "b.duckdb") as db:
        stored = db.cursor().execute(
            f"SELECT {', '.join(FIELDS)} FROM performance_results WHERE run_id = ?", [printed["run_id"]]
        ).fetchone()
    return {"folder": folder, "printed": printed, "stored": dict(zip(FIELDS, stored, strict=True))}


def shown(row: dict) -> dict:
    return {name: row[name] for name in FIELDS}


def test_the_stored_row_has_two_repeats_their_spread_and_a_ci_around_the_throughput(repeated):
    stored = repeated["stored"]
    assert stored["repeats"] == 2 and stored["between_process_cv"] is not None
    assert stored["throughput_ci_low_items_per_second"] <= stored["throughput_items_per_second"]
    assert stored["throughput_items_per_second"] <= stored["throughput_ci_high_items_per_second"]


def test_run_json_and_results_json_show_the_stored_values(repeated):
    (printed,) = repeated["printed"]["results"]
    assert shown(printed) == repeated["stored"]
    run_id = repeated["printed"]["run_id"]
    (reported,) = json.loads((repeated["folder"] / "results" / run_id / "results.json").read_text())["results"]
    assert shown(reported) == repeated["stored"]


def test_the_apis_result_rows_and_query_show_the_stored_values(repeated):
    folder, run_id = repeated["folder"], repeated["printed"]["run_id"]
    with start_server(folder / "server", db_path=folder / "b.duckdb", prestart_workers=False) as server:
        results = httpx.get(f"{server.url}/api/benchmark/results/{run_id}", timeout=30)
        queried = httpx.get(f"{server.url}/api/benchmark/query", params={"model": "bert-tiny"}, timeout=30)
    assert results.status_code == 200 and queried.status_code == 200
    (row,) = results.json()["results"]
    assert shown(row) == repeated["stored"]
    (row,) = queried.json()
    assert shown(row) == repeated["stored"]
