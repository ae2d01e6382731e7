"""Settings for the whole suite.

Ways to run it (see also tests/README.md):

- ``python -m pytest -n 2 --dist loadfile`` (the README's command): unit, integration, then browser
  tests, in two pytest-xdist processes that each take whole files (tests/README.md).
- ``BENCHBOARD_TEST_FAKE_CUDA=1 python -m pytest tests/unit tests/integration``: as on a machine
  with a GPU. In the pytest process, ``torch.cuda.is_available()`` answers True and one fake
  CUDA device (``FAKE_GPU`` below) is detected as ``cuda:0``, for detection only: nothing is
  ever measured on it, and the processes the tests start (servers, workers, the CLI) keep the
  machine's real torch. A test that assumes no GPU is present fails under it.

No test may write into ``./results`` of the working directory (every test writes to tmp dirs):
the session fails if that folder gains an entry.

This file imports only the stdlib and pytest (torch only under BENCHBOARD_TEST_FAKE_CUDA; the SQL
module only where a test has loaded it already), so the client-only CI run (.ci/run) loads it unchanged.
"""

import os
import sys
from pathlib import Path

import pytest

# No model hub here: every model is built from a config or loaded from a local folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FAKE_CUDA_VARIABLE = "BENCHBOARD_TEST_FAKE_CUDA"
GIB = 1024**3


def fake_cuda_for_detection() -> None:
    """torch in this process reports one CUDA device, the way a GPU machine's torch does:
    is_available, device_count and get_device_properties, and a CUDA build version. The
    server-side GPU probe (``python -m engine.hardware --probe``, a subprocess these patches
    would not reach) is answered in process from the same fake; tests that mock the probe
    themselves still do. Nothing that runs a model on the device is faked."""
    import subprocess
    from types import SimpleNamespace

    import msgspec
    import torch

    from engine import hardware

    fake_gpu = SimpleNamespace(
        name="Fake GPU (BENCHBOARD_TEST_FAKE_CUDA)", total_memory=80 * GIB, multi_processor_count=132,
        major=9, minor=0,
    )

    def get_device_properties(device=None):
        index = device.index if isinstance(device, torch.device) else device
        if index not in (None, 0):
            raise AssertionError(f"invalid device ordinal {index}: one fake GPU")
        return fake_gpu

    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: 1
    torch.cuda.get_device_properties = get_device_properties
    torch.version.cuda = torch.version.cuda or "12.4"

    def run(command, *args, **kwargs):
        if list(command[1:]) == ["-m", "engine.hardware", "--probe"]:
            answer = msgspec.json.encode(hardware.probe_gpus()).decode() + "\n"
            return subprocess.CompletedProcess(command, 0, stdout=answer, stderr="")
        return subprocess.run(command, *args, **kwargs)

    # engine.hardware's own view of the subprocess module; every other caller keeps the real one.
    hardware.subprocess = SimpleNamespace(**{**vars(subprocess), "run": run})
    hardware.detect_hardware.cache_clear()


if os.environ.get(FAKE_CUDA_VARIABLE) == "1":
    fake_cuda_for_detection()


@pytest.fixture(autouse=True)
def guarded_sql_at_the_tests_priority(request, monkeypatch):
    """Guarded SQL run in this process (the storage tests, in-process servers) runs at the test
    process's own priority, except in test_sql_priority.py, which checks that the SQL pool's
    threads lower themselves to nice 19.

    That priority is so a server's handlers preempt guarded SQL. On a 2-core CI machine whose
    cores are both kept busy at nice 0 (the other test process, a spinner), a nice-19 thread
    gets about 1.5% of a core: a query that takes milliseconds runs past its 5 s limit (a
    DROP answered "interrupted after 5 s" instead of refused), and an interrupted one holds
    its pool slot long after its caller was answered. These tests check what the guard
    answers, not the priority. Server processes the tests start keep the product's nice 19.
    Only where this process has loaded the SQL module (never in the client-only run)."""
    sql_execution = sys.modules.get("storage.sql_execution")
    if sql_execution is None or request.module.__name__.endswith("test_sql_priority"):
        yield
        return
    monkeypatch.setattr(sql_execution, "_lower_priority", lambda: None)
    # An earlier test may have started the pool's threads at nice 19, and raising a thread back
    # needs privilege; resizing an idle pool drops its threads, so the next query starts fresh
    # ones at this priority. A pool still busy (a query past its deadline, stopping) keeps them.
    pool = sql_execution.SQL_POOL
    if pool.wait_idle(timeout_s=10):
        size = pool.size
        pool.resize(size + 1)
        pool.resize(size)
    yield


def _results_entries() -> set[str]:
    folder = Path.cwd() / "results"
    return {entry.name for entry in folder.iterdir()} if folder.is_dir() else set()


def pytest_sessionstart(session):
    session.config._results_before = _results_entries()


def pytest_sessionfinish(session, exitstatus):
    written = _results_entries() - getattr(session.config, "_results_before", set())
    if written:
        print(f"\nerror: tests wrote into {Path.cwd() / 'results'}: {', '.join(sorted(written))} "
              "(tests write only to tmp dirs)")
        session.exitstatus = 1


def pytest_report_header(config):
    if os.environ.get(FAKE_CUDA_VARIABLE) == "1":
        return f"{FAKE_CUDA_VARIABLE}=1: torch.cuda reports one fake device (cuda:0), for detection only"
    return None


def pytest_collection_modifyitems(items):
    # Playwright's sync API keeps an asyncio loop running in the main thread for as long
    # as its session-scoped browser lives, which breaks every asyncio test collected after
    # it. So the browser tests run last (a stable sort keeps every other order).
    items.sort(key=lambda item: "browser" in item.keywords)


def pytest_configure(config):
    # Under pytest-xdist (-n 2 --dist loadfile) files are handed out in collection order, so each
    # process runs its browser files after all its others. xdist's default would hand them out
    # biggest file first, and an asyncio test could then run after a browser file in one process.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False
