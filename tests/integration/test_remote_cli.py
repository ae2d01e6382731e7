"""``benchboard remote ...`` against a real server: tables by default, JSON on request,
errors as one line without a traceback."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import re
import subprocess
import sys
import threading
import time

import msgspec
import pytest

from benchboard_client import BenchmarkAPIClient
from benchboard_client.formatting import RESULT_COLUMNS
from engine.runs import RunResults
from tests.integration.cli_process import benchboard
from tests.integration.server import REPO_ROOT, start_server
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
    # The status once: "run ID running: 1 configs at priority high", not "running: benchmark run running: ...".
    assert re.fullmatch(rf"run {run_id} (queued|running): 1 configs at priority high", lines[0]), lines[0]
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


def test_results_and_query_print_the_columns_benchboard_run_prints(server, watched, capsys, monkeypatch):
    run_id, _ = watched
    assert remote("results", run_id, "--url", server.url) == 0
    header, _, row = capsys.readouterr().out.splitlines()[:3]
    assert header.split() == list(RESULT_COLUMNS)
    assert dict(zip(header.split(), row.split(), strict=True))["timing"] == "latency"  # batch size 1's default

    # `benchboard run`'s own table of the same rows: the same columns, in the same order.
    cli_main = importlib.import_module("webapp.cli.main")  # `webapp.cli.main` the attribute is the function
    tables = []
    monkeypatch.setattr(cli_main, "_print_table", lambda columns, rows, out=None: tables.append(columns))
    with BenchmarkAPIClient(server.url) as client:
        outcome = msgspec.convert(client.get_results(run_id), RunResults)
    cli_main._report(argparse.Namespace(run_id=run_id, skipped_configs=0, total_configs=1), outcome)
    assert tables == [header.split()]

    assert remote("query", "--url", server.url, "--model", "bert-tiny", "--batch-size", "1", "--limit", "1") == 0
    header, _, row = capsys.readouterr().out.splitlines()[:3]
    assert header.split() == ["run_id", *RESULT_COLUMNS, "created_at"]
    assert dict(zip(header.split(), row.split(), strict=True))["timing"] == "latency"


def test_start_sends_the_run_request_flags_of_benchboard_run(server, capsys):
    assert remote("start", "--url", server.url, "--models", "bert-tiny", "--batch-sizes", "2", "--force",
                  "--timing", "latency", "--attn-implementation", "eager", "--image-size", "64", "--threads", "1",
                  "--repeats", "2", "--sequence-length", "16", "--no-progressive", "--json") == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    with BenchmarkAPIClient(server.url) as client:
        asked = client.get_results(run_id)["config"]
        client.cancel(run_id)  # what the server was sent is all this test asks; measuring it is run's tests'
        client.monitor_progress(run_id, lambda status: None)
    assert {name: asked[name] for name in ("timing", "attn_implementation", "image_size", "threads", "repeats",
                                           "sequence_length", "progressive_mode")} == {
        "timing": "latency", "attn_implementation": "eager", "image_size": 64, "threads": 1, "repeats": 2,
        "sequence_length": 16, "progressive_mode": False}


@pytest.mark.parametrize(("url", "reason"), [
    ("http://127.0.0.1:abc", "port must be a number from 1 to 65535, not 'abc' (in 'http://127.0.0.1:abc')"),
    ("http://127.0.0.1:99999", "port must be a number from 1 to 65535, not '99999' (in 'http://127.0.0.1:99999')"),
    ("http://[::1", "is not a valid URL: 'http://[::1' (Invalid IPv6 URL)"),
    ("http://", "names no host: 'http://' (e.g. http://localhost:8000)"),
])
def test_a_malformed_url_is_one_line_naming_the_flag_and_exit_2(capsys, url, reason):
    # Refused before any connection: not a traceback, and a port out of range is not "Connection refused".
    assert remote("status", "X", "--url", url) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: --url: {reason}\n" and captured.out == ""


def test_a_malformed_url_from_the_environment_or_given_to_compare_exits_2_in_one_line():
    from_environment = benchboard("remote", "models", env={"BENCHBOARD_URL": "http://[::1"})
    assert from_environment.returncode == 2
    assert from_environment.stderr == "error: BENCHBOARD_URL: is not a valid URL: 'http://[::1' (Invalid IPv6 URL)\n"
    compared = benchboard("compare", "A", "B", "--url", "http://127.0.0.1:abc")
    assert compared.returncode == 2
    assert compared.stderr == ("error: --url: port must be a number from 1 to 65535, not 'abc' "
                               "(in 'http://127.0.0.1:abc')\n")


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
def test_refusals_are_one_line_on_stderr_and_exit_2(server, capsys, argv, message):
    assert remote(*argv, "--url", server.url) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(message)
    assert "Traceback" not in captured.err and captured.out == ""


def test_a_dead_address_is_one_line_on_stderr_and_exit_1(capsys):
    assert remote("models", "--url", "http://127.0.0.1:9") == 1
    assert capsys.readouterr().err.startswith("error: cannot reach server at http://127.0.0.1:9")


def test_start_refusals_exit_2_like_run_and_a_malformed_url_names_its_flag(server):
    # The command as a user runs it: each refusal is one line naming the field, exit 2 (`run`'s status).
    for argv, field in ((["--models", "nosuch"], "models"), (["--hardware", "tpu"], "hardware"),
                        (["--precision", "fp64"], "precision"), (["--batch-sizes", "0"], "batch_sizes"),
                        (["--threads", "0"], "threads"), (["--repeats", "0"], "repeats"),
                        (["--image-size", "0"], "image_size"), (["--new-tokens", "1"], "new_tokens")):
        done = benchboard("remote", "start", "--url", server.url, *argv)
        assert done.returncode == 2, (argv, done.stderr)
        assert done.stderr.startswith(f"error: {field}: ") and done.stderr.count("\n") == 1, done.stderr
        assert done.stdout == ""
    malformed = benchboard("remote", "models", "--url", "notaurl")
    assert malformed.returncode == 2
    assert malformed.stderr == ("error: --url: must start with http:// or https:// (e.g. http://localhost:8000), "
                                "not 'notaurl'\n")
    # A choice `benchboard run` refuses is refused here with the same words, before any connection.
    for flag, value in (("--timing", "fast"), ("--attn-implementation", "flash"), ("--scenario", "chat")):
        chosen = benchboard("remote", "start", "--url", server.url, flag, value)
        run = benchboard("run", flag, value)
        assert chosen.returncode == run.returncode == 2
        assert chosen.stderr.splitlines()[-1].split(": ", 1)[1] == run.stderr.splitlines()[-1].split(": ", 1)[1]
    from_environment = subprocess.run([sys.executable, "-m", "webapp.cli", "remote", "models"], capture_output=True,
                                      text=True, cwd=REPO_ROOT, timeout=60, env={**os.environ, "BENCHBOARD_URL": "x"})
    assert from_environment.returncode == 2 and from_environment.stderr.startswith("error: BENCHBOARD_URL: must")


def test_the_benchboard_command_runs_the_remote_actions(server):
    listed = subprocess.run([sys.executable, "-m", "webapp.cli", "remote", "hardware", "--url", server.url],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split()[:2] == ["name", "type"]
    assert "cpu" in listed.stdout


def test_results_of_a_run_that_reused_every_config_list_what_it_reused(server, watched):
    # `watched` measured bert-tiny bs1 moments ago, so a run without --force measures nothing again.
    started = benchboard("remote", "start", "--url", server.url, "--models", "bert-tiny", "--batch-sizes", "1",
                         "--watch")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.split()[1]
    (reused,) = json.loads(benchboard("remote", "results", run_id, "--url", server.url, "--json").stdout)["reused"]
    assert reused["run_id"] != run_id and reused["model_name"] == "bert-tiny"

    shown = benchboard("remote", "results", run_id, "--url", server.url)
    assert shown.returncode == 0, shown.stderr
    assert "(no rows)" not in shown.stdout
    title, header, _, row = shown.stdout.strip().splitlines()
    assert title == "reused (results of earlier runs, not measured again):"
    assert header.split()[:3] == ["run_id", "model_name", "hardware"]
    assert row.split()[:5] == [reused["run_id"], "bert-tiny", "cpu", "1", "fp32"]
    assert shown.stderr.strip() == f"run {run_id} completed: 0 measured, 1 reused, 0 not measured (of 1 configs)"


TOKEN = "remote-cli-secret"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server of these tests' own, with a token: one test kills it (and restarts it)."""
    with start_server(tmp_path_factory.mktemp("guarded"), token=TOKEN) as process:
        yield process


def test_compare_through_a_server_that_refuses_the_token_exits_2_not_1(guarded):
    # 1 is a regression's exit status alone; a comparison that could not be asked for is 2.
    refused = benchboard("compare", "a", "b", "--url", guarded.url)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: ") and "401" in refused.stderr and "Traceback" not in refused.stderr


class Lines:
    """A subprocess's stdout and stderr lines as they come, each with the time it was read."""

    def __init__(self, process: subprocess.Popen):
        self.seen: list[tuple[str, float, str]] = []
        self._lock = threading.Lock()
        for name in ("stdout", "stderr"):
            threading.Thread(target=self._read, args=(name, getattr(process, name)), daemon=True).start()

    def _read(self, name, stream):
        for line in stream:
            with self._lock:
                self.seen.append((name, time.monotonic(), line.rstrip("\n")))

    def wait_for(self, stream: str, text: str, timeout: float) -> float:
        """When the first line of ``stream`` holding ``text`` was read; fails after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for name, at, line in self.seen:
                    if name == stream and text in line:
                        return at
            time.sleep(0.05)
        pytest.fail(f"no {stream} line with {text!r} within {timeout:g} s; read: {self.seen}")

    def of(self, stream: str) -> list[str]:
        with self._lock:
            return [line for name, _, line in self.seen if name == stream]


def test_watch_says_at_once_when_it_loses_the_server_and_when_it_is_back(guarded):
    auth = ("--url", guarded.url, "--token", TOKEN)
    started = benchboard("remote", "start", *auth, "--models", "bert-tiny", "--force", "--no-progressive",
                         "--batch-sizes", *map(str, range(1, 21)))
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.split()[1]
    environment = {name: value for name, value in os.environ.items() if not name.startswith("BENCHBOARD_")}
    watch = subprocess.Popen([sys.executable, "-m", "webapp.cli", "remote", "watch", run_id, *auth],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
                             env=environment)
    try:
        lines = Lines(watch)
        lines.wait_for("stdout", "running", timeout=60)
        guarded.kill()  # SIGKILL mid-watch: the socket drops, and reconnecting is refused
        killed_at = time.monotonic()
        lost_at = lines.wait_for("stderr", "lost the connection", timeout=15)
        assert lost_at - killed_at < 10, "the watcher was silent about the lost server"
        (lost,) = [line for line in lines.of("stderr") if "lost the connection" in line]
        assert lost.startswith(f"run {run_id}: lost the connection to the server at {guarded.url} (")
        assert lost.endswith("; retrying for up to 60 s")

        guarded.restart()  # same port and database: the run resumes
        lines.wait_for("stderr", "is back", timeout=60)
        assert benchboard("remote", "cancel", run_id, *auth).returncode == 0
        assert watch.wait(60) == 1  # the run it followed was cancelled
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    time.sleep(0.2)  # the reader threads take the last lines
    stderr = lines.of("stderr")
    assert stderr[-1] == f"run {run_id} cancelled"
    assert f"run {run_id}: the server at {guarded.url} is back; following the run again" in stderr
    assert not any("Traceback" in line for line in stderr), stderr

    # A cancelled run counts the configs it never got to, rather than "0 not measured".
    shown = benchboard("remote", "results", run_id, *auth)
    counted = re.fullmatch(rf"run {run_id} cancelled: (\d+) measured, (\d+) not measured, (\d+) never ran "
                           r"\(of 20 configs\)", shown.stderr.strip())
    assert counted, shown.stderr
    measured, failed, never_ran = map(int, counted.groups())
    assert never_ran > 0 and measured + failed + never_ran == 20
