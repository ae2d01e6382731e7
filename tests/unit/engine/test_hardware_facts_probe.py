"""The server's devices and their environments come from ``python -m engine.hardware --facts``
(issue 16: the server never imports torch): the probe's answer is what detection and
environment() read in process, and a probe that fails leaves in-process detection, with the
reason logged.

This process has imported torch, so detection here would ask it in process; each test hands
detection a started probe, as create_app's start_facts_probe does in a server.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine import hardware
from engine.hardware import detect_hardware, environment

FACTS_COMMAND = [sys.executable, "-m", "engine.hardware", "--facts"]


@pytest.fixture
def server_detection(monkeypatch):
    """Detection as a server's (use_facts_probe), fresh before and after the test."""
    monkeypatch.setattr(hardware, "_in_process", False)
    monkeypatch.setattr(hardware, "_by_facts_probe", True)
    detect_hardware.cache_clear()
    yield
    detect_hardware.cache_clear()


def in_process_cpu(monkeypatch) -> tuple[hardware.HardwareInfo, dict]:
    """The CPU and its environment as this process reads them itself (never a probe's: not a
    server's detection, and no probe an earlier server of this process left)."""
    with monkeypatch.context() as patch:
        patch.setattr(hardware, "_by_facts_probe", False)
        patch.setattr(hardware, "_started_probe", None)
        detect_hardware.cache_clear()
        try:
            return detect_hardware()[0], environment("cpu")
        finally:
            detect_hardware.cache_clear()


def started(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_probes_devices_and_environments_are_what_this_process_reads(monkeypatch):
    # The CPU only: under BENCHBOARD_TEST_FAKE_CUDA this process's torch also reports a fake
    # GPU, which a probe process (real torch) never sees.
    cpu, cpu_environment = in_process_cpu(monkeypatch)
    monkeypatch.setattr(hardware, "_in_process", False)
    monkeypatch.setattr(hardware, "_by_facts_probe", True)
    monkeypatch.setattr(hardware, "_started_probe", started(FACTS_COMMAND))
    detect_hardware.cache_clear()
    try:
        probed = detect_hardware()
        assert hardware._started_probe is None  # collected: one probe answers the process
        assert probed[0] == cpu
        assert environment("cpu") == cpu_environment
        assert list(environment("cpu")) == list(cpu_environment)  # the same keys, in the same order
        assert hardware._probed_environments.keys() == {hw.name for hw in probed}
    finally:
        detect_hardware.cache_clear()


def test_a_failing_probe_leaves_in_process_detection_and_says_why(server_detection, monkeypatch, caplog):
    failing = [sys.executable, "-c", "import sys; print('no torch here', file=sys.stderr); sys.exit(3)"]
    monkeypatch.setattr(hardware, "_started_probe", started(failing))
    found = detect_hardware()
    assert found[0].name == "cpu" and found[0].precisions[0] == "fp32"
    assert hardware._probed_environments == {}
    assert environment("cpu")["torch_version"]  # read from torch here
    assert "hardware facts probe failed (exit 3): no torch here" in caplog.text


def test_a_probe_that_prints_no_facts_is_refused_with_what_it_printed(server_detection, monkeypatch, caplog):
    monkeypatch.setattr(hardware, "_started_probe", started([sys.executable, "-c", "print('[]')"]))
    assert detect_hardware()[0].name == "cpu"
    assert "hardware facts probe answered no facts" in caplog.text and "'[]" in caplog.text


def test_a_process_that_imported_torch_starts_no_probe(monkeypatch):
    # This one has (whichever tests ran before): detection asks torch here, where it costs
    # nothing and a test's fakes apply.
    import torch  # noqa: F401

    monkeypatch.setattr(hardware, "_in_process", False)
    monkeypatch.setattr(hardware, "_started_probe", None)
    hardware.start_facts_probe()
    assert hardware._started_probe is None


def test_a_probe_past_its_timeout_is_killed_and_the_cpu_is_listed_without_a_second_wait(
    server_detection, monkeypatch, caplog,
):
    hung = started([sys.executable, "-c", "import time; time.sleep(120)"])
    monkeypatch.setattr(hardware, "_started_probe", hung)
    monkeypatch.setattr(hardware, "PROBE_TIMEOUT_S", 1)

    def second_probe():
        raise AssertionError("a hung device runtime was probed again")

    monkeypatch.setattr(hardware, "_gpus", second_probe)
    try:
        assert [hw.name for hw in detect_hardware()] == ["cpu"]
        assert hung.returncode is not None  # killed and reaped, not left running
        assert hardware._probed_environments == {}
        assert "hardware facts probe timed out after 1 seconds and was killed" in caplog.text
    finally:
        if hung.poll() is None:
            hung.kill()
            hung.communicate()
