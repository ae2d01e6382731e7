"""``benchboard remote ...`` against a real server: tables by default, JSON on request,
errors as one line without a traceback."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys

import pytest

from tests.integration.server import REPO_ROOT
from webapp.cli.remote import add_remote_parser, run_remote


def remote(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="benchboard")
    add_remote_parser(parser.add_subparsers(dest="command", required=True))
    return run_remote(parser.parse_args(["remote", *argv]))


@pytest.fixture(scope="module")
def watched(server) -> tuple[str, str]:
    """A run started and followed with ``remote start --watch``: its id and what the command printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = remote("start", "--url", server.url, "--models", "bert-tiny", "--batch-sizes", "1", "--force",
                      "--watch")
    assert code == 0, printed.getvalue()
    return printed.getvalue().split()[1], printed.getvalue()


def test_start_with_watch_prints_the_run_and_its_progress_until_it_completes(watched):
    run_id, out = watched
    lines = out.splitlines()
    assert lines[0].startswith(f"run {run_id} ") and "1 configs" in lines[0]
    assert "100.0%  completed" in lines[-1]
    assert any("bert-tiny on cpu" in line for line in lines[1:])


def test_status_results_and_watch_of_a_finished_run(server, watched, capsys):
    run_id, _ = watched

    assert remote("status", run_id, "--url", server.url) == 0
    fields = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert fields["status"] == "completed" and fields["completed_configs"] == "1"

    assert remote("results", run_id, "--url", server.url) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["model_name", "hardware", "batch_size", "precision"]
    assert table[2].split()[:4] == ["bert-tiny", "cpu", "1", "fp32"]

    assert remote("results", run_id, "--url", server.url, "--json") == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["model_name"] == "bert-tiny"

    assert remote("watch", run_id, "--url", server.url) == 0
    assert "100.0%  completed" in capsys.readouterr().out

    assert remote("reports", "--url", server.url) == 0
    listing = capsys.readouterr().out.splitlines()
    assert any(line.startswith(run_id) and "report.html" in line for line in listing)


def test_results_of_a_generate_run_show_its_ttft_tpot_and_end_to_end(server, capsys):
    # A real generation on the real server (gpt2-tiny, 4 new tokens): its row prints under
    # "generate:" with the generate columns, not the forward latency columns alone.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = remote("start", "--url", server.url, "--models", "gpt2-tiny", "--batch-sizes", "1", "--force",
                      "--scenario", "generate", "--new-tokens", "4", "--watch")
    assert code == 0, printed.getvalue()
    run_id = printed.getvalue().split()[1]
    capsys.readouterr()

    assert remote("results", run_id, "--url", server.url) == 0
    out = capsys.readouterr().out
    assert "generate:" in out
    header, _, row = out.split("generate:\n", 1)[1].splitlines()[:3]
    cells = dict(zip(header.split(), row.split(), strict=True))
    assert cells["model_name"] == "gpt2-tiny" and cells["new_tokens"] == "4"
    assert all(float(cells[column].replace(",", "")) > 0 for column in ("ttft_ms", "tpot_ms", "e2e_ms"))

    assert remote("query", "--url", server.url, "--model", "gpt2-tiny", "--limit", "5") == 0
    assert "generate:" in capsys.readouterr().out


def test_catalog_and_query_listings(server, watched, capsys):
    assert remote("models", "--url", server.url) == 0
    models = capsys.readouterr().out
    assert "bert-tiny" in models and "gpt2-tiny" in models

    assert remote("hardware", "--url", server.url, "--json") == 0
    assert "cpu" in {hw["name"] for hw in json.loads(capsys.readouterr().out)}

    assert remote("query", "--url", server.url, "--model", "bert-tiny", "--batch-size", "1", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert watched[0] in {row["run_id"] for row in rows}
    assert {(row["model_name"], row["batch_size"]) for row in rows} == {("bert-tiny", 1)}


def test_the_url_comes_from_the_environment_when_not_given(server, capsys, monkeypatch):
    monkeypatch.setenv("BENCHBOARD_URL", server.url)
    assert remote("hardware") == 0
    assert "cpu" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["status", "no-such-run"], "error: run_id: no run with id 'no-such-run'"),
    (["watch", "no-such-run"], "error: no run with id 'no-such-run'"),
    (["start", "--models", "no-such-model"], "error: models: unknown model 'no-such-model'"),
    (["query", "--limit", "0"], "error: limit: "),
])
def test_refusals_are_one_line_on_stderr_and_exit_1(server, capsys, argv, message):
    assert remote(*argv, "--url", server.url) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(message)
    assert "Traceback" not in captured.err and captured.out == ""


@pytest.mark.parametrize(("url", "message"), [
    ("http://127.0.0.1:9", "error: cannot reach server at http://127.0.0.1:9"),
    ("localhost:8000", "error: base_url must start with http:// or https://"),
])
def test_a_bad_or_dead_address_is_one_line_on_stderr_and_exit_1(capsys, url, message):
    assert remote("models", "--url", url) == 1
    assert capsys.readouterr().err.startswith(message)


def test_the_benchboard_command_runs_the_remote_actions(server):
    listed = subprocess.run([sys.executable, "-m", "webapp.cli", "remote", "hardware", "--url", server.url],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split()[:2] == ["name", "type"]
    assert "cpu" in listed.stdout
