import json
import platform
from importlib import metadata
from types import SimpleNamespace

import msgspec
import psutil
import pytest
import torch

from engine import hardware, nvml
from engine.errors import UnknownHardwareError
from engine.hardware import GIB, detect_hardware, environment, free_memory_bytes, resolve_hardware


@pytest.fixture
def fresh_detection(monkeypatch):
    """Detection is cached per process; tests that fake a GPU must not leak it into others.
    Detection here is the worker's kind, in-process (the server's goes through a probe)."""
    monkeypatch.setattr(hardware, "_in_process", True)
    detect_hardware.cache_clear()
    yield
    detect_hardware.cache_clear()


def test_cpu_is_detected_first_with_the_machines_real_facts():
    cpu = detect_hardware()[0]
    assert (cpu.name, cpu.type, cpu.torch_device) == ("cpu", "cpu", "cpu")
    assert cpu.logical_cores == psutil.cpu_count(logical=True)
    assert 1 <= cpu.physical_cores <= cpu.logical_cores
    assert cpu.memory_gb == round(psutil.virtual_memory().total / GIB, 2)
    assert cpu.device and cpu.device != "unknown cpu"
    assert cpu.precisions[0] == "fp32"


def test_the_hardware_struct_is_json_and_names_device_memory_and_capabilities():
    described = json.loads(msgspec.json.encode(detect_hardware()[0]))
    assert (described["name"], described["type"], described["torch_device"]) == ("cpu", "cpu", "cpu")
    assert described["device"] == hardware._cpu_model() and described["device"] not in ("", "unknown cpu")
    # The machine's own facts, as psutil reads them (memory in GiB, rounded to 2 places).
    assert described["memory_gb"] == pytest.approx(psutil.virtual_memory().total / GIB, abs=0.01)
    assert 0.25 < described["memory_gb"] < 64 * 1024  # a quarter GiB to 64 TiB: a plausible machine
    assert described["logical_cores"] == psutil.cpu_count(logical=True) > 0
    assert 0 < described["physical_cores"] <= described["logical_cores"]
    assert described["compute_units"] == described["physical_cores"]  # on a CPU, its physical cores
    assert described["compute_capability"] is None and described["cuda_version"] is None
    assert described["precisions"][0] == "fp32" and set(described["precisions"]) <= {"fp32", "fp16", "bf16", "int8"}
    assert (described["node"], described["host"], described["alive"]) == (None, None, True)  # this machine's
    assert msgspec.json.decode(msgspec.json.encode(detect_hardware()[0]), type=hardware.HardwareInfo) == (
        detect_hardware()[0]
    )


def test_requesting_absent_cuda_is_refused_with_the_list_of_present_hardware():
    # A device index no machine has, so this holds on a GPU box too.
    present = [hw.name for hw in detect_hardware()]
    refusal = f"hardware 'cuda:97' is not present on this machine; present: {', '.join(present)}"
    with pytest.raises(UnknownHardwareError, match=refusal) as err:
        resolve_hardware(["cpu", "cuda:97"])
    assert err.value.available == present


def test_resolve_normalises_spelling_and_drops_duplicates():
    assert resolve_hardware(["cpu", " CPU ", "cpu"]) == ["cpu"]
    with pytest.raises(UnknownHardwareError, match="'tpu'"):
        resolve_hardware(["tpu"])


def test_free_cpu_memory_is_what_psutil_reports_available():
    free = free_memory_bytes("cpu")
    assert 0 < free <= psutil.virtual_memory().total
    assert abs(free - psutil.virtual_memory().available) < 512 * 1024**2


def test_environment_records_the_facts_a_fingerprint_needs():
    env = json.loads(json.dumps(environment("cpu")))
    assert env["torch_version"] == torch.__version__
    assert env["transformers_version"] == metadata.version("transformers")
    assert env["benchboard_version"] == metadata.version("benchboard")
    assert env["python_version"] == platform.python_version()
    assert env["default_threads"] == torch.get_num_threads()  # planning records the job's own count
    assert env["device_name"] == env["cpu_model"] == detect_hardware()[0].device
    assert env["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    assert env["cuda_matmul_allow_tf32"] is torch.backends.cuda.matmul.allow_tf32
    assert env["cudnn_allow_tf32"] is torch.backends.cudnn.allow_tf32
    assert env["cudnn_benchmark"] is torch.backends.cudnn.benchmark
    assert env["quantized_engine"] == torch.backends.quantized.engine
    assert set(env["cpu_flags"]) <= set(hardware.CPU_FLAGS)


def test_cpu_flags_are_the_isa_extensions_that_matter_read_from_cpuinfo():
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        flags = next(line for line in cpuinfo if line.startswith("flags")).split(":")[1].split()
    assert hardware.cpu_flags() == [flag for flag in hardware.CPU_FLAGS if flag in flags]


# No GPU exists on the test machine: these tests fake torch.cuda's answers to check
# how detection reads a CUDA (or ROCm) device, and nothing else.
A100 = SimpleNamespace(
    name="NVIDIA A100-SXM4-80GB", total_memory=80 * GIB, multi_processor_count=108, major=8, minor=0
)
T4 = SimpleNamespace(name="Tesla T4", total_memory=15 * GIB, multi_processor_count=40, major=7, minor=5)
MI250 = SimpleNamespace(
    name="AMD Instinct MI250X", total_memory=64 * GIB, multi_processor_count=110, major=9, minor=0,
    gcnArchName="gfx90a:sramecc+:xnack-",
)  # fmt: skip


class FakeUuid:
    def __str__(self):
        return "58c3f8e2-0000-1111-2222-333344445555"


def fake_gpus(monkeypatch, devices, *, cuda=None, hip=None):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(devices))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: devices[index])
    monkeypatch.setattr(torch.version, "cuda", cuda)
    monkeypatch.setattr(torch.version, "hip", hip)


def test_cuda_devices_are_detected_with_capabilities_from_torch(monkeypatch, fresh_detection):
    fake_gpus(monkeypatch, [A100, T4], cuda="12.4")
    cpu, first, second = detect_hardware()
    assert cpu.name == "cpu"
    assert (first.name, first.type, first.torch_device) == ("cuda:0", "cuda", "cuda:0")
    assert (first.device, first.memory_gb, first.compute_units) == ("NVIDIA A100-SXM4-80GB", 80.0, 108)
    assert (first.compute_capability, first.cuda_version) == ("8.0", "12.4")
    assert first.precisions == ["fp32", "fp16", "bf16"]
    assert (second.compute_capability, second.precisions) == ("7.5", ["fp32", "fp16"])


def test_cuda_shorthand_means_the_first_gpu(monkeypatch, fresh_detection):
    fake_gpus(monkeypatch, [A100, T4], cuda="12.4")
    assert resolve_hardware(["cuda:1", "cuda", "cuda:0"]) == ["cuda:1", "cuda:0"]
    with pytest.raises(UnknownHardwareError, match="present: cpu, cuda:0, cuda:1"):
        resolve_hardware(["cuda:2"])


def test_a_worker_reads_free_cuda_memory_from_mem_get_info(monkeypatch, fresh_detection):
    fake_gpus(monkeypatch, [A100], cuda="12.4")
    asked = []

    def mem_get_info(device):
        asked.append(device)
        return 5 * GIB, 80 * GIB

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    assert hardware.device_free_memory_bytes(hardware.get_hardware("cuda")) == 5 * GIB
    assert asked == [torch.device("cuda:0")]


def test_the_gpu_uuid_is_recorded_as_nvml_names_it(monkeypatch, fresh_detection):
    fake_gpus(monkeypatch, [SimpleNamespace(**vars(A100), uuid=FakeUuid())], cuda="12.4")
    assert detect_hardware()[1].uuid == "GPU-58c3f8e2-0000-1111-2222-333344445555"


def test_a_gpu_on_a_hip_build_is_rocm_named_as_torch_names_it(monkeypatch, fresh_detection):
    fake_gpus(monkeypatch, [MI250], hip="6.2.41133")
    gpu = detect_hardware()[1]
    assert (gpu.name, gpu.type, gpu.torch_device) == ("cuda:0", "rocm", "cuda:0")
    assert (gpu.compute_capability, gpu.cuda_version) == ("gfx90a", "6.2.41133")
    assert gpu.precisions == ["fp32", "fp16", "bf16"]
    assert resolve_hardware(["rocm", "cuda"]) == ["cuda:0"]


def test_rocm_is_refused_on_a_cuda_build(monkeypatch, fresh_detection):
    fake_gpus(monkeypatch, [A100], cuda="12.4")
    with pytest.raises(UnknownHardwareError, match="'rocm'"):
        resolve_hardware(["rocm"])
