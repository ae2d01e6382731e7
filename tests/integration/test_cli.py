"""`benchboard` as a user runs it: a real subprocess, real tiny models, a real DuckDB file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from storage.database import Database

RUN = [sys.executable, "-m", "webapp.cli", "run"]


def benchboard(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "webapp.cli", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    db_path = folder / "b.duckdb"
    done = benchboard("run", "--models", "bert-tiny", "gpt2-tiny", "--hardware", "cpu", "--batch-sizes", "1", "4",
                      "--precision", "fp32", "--db-path", str(db_path), "--results-dir", str(folder / "results"),
                      "--max-seconds", "0.3", "--threads", "1", "--no-progressive")
    return done, db_path, folder


def test_run_prints_progress_and_a_table_and_exits_zero(first_run):
    done, _, folder = first_run
    assert done.returncode == 0, done.stderr
    assert "[" in done.stderr and "4/4" in done.stderr
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
            "throughput_items_per_second, len(samples_ms), n_samples, threads FROM performance_results"
        ).fetchall()
        run = db.cursor().execute("SELECT status, environment, total_configs FROM test_runs").fetchone()
    assert len(rows) == 4
    for batch, mean, p50, p90, p99, throughput, kept, n, threads in rows:
        assert mean > 0 and p50 <= p90 <= p99
        assert throughput == pytest.approx(batch / (p50 / 1000), rel=0.01)
        assert kept == n > 0
        assert threads == 1
    status, environment, total = run
    assert status == "completed" and total == 4
    assert json.loads(environment)["cpu"]["torch_version"]


def test_second_identical_run_skips_every_config_and_says_so(first_run):
    _, db_path, folder = first_run
    again = benchboard("run", "--models", "bert-tiny", "gpt2-tiny", "--batch-sizes", "1", "4",
                       "--db-path", str(db_path), "--results-dir", str(folder / "results"), "--threads", "1")
    assert again.returncode == 0, again.stderr
    assert "skipped 4 of 4 configs" in again.stderr
    with Database(db_path) as db:
        assert db.cursor().execute("SELECT count(*) FROM performance_results").fetchone()[0] == 4


def test_no_incremental_measures_again(first_run):
    _, db_path, folder = first_run
    again = benchboard("run", "--models", "bert-tiny", "--batch-sizes", "1", "--no-incremental", "--max-seconds",
                       "0.3", "--db-path", str(db_path), "--results-dir", str(folder / "results"), "--threads", "1")
    assert again.returncode == 0, again.stderr
    assert "1 measured" in again.stderr
    with Database(db_path) as db:
        count = db.cursor().execute(
            "SELECT count(*) FROM results_view WHERE model_name = 'bert-tiny' AND batch_size = 1").fetchone()[0]
    assert count == 2


def test_int8_on_cpu_is_measured(tmp_path):
    done = benchboard("run", "--models", "bert-tiny", "--batch-sizes", "2", "--precision", "int8",
                      "--max-seconds", "0.3", "--db-path", str(tmp_path / "b.duckdb"),
                      "--results-dir", str(tmp_path / "results"), "--json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["results"]
    assert row["precision"] == "int8" and row["p50_latency_ms"] > 0


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
