"""A long-lived measurement process for one device, driven by JSON lines.

    python -m engine.worker --device cpu [--models-dir D] [--custom-benchmarks-dir D]

torch is imported once, when the worker starts, not once per config. The
worker prints ``{"event": "ready", "pid", "device", "torch_version"}``, then
answers one JSON object per stdin line (the Structs of ``engine.worker_protocol``):

* ``{"op": "run", "job_id": ID, "job": Job}`` -> ``{"event": "started", "job_id": ID}``,
  then ``{"event": "result", "job_id": ID, "result": Measurement}``
* ``{"op": "ping"}`` -> ``{"event": "pong"}``
* ``{"op": "memory"}`` -> ``{"event": "memory", "free_bytes": N}``: the device's free memory,
  which the server asks here (or of NVML) so that it never opens a CUDA context itself
* ``{"op": "shutdown"}``, or the end of stdin -> exit 0
* anything else -> ``{"event": "error", "message": ...}``; the worker lives on.

Stdout carries protocol lines only: at start the real stdout is kept on a
private descriptor and descriptor 1 is pointed at stderr, so whatever a library
prints, from Python or from C, lands on stderr.

Built models are not cached across jobs. A cached model would keep the load
time of its first build, but the next config's first call would no longer be
cold, and its weights would already sit in memory, so its cold latency and
peak memory would both be wrong. A fresh build per config costs a fraction of
the per-config time budget even at base sizes. The first config of an
architecture in a worker still pays for importing that architecture's
transformers module (a few hundred ms for the first, tens for later ones).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
import threading
import time
from functools import cache
from typing import TextIO

import msgspec
import torch

from engine import worker_protocol as protocol
from engine.errors import EngineError
from engine.hardware import detect_hardware, detect_in_process, device_free_memory_bytes, environment, get_hardware
from engine.measurement import failure_result, measure
from engine.models.registry import ModelRegistry


class Worker:
    def __init__(self, device: str, out: TextIO, models_dir: str | None, custom_benchmarks_dir: str | None):
        self.device = device  # reported in "ready"; each job names its own hardware, which measure() resolves
        self._out = out
        self._default_dirs = (models_dir, custom_benchmarks_dir)
        # Read before any job changes torch's settings (its thread count): what planning records.
        self._environment = environment(device)

    def serve(self, lines) -> None:
        self._send(protocol.Ready(pid=os.getpid(), device=self.device, torch_version=str(torch.__version__)))
        for line in lines:
            if not line.strip():
                continue
            if not self._handle(line):
                return

    def _handle(self, line: str) -> bool:
        """Answer one request line; False when the worker should exit."""
        try:
            request = protocol.request_decoder.decode(line)
        except msgspec.DecodeError as error:
            excerpt = line.strip()[:200]
            self._send(protocol.WorkerError(message=f"not a request ({error}): {excerpt}"))
            return True
        if isinstance(request, protocol.Shutdown):
            return False
        if isinstance(request, protocol.Ping):
            self._send(protocol.Pong())
        elif isinstance(request, protocol.MemoryQuery):
            self._send(protocol.MemoryInfo(free_bytes=self._free_memory()))
        elif isinstance(request, protocol.PlanQuery):
            self._send(self._plan_facts(request))
        else:
            self._run(request)
        return True

    def _run(self, request: protocol.RunJob) -> None:
        job = request.job
        self._send(protocol.Started(job_id=request.job_id))
        try:
            registry = self._registry(job)
        except Exception as exc:  # noqa: BLE001 - a broken models folder fails this job, not the worker
            result = failure_result(job.config, exc)
        else:
            result = measure(job, registry)
        # measure() ends with a full collection, so what is still tracked now lives on: the
        # modules and caches the config's model brought in (~10,000 objects for the built-ins).
        # Frozen like the imports at start, they are skipped by every later collection: ~5 ms a
        # config otherwise (perf/sweep_overhead.py, issue 16). Frozen objects that die later are
        # still freed by refcount; only a cycle among them would wait. The frozen set stops
        # growing once each model has run (the same 12-config sweep, five times: no growth).
        gc.freeze()
        self._send(protocol.JobResult(job_id=request.job_id, result=result))

    def _plan_facts(self, query: protocol.PlanQuery) -> protocol.PlanFacts:
        """What planning needs of torch and transformers (issue 16), from this process's registry."""
        facts = protocol.PlanFacts(hardware=detect_hardware(), environment=self._environment)
        try:
            registry = _registry(*self._default_dirs)
            names = registry.resolve(query.models) if query.models is not None else registry.tier(query.priority)
            specs = [registry.get(name) for name in names]
        except Exception as error:  # noqa: BLE001 - the registry's refusal is the answer, planning reports it
            facts.models_error = str(error)
            return facts
        facts.models = [
            protocol.PlannedModel(info=spec.describe(), parameters_million=spec.parameters_million,
                                  image_size=spec.image_size, chooses_attention=spec.chooses_attention)
            for spec in specs
        ]
        return facts

    def _free_memory(self) -> int | None:
        try:
            return device_free_memory_bytes(get_hardware(self.device))
        except Exception:  # noqa: BLE001 - an unanswerable question must not end the worker
            return None

    def _registry(self, job) -> ModelRegistry:
        default_models, default_custom = self._default_dirs
        return _registry(job.models_dir or default_models, job.custom_benchmarks_dir or default_custom)

    def _send(self, message) -> None:
        self._out.write(protocol.encode(message).decode() + "\n")
        self._out.flush()


@cache
def _registry(models_dir: str | None, custom_benchmarks_dir: str | None) -> ModelRegistry:
    # Discovering local checkpoints and custom files once per folder pair, not once per job.
    return ModelRegistry(models_dir=models_dir, custom_benchmarks_dir=custom_benchmarks_dir)


def _protocol_stream() -> TextIO:
    """The real stdout, for protocol lines; descriptor 1 (and sys.stdout) become stderr."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", encoding="utf-8")


def _exit_with_parent(poll_seconds: float = 0.5) -> None:
    """End this process as soon as the server that started it is gone.

    Stdin's end tells the worker only between configs; a server killed mid-config would
    otherwise leave an orphan measuring on, skewing the restarted server's results.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--device", required=True, help='hardware name, e.g. "cpu" or "cuda:0"')
    parser.add_argument("--models-dir")
    parser.add_argument("--custom-benchmarks-dir")
    args = parser.parse_args(argv)
    out = _protocol_stream()
    detect_in_process()  # a worker owns its device's context: it asks torch directly
    try:
        hardware = get_hardware(args.device)
    except EngineError as exc:
        print(f"engine.worker: {exc}", file=sys.stderr)
        return 2
    # One-time costs of the process, paid before "ready" so that they do not land
    # in the first config's load time: the device context (CUDA's takes a second
    # or more) and transformers' shared model machinery (about 1.5 s to import).
    torch.zeros(1, device=hardware.torch_device)
    importlib.import_module("transformers.modeling_utils")
    # The auto classes' name tables, which engine.models.hf reads for a checkpoint's class and
    # kind; imported here as they were when engine.models imported them at its own import.
    importlib.import_module("transformers.models.auto.modeling_auto")
    # torch and transformers leave ~350,000 long-lived objects; frozen, the collections
    # between configs skip them (0.4 s a config otherwise).
    gc.collect()
    gc.freeze()
    _exit_with_parent()
    Worker(hardware.name, out, args.models_dir, args.custom_benchmarks_dir).serve(sys.stdin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
