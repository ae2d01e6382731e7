"""What hardware this machine has, read from torch and psutil; nothing simulated.

Memory figures are GiB (1024**3 bytes), rounded to two decimals.

The server process never initialises CUDA: a CUDA context costs it about 0.5 GB of
device memory and makes it one more client of the GPU it measures. So GPUs (CUDA,
ROCm, XPU) are detected by a short-lived probe, ``python -m engine.hardware --probe``,
which prints what torch sees there and exits; a torch build without GPU support
skips it. Free device memory comes from NVML (``engine.nvml``) or from the device's
worker, which holds a context anyway. Worker processes call
``detect_in_process()`` and ask torch directly.

The server does not import torch at all (issue 16: ~2 s of every start): it calls
``use_facts_probe()``, and its first question about devices is answered by ``python -m
engine.hardware --facts`` (started early by ``start_facts_probe()``), which prints every device and each one's ``environment()``
as a fresh process of the same interpreter reads them (the defaults a worker starts
with too) and exits. A process that has imported torch already asks it in process as
before: that costs nothing there.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from functools import cache
from importlib import metadata
from typing import Literal

import msgspec
import psutil

from engine import nvml
from engine.errors import UnknownHardwareError
from engine.precision import supported_precisions

GIB = 1024**3
PROBE_TIMEOUT_S = 120
# The ISA extensions that change what a CPU kernel runs (bf16/fp16/int8 paths above all).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8")

log = logging.getLogger(__name__)
_in_process = False  # True in workers and in the probe: they may initialise the device


HardwareType = Literal["cpu", "cuda", "rocm", "mps", "xpu"]


class HardwareInfo(msgspec.Struct, kw_only=True):
    """A detected device, as GET /hardware lists it and hardware_platforms stores it."""

    name: str  # "cpu", "cuda:0", "mps", "xpu:0": what a request names
    type: HardwareType
    device: str  # the device's own name, e.g. "NVIDIA A100-SXM4-80GB"
    memory_gb: float
    physical_cores: int | None = None
    logical_cores: int | None = None
    compute_units: int | None = None  # SMs on CUDA, compute units on ROCm/XPU, physical cores on CPU
    compute_capability: str | None = None  # "8.6" on CUDA, the gfx arch on ROCm
    driver_version: str | None = None
    cuda_version: str | None = None  # the HIP version on ROCm
    precisions: list[str] = []
    torch_device: str = "cpu"  # what torch.device() accepts
    uuid: str | None = None  # the GPU's UUID ("GPU-..."), how NVML finds it
    # A Ray cluster's device (issue 13): its node's name (name is "NODE/DEVICE"), the node's
    # hostname, and whether the node is in the cluster now. None, None, True for this machine's.
    node: str | None = None
    host: str | None = None
    alive: bool = True


class MachineFacts(msgspec.Struct, kw_only=True):
    """What ``python -m engine.hardware --facts`` prints: detect_hardware() and, by device name,
    environment(device), read in a process that may ask torch anything."""

    hardware: list[HardwareInfo]
    environments: dict[str, dict]


_adopted: list[HardwareInfo] | None = None  # what adopt_hardware took
_by_facts_probe = False  # True in the server: see use_facts_probe
_probed_environments: dict[str, dict] = {}  # the facts probe's answer, where detection came from it
_started_probe: subprocess.Popen | None = None  # start_facts_probe's, until detection collects it
# Requests detect hardware from several threads; one probe answers them all.
_detection_lock = threading.RLock()


def detect_hardware() -> list[HardwareInfo]:
    """Every device torch can use here, the CPU first. Cached: devices do not come and go."""
    with _detection_lock:
        return _detected()


@cache
def _detected() -> list[HardwareInfo]:
    global _probed_environments
    _probed_environments = {}
    if _adopted is not None:
        return list(_adopted)
    if _by_facts_probe and not _in_process and (_started_probe is not None or "torch" not in sys.modules):
        try:
            facts = run_facts_probe()
        except subprocess.TimeoutExpired as error:
            # A device runtime that hangs would hang the GPU probe as long again.
            log.warning(
                "hardware facts probe timed out after %s seconds and was killed; GPUs are not "
                "probed again, so only the CPU is listed", error.timeout,
            )
            return [_cpu(), *_mps()]
        if facts is not None:
            _probed_environments = facts.environments
            return list(facts.hardware)
    return [_cpu(), *_gpus(), *_mps()]


detect_hardware.cache_clear = _detected.cache_clear  # the cache callers (and tests) clear


def use_facts_probe() -> None:
    """Learn this process's devices and their environments from ``python -m engine.hardware
    --facts`` instead of importing torch here (the server, issue 16). Where torch is imported
    already (a test that fakes a GPU in process, a CLI that loaded a checkpoint), or the probe
    fails (logged), detection asks torch in process as before."""
    global _by_facts_probe
    _by_facts_probe = True
    detect_hardware.cache_clear()


def adopt_hardware(devices: list[HardwareInfo]) -> None:
    """Take ``devices``, which a worker of this machine detected (the same torch, in a process
    that may initialise the devices), as this process's: the CLI then plans and schedules
    without importing torch (issue 16)."""
    global _adopted
    _adopted = list(devices)
    detect_hardware.cache_clear()


def detect_in_process() -> None:
    """Let this process ask torch about GPUs itself (workers and the probe, never the server)."""
    global _in_process
    _in_process = True
    detect_hardware.cache_clear()


def probe_gpus() -> list[HardwareInfo]:
    """The GPUs torch sees in this process (it initialises the device runtime)."""
    return [*_cuda_devices(), *_xpu_devices()]


def _build_has_gpus() -> bool:
    """Whether this torch build could drive a CUDA, ROCm or XPU device at all."""
    import torch

    return bool(torch.version.cuda or getattr(torch.version, "hip", None) or getattr(torch.version, "xpu", None))


def _gpus() -> list[HardwareInfo]:
    if not _build_has_gpus():
        return []
    if _in_process:
        return probe_gpus()
    return run_probe()


def run_probe() -> list[HardwareInfo]:
    """The GPUs a short-lived ``python -m engine.hardware --probe`` finds; [] when it fails (logged)."""
    what = "GPU detection probe"
    command = [sys.executable, "-m", "engine.hardware", "--probe"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        log.warning("%s did not run: %s", what, error)
        return []
    answer = _probe_answer(what, done.returncode, done.stdout, done.stderr, list[HardwareInfo], "no device list")
    return answer or []


def start_facts_probe() -> None:
    """Start the facts probe now, where detection will use it, so that its torch import overlaps
    the rest of this process's start (the server's: Litestar, DuckDB); the first detection
    collects its answer."""
    global _started_probe
    with _detection_lock:
        if _started_probe is None and not _in_process and "torch" not in sys.modules:
            try:
                _started_probe = _spawn_facts_probe()
            except OSError as error:
                log.warning("hardware facts probe did not start: %s", error)


def discard_facts_probe() -> None:
    """End the probe start_facts_probe started if no detection collected it (a server that stops
    before any question about its devices), so that it outlives neither that server nor, in one
    process (tests), the next one's detection, which would take its stale answer over its own."""
    global _started_probe
    # Not waiting: a detection that holds the lock collects the probe itself.
    if not _detection_lock.acquire(blocking=False):
        return
    try:
        probe, _started_probe = _started_probe, None
    finally:
        _detection_lock.release()
    if probe is not None:
        probe.kill()
        probe.communicate()


def _spawn_facts_probe() -> subprocess.Popen:
    command = [sys.executable, "-m", "engine.hardware", "--facts"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_facts_probe() -> MachineFacts | None:
    """Every device and its environment as ``python -m engine.hardware --facts`` reads them (the
    probe start_facts_probe started, else a new one); None when it fails (logged). Raises
    ``subprocess.TimeoutExpired`` once the probe, past its timeout, is killed."""
    global _started_probe
    what = "hardware facts probe"
    probe, _started_probe = _started_probe, None
    try:
        probe = probe or _spawn_facts_probe()
        try:
            stdout, stderr = probe.communicate(timeout=PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            probe.kill()
            probe.communicate()
            raise
    except subprocess.TimeoutExpired:
        raise
    except (OSError, subprocess.SubprocessError) as error:
        log.warning("%s did not run: %s", what, error)
        return None
    return _probe_answer(what, probe.returncode, stdout, stderr, MachineFacts, "no facts")


def _probe_answer(what: str, returncode: int, stdout: str, stderr: str, answer_type: type, nothing: str):
    """A probe's last printed line decoded as ``answer_type``; None, logged naming ``what``, when
    the probe failed or printed something else."""
    if returncode != 0:
        log.warning("%s failed (exit %s): %s", what, returncode, stderr.strip()[-500:])
        return None
    try:
        return msgspec.json.decode(stdout.strip().splitlines()[-1], type=answer_type)
    except (IndexError, msgspec.DecodeError) as error:
        log.warning("%s answered %s (%s): %r", what, nothing, error, stdout[-500:])
        return None


def hardware_names() -> list[str]:
    return [hw.name for hw in detect_hardware()]


def get_hardware(name: str) -> HardwareInfo:
    """The device a (possibly shorthand) name means, e.g. "cuda" is cuda:0."""
    return _by_name()[resolve_hardware([name])[0]]


def resolve_hardware(names: list[str]) -> list[str]:
    """Canonical names for ``names``, deduplicated in order; refuses any that is not present."""
    present = _by_name()
    resolved: list[str] = []
    for raw in names:
        canonical = _canonical(str(raw).strip().lower())
        if canonical not in present:
            raise UnknownHardwareError(raw, list(present))
        if canonical not in resolved:
            resolved.append(canonical)
    return resolved


def free_memory_bytes(name: str, ask_worker: Callable[[], int | None] | None = None) -> int:
    """Memory a new model could use on the device now, without a CUDA context in this process:
    NVML for NVIDIA GPUs, else ``ask_worker`` (the device's worker, which has a context), else
    the device's total memory (logged: nothing better is known)."""
    hw = get_hardware(name)
    if hw.type not in ("cuda", "rocm", "xpu"):
        # CPU memory, and MPS, whose memory is the machine's unified memory.
        return int(psutil.virtual_memory().available)
    if hw.type == "cuda":
        free = nvml.free_memory_bytes(nvml.device_handle(hw.uuid, _device_index(hw)))
        if free is not None:
            return free
    if ask_worker is not None:
        free = ask_worker()
        if free is not None:
            return int(free)
    log.warning("free memory of %s is unknown (no NVML, no worker answer); assuming its total", name)
    return int(hw.memory_gb * GIB)


def device_free_memory_bytes(hw: HardwareInfo) -> int:
    """Free memory of ``hw`` asked of torch in this process: for workers, which hold a device context."""
    import torch

    if hw.type in ("cuda", "rocm"):
        free, _total = torch.cuda.mem_get_info(torch.device(hw.torch_device))
        return int(free)
    if hw.type == "xpu":
        free, _total = torch.xpu.mem_get_info(torch.device(hw.torch_device))
        return int(free)
    return int(psutil.virtual_memory().available)


def _device_index(hw: HardwareInfo) -> int | None:
    _, _, index = hw.torch_device.partition(":")
    return int(index) if index.isdigit() else None


def environment(hardware_name: str) -> dict:
    """The facts that change what a measurement on ``hardware_name`` means (for the fingerprint).

    torch's numeric flags are read here, in a process that never changes them, and the
    workers run with the same defaults; none of the reads initialises CUDA. Planning adds
    what a run chooses: its thread count and measurement settings. Where the facts probe
    detected the devices (use_facts_probe), it read them the same way in its own process.
    """
    hw = get_hardware(hardware_name)
    if hw.name in _probed_environments:
        return dict(_probed_environments[hw.name])
    import torch

    return {
        "hardware": hw.name,
        "hardware_type": hw.type,
        "device_name": hw.device,
        "driver_version": hw.driver_version,
        "cuda_version": hw.cuda_version,
        "compute_capability": hw.compute_capability,
        "benchboard_version": _version("benchboard"),
        "torch_version": str(torch.__version__),  # a TorchVersion, which msgspec does not encode
        "transformers_version": _version("transformers"),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_capability": _cpu_capability(),
        "quantized_engine": str(torch.backends.quantized.engine),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "default_threads": torch.get_num_threads(),
    }


@cache
def cpu_flags() -> list[str]:
    """Which of ``CPU_FLAGS`` this CPU has (Linux /proc/cpuinfo; [] where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    present = set(value.split())
                    return [flag for flag in CPU_FLAGS if flag in present]
    except OSError:
        pass
    return []


def _cpu_capability() -> str | None:
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return None


def _by_name() -> dict[str, HardwareInfo]:
    return {hw.name: hw for hw in detect_hardware()}


def _canonical(name: str) -> str:
    if name in ("cuda", "xpu"):
        return f"{name}:0"
    if name == "rocm" or name.startswith("rocm:"):
        # ROCm devices are cuda:N to torch; "rocm" alone means the first of them.
        rocm = [hw.name for hw in detect_hardware() if hw.type == "rocm"]
        if name == "rocm":
            return rocm[0] if rocm else name
        index = name.partition(":")[2]
        return f"cuda:{index}" if f"cuda:{index}" in rocm else name
    return name


def _cpu() -> HardwareInfo:
    logical = psutil.cpu_count(logical=True) or os.cpu_count()
    physical = psutil.cpu_count(logical=False) or logical
    return HardwareInfo(
        name="cpu",
        type="cpu",
        device=_cpu_model(),
        memory_gb=round(psutil.virtual_memory().total / GIB, 2),
        physical_cores=physical,
        logical_cores=logical,
        compute_units=physical,
        precisions=supported_precisions("cpu"),
        torch_device="cpu",
    )


def _cuda_devices() -> list[HardwareInfo]:
    import torch

    if not torch.cuda.is_available():
        return []
    on_hip = bool(getattr(torch.version, "hip", None))
    devices = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        kind = "rocm" if on_hip else "cuda"
        if on_hip:
            capability = (getattr(props, "gcnArchName", "") or "").split(":")[0] or None
        else:
            capability = f"{props.major}.{props.minor}"
        devices.append(
            HardwareInfo(
                name=f"cuda:{index}",
                type=kind,
                device=props.name,
                memory_gb=round(props.total_memory / GIB, 2),
                compute_units=props.multi_processor_count,
                compute_capability=capability,
                driver_version=_amd_driver_version() if on_hip else _nvidia_driver_version(),
                cuda_version=torch.version.hip if on_hip else torch.version.cuda,
                precisions=supported_precisions(kind, {"compute_capability": capability}),
                torch_device=f"cuda:{index}",
                uuid=_uuid(props),
            )
        )
    return devices


def _mps() -> list[HardwareInfo]:
    import torch

    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        return []
    return [
        HardwareInfo(
            name="mps",
            type="mps",
            device=f"Apple GPU ({_cpu_model()})",
            memory_gb=round(psutil.virtual_memory().total / GIB, 2),  # unified memory
            precisions=supported_precisions("mps"),
            torch_device="mps",
        )
    ]


def _xpu_devices() -> list[HardwareInfo]:
    import torch

    xpu = getattr(torch, "xpu", None)
    if xpu is None or not xpu.is_available():
        return []
    devices = []
    for index in range(xpu.device_count()):
        props = xpu.get_device_properties(index)
        devices.append(
            HardwareInfo(
                name=f"xpu:{index}",
                type="xpu",
                device=props.name,
                memory_gb=round(props.total_memory / GIB, 2),
                compute_units=getattr(props, "max_compute_units", None),
                driver_version=getattr(props, "driver_version", None),
                precisions=supported_precisions("xpu"),
                torch_device=f"xpu:{index}",
            )
        )
    return devices


@cache
def _cpu_model() -> str:
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
                for line in cpuinfo:
                    # x86 says "model name"; some Arm kernels say "Model" or nothing at all.
                    key, _, value = line.partition(":")
                    if key.strip() in ("model name", "Model") and value.strip():
                        return value.strip()
        except OSError:
            pass
    if sys.platform == "darwin":
        try:
            brand = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
            if brand:
                return brand
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown cpu"


def _nvidia_driver_version() -> str | None:
    # The kernel module states the driver version; torch only knows the CUDA driver API level.
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8") as version:
            match = re.search(r"Kernel Module\s+(\S+)", version.read())
    except OSError:
        return None
    return match.group(1) if match else None


def _amd_driver_version() -> str | None:
    try:
        with open("/sys/module/amdgpu/version", encoding="utf-8") as version:
            return version.read().strip() or None
    except OSError:
        return None


def _uuid(props) -> str | None:
    uuid = getattr(props, "uuid", None)
    if uuid is None:
        return None
    text = str(uuid)
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _probe_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.hardware", description="Print the GPUs torch sees, or every device's facts, as JSON."
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--probe", action="store_true", help="detect GPUs in this process and exit")
    mode.add_argument("--facts", action="store_true", help="detect every device and its environment, and exit")
    args = parser.parse_args(argv)
    detect_in_process()
    if args.facts:
        devices = detect_hardware()
        answer = MachineFacts(hardware=devices, environments={hw.name: environment(hw.name) for hw in devices})
    else:
        answer = probe_gpus()
    sys.stdout.write(msgspec.json.encode(answer).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_probe_main())
