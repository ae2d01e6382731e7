"""The server process never initialises CUDA (issue 10, defect 6).

A CUDA context costs the server about 0.5 GB of device memory and makes it one more
client on the GPU it measures. Detection, the environment, planning and the
scheduler's free-memory check must therefore never call torch.cuda in the server:
GPUs are found by a probe subprocess, free memory comes from NVML or the worker.

No GPU exists here, so the GPU is mocked in the three places a real one would
answer: torch's build says it has CUDA, the probe subprocess answers what it would
print on a GPU machine, and NVML (``pynvml``) is a fake. torch.cuda itself is a
tripwire: any call into it fails the test.
"""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import msgspec
import pytest
import torch

from engine import hardware, nvml
from engine.hardware import GIB, HardwareInfo, detect_hardware, environment, free_memory_bytes, resolve_hardware
from engine.models.registry import ModelRegistry
from engine.planning import plan_run
from engine.runs import RunRequest

PROBED_GPU = HardwareInfo(
    name="cuda:0", type="cuda", device="NVIDIA H100 80GB HBM3", memory_gb=79.1, compute_units=132,
    compute_capability="9.0", cuda_version="12.4", precisions=["fp32", "fp16", "bf16"], torch_device="cuda:0",
    uuid="GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
)
TRIPWIRED = ("is_available", "device_count", "get_device_properties", "mem_get_info", "_lazy_init", "init",
             "set_device", "current_device", "synchronize", "memory_allocated", "is_initialized")


@pytest.fixture
def cuda_calls(monkeypatch):
    """Every call into torch.cuda in this (server) process, each of which also raises."""
    calls = []

    def tripwire(name):
        def called(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"the server process called torch.cuda.{name}")

        return called

    for name in TRIPWIRED:
        monkeypatch.setattr(torch.cuda, name, tripwire(name))
    return calls


@pytest.fixture
def gpu_machine(monkeypatch, cuda_calls):
    """A CUDA build of torch whose probe finds one GPU; the server's detection is fresh."""
    probes = []
    real_run = subprocess.run

    def run(command, *args, **kwargs):
        if command[1:] == ["-m", "engine.hardware", "--probe"]:
            probes.append(command)
            output = msgspec.json.encode([PROBED_GPU]).decode() + "\n"
            return subprocess.CompletedProcess(command, 0, stdout=output, stderr="")
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(hardware.subprocess, "run", run)
    monkeypatch.setattr(hardware, "_in_process", False)
    detect_hardware.cache_clear()
    yield probes
    detect_hardware.cache_clear()


class FakeNvml:
    """pynvml's few functions benchboard calls, for one GPU with 30 GiB free."""

    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0

    def __init__(self):
        self.asked = []

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self.asked.append(uuid)
        if uuid != PROBED_GPU.uuid:
            raise RuntimeError("NVML_ERROR_NOT_FOUND")
        return "handle-0"

    def nvmlDeviceGetHandleByIndex(self, index):
        return f"handle-{index}"

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(free=30 * GIB, total=80 * GIB, used=50 * GIB)


@pytest.fixture
def fake_nvml(monkeypatch):
    fake = FakeNvml()
    monkeypatch.setattr(nvml, "pynvml", fake)
    nvml.available.cache_clear()
    yield fake
    nvml.available.cache_clear()


def test_gpus_are_found_by_a_probe_process_not_by_torch_cuda_here(gpu_machine, cuda_calls):
    found = detect_hardware()
    assert [hw.name for hw in found] == ["cpu", "cuda:0"]
    assert found[1] == PROBED_GPU
    assert resolve_hardware(["cuda"]) == ["cuda:0"]
    assert len(gpu_machine) == 1 and cuda_calls == []


def test_free_gpu_memory_comes_from_nvml_by_uuid(gpu_machine, fake_nvml, cuda_calls):
    assert free_memory_bytes("cuda:0") == 30 * GIB
    assert fake_nvml.asked == [PROBED_GPU.uuid]
    assert cuda_calls == []


def test_without_nvml_free_gpu_memory_is_asked_of_the_worker(gpu_machine, monkeypatch, cuda_calls):
    monkeypatch.setattr(nvml, "pynvml", None)
    nvml.available.cache_clear()
    asked = []
    assert free_memory_bytes("cuda:0", ask_worker=lambda: asked.append(1) or 7 * GIB) == 7 * GIB
    assert asked == [1] and cuda_calls == []
    nvml.available.cache_clear()


def test_environment_and_planning_on_a_gpu_touch_no_cuda(gpu_machine, cuda_calls):
    env = environment("cuda:0")
    assert env["compute_capability"] == "9.0" and "cudnn_allow_tf32" in env
    run = plan_run(RunRequest(models=["bert-tiny"], hardware=["cuda"], batch_sizes=[1, 8]),
                   registry=ModelRegistry(), resolve_hardware=resolve_hardware, environment=environment)
    assert {config.hardware for config in run.configs} == {"cuda:0"}
    assert cuda_calls == []


def test_the_probe_prints_the_gpus_torch_sees_as_json():
    # A real probe process (on a CPU-only build it finds none, and says so as an empty list),
    # against what torch itself counts in another fresh process: this process's torch may be
    # faked (BENCHBOARD_TEST_FAKE_CUDA), a subprocess's never is.
    done = subprocess.run([sys.executable, "-m", "engine.hardware", "--probe"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    probed = msgspec.json.decode(done.stdout.strip().splitlines()[-1], type=list[HardwareInfo])
    count = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout.split()[-1]
    assert [hw.name for hw in probed if hw.type in ("cuda", "rocm")] == [f"cuda:{i}" for i in range(int(count))]


def test_a_failing_probe_leaves_the_cpu_and_says_why(monkeypatch, caplog, cuda_calls):
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(hardware, "_in_process", False)
    monkeypatch.setattr(hardware.subprocess, "run", lambda command, **kwargs: subprocess.CompletedProcess(
        command, 1, stdout="", stderr="RuntimeError: CUDA driver initialization failed"))
    detect_hardware.cache_clear()
    try:
        assert [hw.name for hw in detect_hardware()] == ["cpu"]
    finally:
        detect_hardware.cache_clear()
    assert "CUDA driver initialization failed" in caplog.text
    assert cuda_calls == []
