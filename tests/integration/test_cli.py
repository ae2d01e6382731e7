"""`benchboard` as a user runs it: a real subprocess, real tiny models, a real DuckDB file."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from storage.database import Database
from tests.integration.cli_process import benchboard

RUN = [sys.executable, "-m", "webapp.cli", "run"]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    db_path = folder / "b.duckdb"
    done = benchboard("run", "--models", "bert-tiny", "gpt2-tiny", "--hardware", "cpu", "--batch-sizes", "1", "4",
                      "--precision", "fp32", "--db-path", str(db_path), "--results-dir", str(folder / "results"),
                      "--max-seconds", "0.3", "--threads", "1", "--no-progressive")
    return done, db_path, folder


def test_run_prints_progress_and_a_table_and_exits_zero(first_run):
    import re

    from webapp.cli.progress import ProgressBar

    done, _, folder = first_run
    assert done.returncode == 0, done.stderr
    # Not a terminal, so one bar line per update: "[###.....] 1/4 step", the bar filled in
    # proportion, the count rising to 4/4, then "done in Ns".
    bar = re.compile(rf"^\[(#*)(\.*)\] (\d+)/(\d+) (.+)$")
    lines = [line for line in done.stderr.splitlines() if line.startswith("[")]
    drawn = [bar.match(line) for line in lines]
    assert drawn and all(drawn), lines
    counts = [int(match[3]) for match in drawn]
    assert {int(match[4]) for match in drawn} == {4}
    assert counts == sorted(counts) and {1, 2, 3, 4} <= set(counts) and counts[-1] == 4
    for match in drawn:
        assert len(match[1]) + len(match[2]) == ProgressBar.WIDTH
        assert len(match[1]) == ProgressBar.WIDTH * int(match[3]) // 4
    assert "bert-tiny on cpu, batch size" in done.stderr  # the step names the config being measured
    assert re.search(r"^done in \d+\.\ds$", done.stderr, re.M)
    header, rule, *rows = done.stdout.strip().splitlines()
    assert header.split()[:4] == ["model_name", "hardware", "batch_size", "precision"]
    assert sorted((r.split()[0], r.split()[2]) for r in rows) == [
        ("bert-tiny", "1"), ("bert-tiny", "4"), ("gpt2-tiny", "1"), ("gpt2-tiny", "4")
    ]
    run_folders = [p for p in (folder / "results").iterdir() if p.is_dir()]
    assert {p.name for p in run_folders[0].iterdir()} == {"report.html", "report.md", "results.json"}


def test_run_stores_one_sound_row_per_config_with_raw_samples(first_run):
    _, db_path, _ = first_run
    with Database(db_path) as db:
        rows = db.cursor().execute(
            "SELECT batch_size, average_latency_ms, p50_latency_ms, p90_latency_ms, p99_latency_ms, "
            "throughput_items_per_second, len(samples_ms), n_samples, threads, total_timed_seconds, "
            "calls_per_sample, timing, attn_implementation, load_memory_peak_mb, memory_peak_mb, "
            "p99_ci_high_ms, p90_ci_low_ms, contended, other_cpu_seconds FROM results_view"
        ).fetchall()
        run = db.cursor().execute("SELECT status, environment, total_configs FROM test_runs").fetchone()
    assert len(rows) == 4
    for (batch, mean, p50, p90, p99, throughput, kept, n, threads, seconds, calls, timing, attention, load_mb,
         inference_mb, p99_high, p90_low, contended, others) in rows:
        assert mean > 0 and p50 <= p90 <= p99
        # A measured rate: items processed over the timed wall seconds.
        assert throughput == pytest.approx(batch * n * calls / seconds, rel=0.01)
        assert kept == n > 0
        assert threads == 1
        assert timing == ("latency" if batch == 1 else "throughput")
        assert attention == "sdpa"
        assert load_mb is not None and inference_mb is not None
        assert (p99_high is None) == (n < 299) and p90_low is not None
        assert contended in (True, False) and others >= 0
    status, environment, total = run
    assert status == "completed" and total == 4
    cpu = json.loads(environment)["cpu"]
    for key in ("benchboard_version", "torch_version", "transformers_version", "float32_matmul_precision",
                "cuda_matmul_allow_tf32", "cudnn_allow_tf32", "cudnn_benchmark", "cpu_flags", "quantized_engine",
                "measurement", "parallel_devices"):
        assert key in cpu, key
    assert cpu["threads"] == 1 and cpu["measurement"]["max_seconds"] == 0.3 and cpu["parallel_devices"] is False


def test_second_identical_run_skips_every_config_and_says_so(first_run):
    _, db_path, folder = first_run
    again = benchboard("run", "--models", "bert-tiny", "gpt2-tiny", "--batch-sizes", "1", "4", "--max-seconds", "0.3",
                       "--db-path", str(db_path), "--results-dir", str(folder / "results"), "--threads", "1")
    assert again.returncode == 0, again.stderr
    assert "skipped 4 of 4 configs" in again.stderr
    with Database(db_path) as db:
        assert db.cursor().execute("SELECT count(*) FROM performance_results").fetchone()[0] == 4
        (first_id,) = {row[0] for row in db.cursor().execute("SELECT run_id FROM performance_results").fetchall()}
    # Its reports list what it stood on, with the run that measured each, not "nothing measured".
    (second_id,) = re.findall(r"^run (\w+) completed", again.stderr, re.MULTILINE)
    report = (folder / "results" / second_id / "report.md").read_text()
    assert "No config was measured: 4 configs reused results from earlier runs" in report
    assert "## Reused from earlier runs" in report and report.count(f"| {first_id} |") == 4
    reused = json.loads((folder / "results" / second_id / "results.json").read_text())["reused"]
    assert sorted((row["model_name"], row["batch_size"], row["run_id"]) for row in reused) == [
        ("bert-tiny", 1, first_id), ("bert-tiny", 4, first_id), ("gpt2-tiny", 1, first_id), ("gpt2-tiny", 4, first_id),
    ]
    assert "No config was measured" in (folder / "results" / second_id / "report.html").read_text()


def test_a_run_with_another_thread_count_measures_instead_of_skipping(first_run):
    # Issue 10: the fingerprint held the server's thread count, so --threads 2 was skipped as "already measured".
    _, db_path, folder = first_run
    again = benchboard("run", "--models", "bert-tiny", "--batch-sizes", "1", "--max-seconds", "0.3", "--threads", "2",
                       "--db-path", str(db_path), "--results-dir", str(folder / "results"))
    assert again.returncode == 0, again.stderr
    assert "1 measured" in again.stderr and "skipped" not in again.stderr.splitlines()[-1].replace(" 0 skipped", "")
    with Database(db_path) as db:
        threads = db.cursor().execute(
            "SELECT threads FROM results_view WHERE model_name = 'bert-tiny' AND batch_size = 1 ORDER BY result_id"
        ).fetchall()
    assert [row[0] for row in threads][-1] == 2 and (1,) in threads


def test_no_incremental_measures_again(first_run):
    _, db_path, folder = first_run
    again = benchboard("run", "--models", "bert-tiny", "--batch-sizes", "1", "--no-incremental", "--max-seconds",
                       "0.3", "--db-path", str(db_path), "--results-dir", str(folder / "results"), "--threads", "1")
    assert again.returncode == 0, again.stderr
    assert "1 measured" in again.stderr
    with Database(db_path) as db:
        count = db.cursor().execute(
            "SELECT count(*) FROM results_view WHERE model_name = 'bert-tiny' AND batch_size = 1 AND threads = 1"
        ).fetchone()[0]
    assert count == 2


def test_int8_on_cpu_is_measured(tmp_path):
    done = benchboard("run", "--models", "bert-tiny", "--batch-sizes", "2", "--precision", "int8",
                      "--max-seconds", "0.3", "--db-path", str(tmp_path / "b.duckdb"),
                      "--results-dir", str(tmp_path / "results"), "--json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["results"]
    assert row["precision"] == "int8" and row["p50_latency_ms"] > 0
    assert len(row["samples_ms"]) == row["n_samples"] and min(row["samples_ms"]) > 0  # --json keeps the raw times


def test_hardware_that_is_not_here_exits_2_listing_what_is(tmp_path):
    # A device index no machine has, so this holds on a GPU box too.
    done = benchboard("run", "--models", "bert-tiny", "--hardware", "cuda:97", "--db-path", str(tmp_path / "b.duckdb"))
    assert done.returncode == 2
    assert "hardware 'cuda:97' is not present on this machine; present: cpu" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_model_exits_2_listing_the_models(tmp_path):
    done = benchboard("run", "--models", "bert-gigantic", "--db-path", str(tmp_path / "b.duckdb"))
    assert done.returncode == 2
    assert "unknown model 'bert-gigantic'; available: " in done.stderr and "gpt2-tiny" in done.stderr


def test_local_checkpoint_folder_and_models_dir_are_benchmarked(tmp_path):
    from transformers import BertConfig, BertModel

    checkpoint = tmp_path / "checkpoints" / "my-bert"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         vocab_size=100)).save_pretrained(checkpoint)
    by_path = benchboard("run", "--models", str(checkpoint), "--batch-sizes", "1", "--max-seconds", "0.3",
                         "--db-path", str(tmp_path / "b.duckdb"), "--results-dir", str(tmp_path / "results"), "--json")
    assert by_path.returncode == 0, by_path.stderr
    assert json.loads(by_path.stdout)["results"][0]["weights"] == "pretrained"
    listed = benchboard("models", "--models-dir", str(tmp_path / "checkpoints"), "--json")
    assert "my-bert" in {model["name"] for model in json.loads(listed.stdout)}


def test_hardware_and_models_commands_print_json_for_machines():
    hardware = json.loads(benchboard("hardware", "--json").stdout)
    assert hardware[0]["name"] == "cpu" and "fp32" in hardware[0]["precisions"]
    models = {m["name"]: m for m in json.loads(benchboard("models", "--json").stdout)}
    assert {"bert-tiny", "gpt2-tiny", "bert-base-uncased", "gpt2", "t5-small", "vit-base-patch16-224"} <= set(models)
    table = benchboard("models").stdout
    assert table.splitlines()[0].split()[:2] == ["name", "family"]


def test_database_held_by_another_process_gets_a_clear_message(tmp_path):
    db_path = tmp_path / "b.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", f"from storage.database import Database; d = Database({str(db_path)!r}); "
                               "print('open', flush=True); import time; time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        done = benchboard("run", "--models", "bert-tiny", "--db-path", str(db_path))
        assert done.returncode == 1
        assert f"is in use by process {holder.pid}" in done.stderr
        assert "Traceback" not in done.stderr
    finally:
        holder.kill()
        holder.wait()


def test_query_command_runs_guarded_sql_and_refuses_writes(first_run):
    _, db_path, _ = first_run
    done = benchboard("query", "SELECT count(*) AS n FROM performance_results", "--db-path", str(db_path), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"][0][0] >= 4
    refused = benchboard("query", "DROP TABLE models", "--db-path", str(db_path))
    assert refused.returncode == 2 and "DROP is not allowed" in refused.stderr


def test_output_cut_short_by_its_reader_is_not_an_error():
    # As in `benchboard models | head -1`: the reader is gone before the table is written.
    listing = subprocess.Popen([sys.executable, "-m", "webapp.cli", "models"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    listing.stdout.close()
    assert listing.wait(timeout=120) == 0
    assert "Traceback" not in listing.stderr.read()


def test_a_vision_model_runs_at_the_image_size_asked_for(tmp_path):
    # One run at a size other than vit-tiny's own 32: --image-size reaches the config and its row.
    # That the model really runs at the recorded size (16 times the work at 128 px) is measured
    # in tests/unit/engine/test_measurement.py, without a CLI process per size.
    done = benchboard("run", "--models", "vit-tiny", "--batch-sizes", "1", "--image-size", "64", "--threads", "1",
                      "--max-seconds", "0.3", "--db-path", str(tmp_path / "b.duckdb"),
                      "--results-dir", str(tmp_path / "results"), "--json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["results"]
    assert row["image_size"] == 64 and row["p50_latency_ms"] > 0
    with Database(tmp_path / "b.duckdb") as db:
        assert db.cursor().execute("SELECT image_size FROM results_view").fetchall() == [(64,)]


def test_a_run_measured_beside_a_spinning_process_is_stored_contended_and_warned_about(tmp_path):
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        done = benchboard("run", "--models", "bert-tiny", "--batch-sizes", "1", "--timing", "throughput",
                          "--attn-implementation", "eager", "--parallel-devices", "--max-seconds", "0.5",
                          "--db-path", str(tmp_path / "b.duckdb"), "--results-dir", str(tmp_path / "results"))
    finally:
        spinner.kill()
        spinner.wait()
    assert done.returncode == 0, done.stderr
    assert "contended" in done.stderr and "warning: bert-tiny on cpu batch 1" in done.stderr
    with Database(tmp_path / "b.duckdb") as db:
        row = db.cursor().execute(
            "SELECT contended, other_cpu_seconds, timing, attn_implementation FROM results_view").fetchone()
        environment = json.loads(db.cursor().execute("SELECT environment FROM test_runs").fetchone()[0])
    contended, others, timing, attention = row
    assert contended is True and others > 0
    assert (timing, attention) == ("throughput", "eager")
    assert environment["cpu"]["parallel_devices"] is True
    assert environment["cpu"]["measurement"]["timing"] == "throughput"


def test_bad_run_flags_exit_2_naming_the_flag(tmp_path):
    done = benchboard("run", "--models", "bert-tiny", "--timing", "fast", "--db-path", str(tmp_path / "b.duckdb"))
    assert done.returncode == 2 and "--timing: invalid choice: 'fast'" in done.stderr
    threads = benchboard("run", "--models", "bert-tiny", "--threads", "0", "--db-path", str(tmp_path / "b.duckdb"))
    assert threads.returncode == 2 and "threads: must be at least 1" in threads.stderr


# What a user can get wrong is refused with one `error:` line naming the flag, never a traceback
# (QA report 2026-12-03). Each of these ends before a worker or a server starts.


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one error line of a refused command, argparse's ("benchboard run: error: ...") or ours."""
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ") or ": error: " in line]
    assert len(errors) == 1, done.stderr
    return errors[0]


def test_out_of_range_numbers_are_refused_at_parse_time_naming_the_flag(tmp_path):
    db_path = tmp_path / "b.duckdb"
    cases = [
        (("serve", "--port", "70000"), "argument --port: must be between 0 and 65535, not 70000"),
        (("serve", "--port", "-1"), "argument --port: must be between 0 and 65535, not -1"),
        (("run", "--max-seconds", "0"), "argument --max-seconds: must be a number above 0 seconds, not 0"),
        (("run", "--max-seconds", "-1"), "argument --max-seconds: must be a number above 0 seconds"),
        (("run", "--max-seconds", "nan"), "argument --max-seconds: must be a number above 0 seconds, not nan"),
        (("serve", "--max-seconds", "-1"), "argument --max-seconds: must be a number above 0 seconds"),
        (("serve", "--max-configs-per-run", "0"), "argument --max-configs-per-run: must be at least 1, not 0"),
        (("serve", "--max-configs-per-run", "-5"), "argument --max-configs-per-run: must be at least 1, not -5"),
    ]
    for args, expected in cases:
        done = benchboard(*args, "--db-path", str(db_path))
        assert done.returncode == 2, (args, done.stderr)
        assert expected in error_line(done), (args, done.stderr)
        assert done.stderr.startswith(f"usage: benchboard {args[0]} ")  # the subcommand's usage
    assert not db_path.exists()
    # The same limits from the environment, named by their variable.
    nan = benchboard("run", "--models", "bert-tiny", "--db-path", str(db_path), env={"BENCHBOARD_MAX_SECONDS": "nan"})
    assert nan.returncode == 2
    assert error_line(nan) == "error: BENCHBOARD_MAX_SECONDS='nan': must be a number above 0 seconds, not nan"
    port = benchboard("serve", "--db-path", str(db_path), env={"BENCHBOARD_PORT": "http"})
    assert port.returncode == 2
    assert error_line(port) == "error: BENCHBOARD_PORT='http': must be a whole number, not 'http'"
    assert not db_path.exists()


def test_paths_that_cannot_be_made_are_refused_naming_their_flag(tmp_path):
    a_file = tmp_path / "run1.out"
    a_file.write_text("not a folder")
    inside = str(a_file / "x.duckdb")
    cases = [
        (("run", "--models", "bert-tiny", "--batch-sizes", "1", "--db-path", inside), f"error: --db-path {inside}: "),
        (("serve", "--port", "0", "--db-path", inside), f"error: --db-path {inside}: "),
        (("run", "--models", "bert-tiny", "--db-path", str(tmp_path / "b.duckdb"), "--results-dir", str(a_file / "r")),
         f"error: --results-dir {a_file / 'r'}: "),
        (("serve", "--port", "0", "--db-path", str(tmp_path / "b.duckdb"), "--log-dir", str(a_file)),
         f"error: --log-dir {a_file}: "),
        (("serve", "--port", "0", "--db-path", str(tmp_path / "b.duckdb"), "--results-dir", str(a_file)),
         f"error: --results-dir {a_file}: "),
    ]
    for args, expected in cases:
        done = benchboard(*args)
        assert done.returncode == 2, (args, done.stderr)
        line = error_line(done)
        assert line.startswith(expected) and line.endswith(f"{a_file} is a file, not a folder"), (args, line)
    assert "benchboard dashboard" not in done.stderr  # refused before anything was served
    if Path("/proc/self").exists():  # a folder no one may make (Linux)
        proc = benchboard("run", "--models", "bert-tiny", "--db-path", "/proc/newdir/x.duckdb")
        assert proc.returncode == 2
        assert error_line(proc).startswith(
            "error: --db-path /proc/newdir/x.duckdb: cannot create the folder /proc/newdir")


def test_query_never_makes_a_database(tmp_path):
    typo = tmp_path / "nodir2" / "typo.duckdb"
    done = benchboard("query", "SELECT count(*) FROM test_runs", "--db-path", str(typo))
    assert done.returncode == 2 and done.stdout == ""
    assert error_line(done) == f"error: no database at {typo} (pass --db-path)"
    assert not typo.parent.exists()


def test_model_folders_that_are_not_there_are_refused(tmp_path):
    missing, a_file = tmp_path / "nope", tmp_path / "file"
    a_file.write_text("")
    cases = [
        (("run", "--models", "bert-tiny", "--models-dir", str(missing)),
         f"error: --models-dir {missing}: no such folder"),
        (("run", "--models", "bert-tiny", "--custom-benchmarks-dir", str(missing)),
         f"error: --custom-benchmarks-dir {missing}: no such folder"),
        (("models", "--models-dir", str(a_file)), f"error: --models-dir {a_file}: not a folder"),
        (("serve", "--port", "0", "--models-dir", str(missing)), f"error: --models-dir {missing}: no such folder"),
        (("serve", "--port", "0", "--panels-dir", str(missing)), f"error: --panels-dir {missing}: no such folder"),
        (("serve", "--port", "0", "--panels-dir", str(a_file)), f"error: --panels-dir {a_file}: not a folder"),
    ]
    for args, expected in cases:
        done = benchboard(*args, "--db-path", str(tmp_path / "b.duckdb")) if args[0] != "models" else benchboard(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert error_line(done) == expected
    from_env = benchboard("models", env={"BENCHBOARD_MODELS_DIR": str(missing)})
    assert from_env.returncode == 2
    assert error_line(from_env) == f"error: BENCHBOARD_MODELS_DIR {missing}: no such folder"


def test_serve_refuses_a_host_it_cannot_resolve_or_a_port_in_use_before_starting(tmp_path):
    import socket

    db_path = str(tmp_path / "b.duckdb")
    host = benchboard("serve", "--host", "nosuch.invalid", "--port", "0", "--db-path", db_path)
    assert host.returncode == 2
    assert error_line(host).startswith("error: --host nosuch.invalid: no such host or address")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = benchboard("serve", "--port", str(port), "--db-path", db_path, "--log-dir", str(tmp_path / "logs"))
    assert busy.returncode == 2
    assert error_line(busy) == f"error: --port {port}: 127.0.0.1:{port} is already in use (another server?)"
    assert "benchboard dashboard" not in busy.stderr and "uvicorn" not in busy.stderr


def test_an_unknown_flag_gets_its_subcommands_usage_and_version_and_help_are_there():
    bogus = benchboard("run", "--bogus")
    assert bogus.returncode == 2 and bogus.stderr.startswith("usage: benchboard run ")
    assert error_line(bogus) == "benchboard run: error: unrecognized arguments: --bogus"
    nested = benchboard("remote", "query", "--bogus")
    assert nested.returncode == 2 and nested.stderr.startswith("usage: benchboard remote query ")
    version = benchboard("--version")
    assert version.returncode == 0 and re.fullmatch(r"benchboard \S+\n", version.stdout)
    serve_help = benchboard("serve", "--help").stdout
    assert re.search(r"--port PORT\s+TCP port, 0-65535 \(env BENCHBOARD_PORT; default 8000\)", serve_help)
    assert "Exit status" in benchboard("--help").stdout


def test_every_flag_of_the_local_commands_has_help():
    from webapp.cli.main import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in ("run", "serve", "hardware", "models", "query"):
        for action in commands[name]._actions:
            assert action.help, (name, action.option_strings or action.dest)
    assert commands["query"].description


class _StubServer:
    """A server that answers GET /api/benchmark/models with many models, nothing else: enough
    for `benchboard remote models --json` to have output to write."""

    def __enter__(self):
        import http.server
        import threading

        body = json.dumps([{"name": f"model-{i}", "family": "f", "type": "t", "modality": "text",
                            "parameters_million": 1.0, "source": "builtin"} for i in range(2000)]).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200 if self.path.startswith("/api/benchmark/models") else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()


def closed_reader(*args: str) -> subprocess.Popen:
    """`benchboard ARGS | true`: its stdout's reader is gone before it writes."""
    from tests.integration.cli_process import COMMAND, cli_environment

    process = subprocess.Popen([*COMMAND, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=cli_environment())
    process.stdout.close()
    return process


def test_remote_and_compare_output_cut_short_by_its_reader_is_not_an_error(first_run):
    _, db_path, _ = first_run
    with Database(db_path) as db:
        runs = [row[0] for row in db.cursor().execute("SELECT run_id FROM test_runs ORDER BY start_time").fetchall()]
    with _StubServer() as url:
        listing = closed_reader("remote", "models", "--json", "--url", url)
        assert listing.wait(timeout=120) == 0
        assert listing.stderr.read() == ""
    comparison = closed_reader("compare", runs[0], runs[1], "--db-path", str(db_path), "--json")
    assert comparison.wait(timeout=120) == 0
    assert comparison.stderr.read() == ""
