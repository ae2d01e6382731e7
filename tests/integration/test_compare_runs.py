"""Comparing runs for real: `benchboard run` three times in subprocesses on a real DuckDB file,
then `benchboard compare` as a CI gate, and the API, the client and the pages on the same file.

The workload is a custom benchmark with a controlled cost: its forward spins for the
milliseconds in a cost file (0.5 ms, then 10% more). Spinning on the clock keeps its median
where it was set on a busy machine: a sample is inflated only when the process is
descheduled across the end of its spin, and at 0.5 ms that is a minority of the samples.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess

import httpx
import pytest

from benchboard_client import AsyncBenchmarkAPIClient, BenchmarkAPIClient, NotFound
from tests.integration.cli_process import benchboard
from tests.integration.server import start_server

SPIN_BENCHMARK = '''
"""A workload with a controlled cost: forward() spins for the milliseconds in spin-cost.json."""
import json
import os
import time
from pathlib import Path

import torch

from engine.models.spec import ModelSpec

COST_FILE = Path(__file__).with_name("spin-cost.json")


class Spin(torch.nn.Module):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        deadline = time.perf_counter() + self.seconds
        while time.perf_counter() < deadline:
            pass
        return x


def build():
    with open(COST_FILE.with_name("builds.txt"), "a") as builds:  # which worker process built it
        builds.write(f"{os.getpid()}\\n")
    return Spin(json.loads(COST_FILE.read_text())["ms"] / 1000.0)


def inputs(batch_size, sequence_length, image_size):
    return {"x": torch.zeros(batch_size, 1)}


MODELS = [ModelSpec("spin", "test", "custom", "tabular", 0.0, build, inputs)]
'''
BASE_MS = 0.5


def _run_id(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stderr
    # "run <id> completed: ..." (warnings about contended results may follow it)
    summary = [line for line in done.stderr.splitlines() if re.match(r"run \w+ completed", line)]
    assert summary, done.stderr
    return summary[-1].split()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Runs A and B of the spin workload at 0.5 ms (batch sizes 1 and 2), then C at 0.55 ms."""
    folder = tmp_path_factory.mktemp("compare")
    custom = folder / "custom"
    custom.mkdir()
    (custom / "spin.py").write_text(SPIN_BENCHMARK)
    db_path = folder / "b.duckdb"
    ids = {}
    for name, ms in (("a", BASE_MS), ("b", BASE_MS), ("c", BASE_MS * 1.10)):
        (custom / "spin-cost.json").write_text(json.dumps({"ms": ms}))
        ids[name] = _run_id(benchboard(
            "run", "--models", "spin", "--custom-benchmarks-dir", str(custom), "--batch-sizes", "1", "2",
            "--no-incremental", "--no-progressive", "--max-seconds", "1", "--threads", "1",
            "--db-path", str(db_path), "--results-dir", str(folder / "results"),
        ))
    return {**ids, "db": db_path, "folder": folder}


def compare(runs, *args: str) -> subprocess.CompletedProcess:
    return benchboard("compare", *args, "--db-path", str(runs["db"]))


def verdicts(comparison: dict) -> dict[int, str]:
    return {config["batch_size"]: config["verdict"] for config in comparison["configs"]}


def test_two_forced_runs_of_the_same_configs_pass_the_gate(runs):
    done = compare(runs, runs["a"], runs["b"], "--fail-on-regression")
    assert done.returncode == 0, done.stdout + done.stderr
    header, rule, *rows = done.stdout.strip().splitlines()
    assert header.split()[:2] == ["config", "baseline"]
    assert len(rows) == 2 and not any(row.split()[-1] == "slower" for row in rows)
    assert "2 matched" in done.stderr and "0 added, 0 removed" in done.stderr


def test_a_workload_ten_percent_slower_is_slower_near_1_10_and_fails_the_gate(runs):
    done = compare(runs, runs["a"], runs["c"], "--fail-on-regression", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    comparison = json.loads(done.stdout)
    assert comparison["has_regression"] is True
    for config in comparison["configs"]:
        assert config["verdict"] == "slower", config["reason"]
        assert config["ratio"] == pytest.approx(1.10, abs=0.03)
        assert config["ratio_ci_low"] <= config["ratio"] <= config["ratio_ci_high"]
        assert config["p_value"] < 0.002

    # Without --fail-on-regression the same comparison is only a report.
    assert compare(runs, runs["a"], runs["c"]).returncode == 0
    # A threshold above the slowdown clears it.
    relaxed = compare(runs, runs["a"], runs["c"], "--threshold", "20%", "--fail-on-regression")
    assert relaxed.returncode == 0, relaxed.stdout
    per_config = compare(runs, runs["a"], runs["c"], "--threshold-for", "spin|cpu|bs2|*=20%", "--json")
    assert verdicts(json.loads(per_config.stdout))[2] == "unchanged"
    assert verdicts(json.loads(per_config.stdout))[1] == "slower"


def test_history_compares_a_run_with_the_earlier_results_of_its_configs(runs):
    done = benchboard("compare", "--history", runs["c"], "--db-path", str(runs["db"]), "--json",
                      "--fail-on-regression")
    assert done.returncode == 1, done.stdout + done.stderr
    comparison = json.loads(done.stdout)
    assert comparison["mode"] == "history" and comparison["contender_run_id"] == runs["c"]
    assert set(verdicts(comparison).values()) == {"slower"}
    # Two earlier results per config: too few for a z-score, so the latest (run B) is the baseline.
    assert all(config["baseline"]["run_id"] == runs["b"] for config in comparison["configs"])

    first = json.loads(benchboard("compare", "--history", runs["a"], "--db-path", str(runs["db"]), "--json").stdout)
    assert first["configs"] == [] and len(first["added"]) == 2


def test_repeats_measure_each_config_in_fresh_processes_and_record_their_spread(runs):
    from storage.database import Database

    builds = runs["folder"] / "custom" / "builds.txt"
    before = builds.read_text().split()
    (runs["folder"] / "custom" / "spin-cost.json").write_text(json.dumps({"ms": BASE_MS}))
    repeated = _run_id(benchboard(
        "run", "--models", "spin", "--custom-benchmarks-dir", str(runs["folder"] / "custom"), "--batch-sizes", "1",
        "--no-incremental", "--max-seconds", "0.5", "--threads", "1", "--repeats", "3",
        "--db-path", str(runs["db"]), "--results-dir", str(runs["folder"] / "results"),
    ))
    pids = builds.read_text().split()[len(before):]
    assert len(pids) == 3 and len(set(pids)) == 3  # three builds, each in a process of its own
    with Database(runs["db"]) as db:
        n, kept, repeats, cv = db.cursor().execute(
            "SELECT n_samples, len(samples_ms), repeats, between_process_cv FROM performance_results "
            "WHERE run_id = ?", [repeated]).fetchone()
    assert repeats == 3 and cv is not None and 0 <= cv < 0.05
    assert n == kept
    done = compare(runs, runs["a"], repeated, "--json", "--fail-on-regression")
    assert done.returncode == 0, done.stdout
    (config,) = json.loads(done.stdout)["configs"]
    assert config["contender"]["repeats"] == 3 and config["contender"]["between_process_cv"] == pytest.approx(cv)
    assert config["verdict"] != "slower"


def test_unknown_runs_and_bad_arguments_exit_2_with_one_line(runs):
    unknown = compare(runs, runs["a"], "no-such-run")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: no run with id 'no-such-run'"
    bad = compare(runs, runs["a"], runs["b"], "--threshold", "five")
    assert bad.returncode == 2 and "threshold" in bad.stderr and "Traceback" not in bad.stderr
    assert benchboard("compare", runs["a"], "--db-path", str(runs["db"])).returncode == 2
    malformed = benchboard("compare", runs["a"], runs["b"], "--url", "notaurl")
    assert malformed.returncode == 2 and malformed.stderr.startswith("error: --url: must start with http://")


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.stdout == "" and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ")
    return line


def test_data_that_cannot_be_read_exits_2_so_a_gate_tells_it_from_a_regression(runs):
    # 1 is a slower config's status alone (--fail-on-regression); not reading the data at all is 2.
    missing = benchboard("compare", runs["a"], runs["b"], "--db-path", str(runs["folder"] / "none.duckdb"),
                         "--fail-on-regression")
    assert missing.returncode == 2 and "no database at" in _one_error_line(missing)
    assert not (runs["folder"] / "none.duckdb").exists()
    junk = runs["folder"] / "notes.duckdb"
    junk.write_text("not a database\n")
    not_duckdb = benchboard("compare", runs["a"], runs["b"], "--db-path", str(junk), "--fail-on-regression")
    assert not_duckdb.returncode == 2 and "not a valid DuckDB database" in _one_error_line(not_duckdb)
    unreachable = benchboard("compare", runs["a"], runs["b"], "--url", "http://127.0.0.1:9", "--fail-on-regression")
    assert unreachable.returncode == 2
    assert _one_error_line(unreachable).startswith("error: cannot reach server at http://127.0.0.1:9")


@pytest.fixture(scope="module")
def cli_verdicts(runs) -> dict[str, dict[int, str]]:
    """`benchboard compare --json` on the file, for A-B and A-C, before a server holds the file."""
    return {
        pair: verdicts(json.loads(compare(runs, runs[pair[0]], runs[pair[1]], "--json").stdout))
        for pair in ("ab", "ac")
    }


@pytest.fixture(scope="module")
def served(runs, cli_verdicts, tmp_path_factory):
    """A server on the same database file (the CLI runs are over); it measures nothing."""
    folder = tmp_path_factory.mktemp("served")
    with start_server(folder, db_path=runs["db"], prestart_workers=False) as server:
        yield server


def test_the_api_the_client_the_pages_and_the_cli_agree(runs, cli_verdicts, served):
    cli = cli_verdicts
    assert set(cli["ac"].values()) == {"slower"}
    for pair, expected in cli.items():
        baseline, contender = runs[pair[0]], runs[pair[1]]
        api = httpx.get(f"{served.url}/api/benchmark/compare", params={"baseline": baseline, "contender": contender},
                        timeout=30)
        assert api.status_code == 200
        assert verdicts(api.json()) == expected
        with BenchmarkAPIClient(served.url) as client:
            assert verdicts(client.compare_runs(baseline, contender)) == expected
        page = httpx.get(f"{served.url}/compare", params={"baseline": baseline, "contender": contender},
                         timeout=30)
        assert page.status_code == 200
        for batch_size, verdict in expected.items():
            assert f'data-config-key="spin|cpu|bs{batch_size}|' in page.text
        assert page.text.count('data-verdict="slower"') >= list(expected.values()).count("slower")
        shown = [line for line in page.text.splitlines() if "<tr id=\"compare-row-" in line]
        assert len(shown) == 2
        assert sorted(line.split('data-verdict="')[1].split('"')[0] for line in shown) == sorted(expected.values())
        remote = benchboard("compare", baseline, contender, "--url", served.url, "--json")
        assert remote.returncode == 0, remote.stderr
        assert verdicts(json.loads(remote.stdout)) == expected

    async def history() -> dict:
        async with AsyncBenchmarkAPIClient(served.url) as client:
            return await client.compare_runs(history=runs["c"])

    assert set(verdicts(asyncio.run(history())).values()) == {"slower"}
    remote_gate = benchboard("compare", runs["a"], runs["c"], "--url", served.url, "--fail-on-regression")
    assert remote_gate.returncode == 1
    unknown = benchboard("compare", runs["a"], "nope", "--url", served.url)
    assert unknown.returncode == 2
    assert unknown.stderr == "error: no run with id 'nope'\n"  # as the file says it, not wrapped twice


def test_a_database_a_server_holds_exits_2_naming_the_holder(runs, served):
    held = compare(runs, runs["a"], runs["b"], "--fail-on-regression")
    assert held.returncode == 2
    line = _one_error_line(held)
    assert "is in use by" in line, line


def test_api_refusals_name_the_field(runs, served):
    url = f"{served.url}/api/benchmark/compare"
    unknown = httpx.get(url, params={"baseline": runs["a"], "contender": "nope"}, timeout=30)
    assert unknown.status_code == 404 and unknown.json()["reason"] == "no run with id 'nope'"
    for params, field in (({"baseline": runs["a"]}, "contender"), ({}, "baseline"),
                          ({"history": runs["c"], "baseline": runs["a"]}, "history"),
                          ({"history": runs["c"], "threshold": "lots"}, "threshold"),
                          ({"history": runs["c"], "lookback": "0"}, "lookback"),
                          ({"history": runs["c"], "threshold_for": "no-pattern"}, "threshold_for")):
        refused = httpx.get(url, params=params, timeout=30)
        assert refused.status_code == 400, (params, refused.text)
        assert refused.json()["field"] == field
    with BenchmarkAPIClient(served.url) as client, pytest.raises(NotFound):
        client.compare_runs(history="nope")
    schema = httpx.get(f"{served.url}/schema/openapi.json", timeout=30).json()
    assert schema["paths"]["/api/benchmark/compare"]["get"]["operationId"] == "compareRuns"
    assert "RunComparison" in schema["components"]["schemas"]


def test_the_run_pages_link_to_comparisons_and_the_runs_list_marks_the_regression(runs, served):
    run_page = httpx.get(f"{served.url}/runs/{runs['c']}", timeout=30)
    assert f'hx-get="/compare/previous/{runs["c"]}"' in run_page.text
    offer = httpx.get(f"{served.url}/compare/previous/{runs['c']}", timeout=30)
    assert f'href="/compare?contender={runs["c"]}"' in offer.text
    previous = httpx.get(f"{served.url}/compare", params={"contender": runs["c"]}, timeout=30)
    assert previous.status_code == 200
    assert f"against run <a href=\"/runs/{runs['b']}\">" in previous.text
    first = httpx.get(f"{served.url}/compare", params={"contender": runs["a"]}, timeout=30)
    assert first.status_code == 200 and "No earlier completed run" in first.text

    listing = httpx.get(f"{served.url}/runs", timeout=30).text
    rows = {run_id: listing.split(f'id="run-row-{run_id}"')[1].split("</tr>")[0] for run_id in (runs["a"], runs["b"], runs["c"])}
    assert f'href="/compare?history={runs["c"]}"' in rows[runs["c"]]
    assert "regression" not in rows[runs["a"]] and "regression" not in rows[runs["b"]]

    history_page = httpx.get(f"{served.url}/compare", params={"history": runs["c"]}, timeout=30)
    assert history_page.status_code == 200 and 'data-mode="history"' in history_page.text
    assert history_page.text.count('data-vega-spec="chart-distribution-') == 2
    fragment = httpx.get(f"{served.url}/compare", params={"history": runs["c"]}, headers={"HX-Request": "true"},
                         timeout=30)
    assert "<html" not in fragment.text and 'data-mode="history"' in fragment.text
    bad = httpx.get(f"{served.url}/compare", params={"history": runs["c"], "threshold": "x"}, timeout=30)
    assert bad.status_code == 400 and "error-threshold" in bad.text
    assert httpx.get(f"{served.url}/compare", params={"history": "nope"}, timeout=30).status_code == 404


@pytest.mark.parametrize(("lookback", "reason"), [("-3", "must be between 1 and"), ("abc", "&#39;abc&#39; is not a whole number")])
def test_the_compare_page_says_why_a_lookback_is_refused(runs, served, lookback, reason):
    page = httpx.get(f"{served.url}/compare", params={"history": runs["c"], "lookback": lookback}, timeout=30)
    assert page.status_code == 400
    assert reason in page.text
