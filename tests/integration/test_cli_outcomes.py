"""What `benchboard run` leaves behind when a run does not simply succeed: its --json
document as a whole, exit 1 for a failed run, exit 130 for Ctrl-C, 143 for SIGTERM. Real subprocesses,
real workers, a custom workload written to a tmp folder."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import msgspec
import pytest

from engine.runs import RunRecord, RunResults
from storage.database import Database
from storage.runs import get_run

WORKLOADS = '''
import time

import torch

from engine.models.spec import ModelSpec


def broken():
    raise RuntimeError("this workload cannot be built")


class Sleeper(torch.nn.Module):
    def forward(self, x):
        time.sleep(0.05)
        return x


def make_inputs(batch_size, sequence_length, image_size):
    return {"x": torch.zeros(batch_size, 4)}


MODELS = [
    ModelSpec(name="broken-workload", family="test", architecture="custom", modality="tensor",
              parameters_million=0.001, build=broken, make_inputs=make_inputs),
    ModelSpec(name="sleepy-workload", family="test", architecture="custom", modality="tensor",
              parameters_million=0.001, build=Sleeper, make_inputs=make_inputs),
]
'''


def run_command(tmp_path, *args: str) -> list[str]:
    workloads = tmp_path / "workloads"
    workloads.mkdir(exist_ok=True)
    (workloads / "test_workloads.py").write_text(WORKLOADS)
    return [sys.executable, "-m", "webapp.cli", "run", "--custom-benchmarks-dir", str(workloads),
            "--db-path", str(tmp_path / "b.duckdb"), "--results-dir", str(tmp_path / "results"),
            "--no-progressive", *args]


def test_a_run_whose_every_config_fails_exits_1_and_its_json_says_why(tmp_path):
    done = subprocess.run(run_command(tmp_path, "--models", "broken-workload", "--batch-sizes", "1", "2", "--json"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    outcome = msgspec.json.decode(done.stdout, type=RunResults)  # the whole document is a RunResults
    assert outcome.status == "failed" and outcome.results == []
    assert [(f.batch_size, f.status, f.error_type) for f in outcome.failures] == [
        (1, "failed", "RuntimeError"), (2, "failed", "RuntimeError")
    ]
    assert all("cannot be built" in f.error_message for f in outcome.failures)
    assert outcome.config.models == ["broken-workload"] and outcome.config.batch_sizes == [1, 2]
    assert outcome.start_time is not None and outcome.completion_time >= outcome.start_time


def test_the_json_document_of_a_successful_run_holds_every_row(tmp_path):
    done = subprocess.run(run_command(tmp_path, "--models", "sleepy-workload", "--batch-sizes", "1", "2",
                                      "--max-seconds", "0.3", "--json"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert set(document) == set(RunResults.__struct_fields__)
    rows = msgspec.convert(document, RunResults).results
    assert [row.batch_size for row in rows] == [1, 2]
    for row in rows:
        assert row.status == "ok" and row.n_samples > 0
        # A 50 ms sleep per call: the median says so, whatever else the machine does.
        assert row.p50_latency_ms >= 50


@pytest.mark.parametrize(("stop_signal", "exit_status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_cancels_the_run_keeps_what_was_measured_and_exits_130_or_143(
    tmp_path, stop_signal, exit_status
):
    command = run_command(tmp_path, "--models", "sleepy-workload", "--batch-sizes", "1", "2", "3", "4",
                          "--max-seconds", "3", "--json")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=foreground_job)
    deadline = time.monotonic() + 240  # the first config waits for the worker's torch import
    progress = ""
    while "1/4" not in progress:
        assert time.monotonic() < deadline, f"the run never finished a config: {progress}"
        progress += process.stderr.readline()
    process.send_signal(stop_signal)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_status, stderr
    outcome = msgspec.json.decode(stdout, type=RunResults)
    assert outcome.status == "cancelled"
    assert [row.batch_size for row in outcome.results][:1] == [1]
    assert len(outcome.results) < 4
    assert "Traceback" not in stderr
    with Database(tmp_path / "b.duckdb") as db:  # stored as cancelled, not left running
        assert get_run(db, outcome.run_id, RunRecord).status == "cancelled"


def foreground_job() -> None:
    """Run in the child before exec: Ctrl-C's signal as a terminal's foreground job has it. A job a
    shell started in the background (``&``, as CI scripts and agents do) inherits SIGINT ignored,
    and Python then keeps ignoring it, so these tests would test nothing but that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ctrl_c(command: list[str], *, after: str | None = None, delay: float = 0.0) -> subprocess.CompletedProcess:
    """``command`` in a session of its own, as a terminal runs it; then SIGINT to its whole process
    group, as Ctrl-C sends it: once stderr shows ``after``, or ``delay`` seconds after the start."""
    import os

    from tests.integration.cli_process import cli_environment

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env=cli_environment(), preexec_fn=foreground_job)
    seen = ""
    if after is not None:
        deadline = time.monotonic() + 120
        while after not in seen:
            assert time.monotonic() < deadline and process.poll() is None, seen
            seen += process.stderr.readline()
    time.sleep(delay)
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, stdout, seen + stderr)


def test_ctrl_c_while_a_run_starts_exits_130_with_one_line(tmp_path):
    # During the imports (0.3 s), and while planning waits for the worker's torch import (1.5 s,
    # QA's `_ask: with self._run_lock: KeyboardInterrupt`); a 2-core box under load may still be
    # importing at 1.5 s, which must end the same way.
    for delay in (0.3, 1.5):
        done = ctrl_c(run_command(tmp_path, "--models", "bert-tiny", "--batch-sizes", "1", "--max-seconds", "0.3"),
                      delay=delay)
        assert done.returncode == 130, (delay, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.splitlines()[-1] == "interrupted", (delay, done.stderr)
        assert done.stdout == ""


def test_ctrl_c_while_the_server_starts_exits_130_with_one_line(tmp_path):
    command = [sys.executable, "-m", "webapp.cli", "serve", "--port", "0", "--db-path", str(tmp_path / "b.duckdb"),
               "--results-dir", str(tmp_path / "results"), "--log-dir", str(tmp_path / "logs")]
    # Its first line comes just before the app is imported and assembled (QA: "a traceback from
    # inside importlib").
    done = ctrl_c(command, after="benchboard dashboard:", delay=0.2)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.splitlines()[-1] == "interrupted", done.stderr
