"""Comparing runs that reused results (incremental mode), for real: `benchboard run` in subprocesses
on a real DuckDB file, then `benchboard compare`, the API and the pages on the same file.

Run O measures bs1; run A measures bs1 and bs2 again (--no-incremental); run B asks for bs1 and
bs4 incrementally, so it measures bs4 only and reuses A's bs1. A reused result is one
measurement: A against B lists it as reused, neither removed nor compared with itself, and B's
history of bs1 is the results before A's (O's).
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.cli_process import benchboard
from tests.integration.server import start_server
from tests.integration.test_compare_runs import SPIN_BENCHMARK, _run_id


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("reused")
    custom = folder / "custom"
    custom.mkdir()
    (custom / "spin.py").write_text(SPIN_BENCHMARK)
    (custom / "spin-cost.json").write_text(json.dumps({"ms": 0.5}))
    db_path = folder / "b.duckdb"

    def run(*args: str) -> str:
        return _run_id(benchboard(
            "run", "--models", "spin", "--custom-benchmarks-dir", str(custom), "--no-progressive",
            "--max-seconds", "0.5", "--threads", "1", "--db-path", str(db_path),
            "--results-dir", str(folder / "results"), *args,
        ))

    ids = {
        "o": run("--batch-sizes", "1", "--no-incremental"),
        "a": run("--batch-sizes", "1", "2", "--no-incremental"),
        "b": run("--batch-sizes", "1", "4"),
    }
    return {**ids, "db": db_path, "custom": custom, "folder": folder}


def compare(runs, *args: str) -> dict:
    done = benchboard("compare", *args, "--db-path", str(runs["db"]), "--custom-benchmarks-dir", str(runs["custom"]),
                      "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def batch_sizes(configs: list[dict]) -> list[int]:
    return sorted(config["batch_size"] for config in configs)


def assert_a_against_b(runs, comparison: dict) -> None:
    assert comparison["configs"] == []
    (reused,) = comparison["reused"]
    assert reused["batch_size"] == 1 and reused["run_id"] == runs["a"]
    assert batch_sizes(comparison["removed"]) == [2]
    assert batch_sizes(comparison["added"]) == [4]
    assert sum(comparison["counts"].values()) == 0 and not comparison["has_regression"]


def assert_history_of_b(runs, comparison: dict) -> None:
    (config,) = comparison["configs"]  # bs1: A's result, against O's before it
    assert config["batch_size"] == 1
    assert config["contender"]["run_id"] == runs["a"]
    assert config["baseline"]["run_id"] == runs["o"]
    assert config["reused_from"] == runs["a"]
    assert config["reason"].startswith(f"the run reused run {runs['a']}'s result: ")
    assert batch_sizes(comparison["added"]) == [4]
    assert sum(comparison["counts"].values()) == 0 and not comparison["has_regression"]  # A's comparison, not B's


@pytest.fixture(scope="module")
def cli(runs) -> dict:
    """`benchboard compare --json` on the file, before a server holds it."""
    return {"ab": compare(runs, runs["a"], runs["b"]), "history": compare(runs, "--history", runs["b"])}


@pytest.fixture(scope="module")
def served(runs, cli, tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    with start_server(folder, db_path=runs["db"], prestart_workers=False, custom_benchmarks_dir=str(runs["custom"])) as server:
        yield server


def test_the_cli_counts_a_reused_result_as_one_measurement_and_finds_its_history(runs, cli):
    assert_a_against_b(runs, cli["ab"])
    assert_history_of_b(runs, cli["history"])


def test_the_api_agrees_with_the_cli(runs, cli, served):
    url = f"{served.url}/api/benchmark/compare"
    assert_a_against_b(runs, httpx.get(url, params={"baseline": runs["a"], "contender": runs["b"]}, timeout=60).json())
    assert_history_of_b(runs, httpx.get(url, params={"history": runs["b"]}, timeout=60).json())


def test_the_compare_page_shows_a_reused_result_as_the_same_measurement(runs, served):
    page = httpx.get(f"{served.url}/compare", params={"baseline": runs["a"], "contender": runs["b"]}, timeout=60)
    assert page.status_code == 200
    reused = page.text.split('id="compare-reused"')[1].split("</ul>")[0]
    assert 'data-config-key="spin|cpu|bs1|' in reused and f'href="/runs/{runs["a"]}"' in reused
    removed = page.text.split('id="compare-removed"')[1].split("</ul>")[0]
    assert "bs2" in removed and "bs1" not in removed
    assert "1 reused, same measurement" in page.text
    assert "<tr id=\"compare-row-" not in page.text


def test_the_history_page_shows_the_reused_result_against_the_results_before_it_not_counted(runs, served):
    page = httpx.get(f"{served.url}/compare", params={"history": runs["b"]}, timeout=60)
    assert page.status_code == 200
    assert "0 matched:" in page.text and "1 reused from earlier runs, not counted" in page.text
    (row,) = [line for line in page.text.splitlines() if "<tr id=\"compare-row-" in line]
    assert 'data-config-key="spin|cpu|bs1|' in row
    assert f'data-reused-from="{runs["a"]}"' in page.text


def test_the_previous_run_of_a_run_that_reused_is_the_one_it_reused_from(runs, served):
    page = httpx.get(f"{served.url}/compare", params={"contender": runs["b"]}, timeout=60)
    assert page.status_code == 200
    assert "No earlier completed run" not in page.text
    assert f"against run <a href=\"/runs/{runs['a']}\">" in page.text
    assert 'id="compare-reused"' in page.text


def test_the_run_page_offers_the_previous_run_only_where_there_is_one(runs, served):
    run_page = httpx.get(f"{served.url}/runs/{runs['o']}", timeout=60)
    assert f'hx-get="/compare/previous/{runs["o"]}"' in run_page.text
    first = httpx.get(f"{served.url}/compare/previous/{runs['o']}", timeout=60)
    assert first.status_code == 200 and "compare-previous" not in first.text  # nothing before O
    for later in ("a", "b"):
        offer = httpx.get(f"{served.url}/compare/previous/{runs[later]}", timeout=60)
        assert offer.status_code == 200
        assert f'href="/compare?contender={runs[later]}"' in offer.text
    assert httpx.get(f"{served.url}/compare/previous/nope", timeout=60).status_code == 404
