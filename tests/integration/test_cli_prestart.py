"""`benchboard run` starts its workers as soon as it has parsed its arguments (issue 16), so
that their torch and transformers imports overlap the CLI's own imports and planning; the
parser and the workers' start import nothing heavy; an unused pre-started worker is ended."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from engine.runs import run_request
from webapp.cli.main import prestart_workers
from webapp.wiring.services import Services
from webapp.wiring.settings import Settings

HEAVY = ("torch", "transformers", "duckdb", "scipy", "numpy", "httpx", "pandas", "altair", "ray")


def modules_after(code: str) -> list[str]:
    """The HEAVY modules a fresh interpreter has imported after running ``code``."""
    probe = f"import sys\n{code}\nprint(__import__('json').dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_parser_and_the_prestart_import_nothing_heavy(tmp_path):
    assert modules_after("from webapp.cli.main import build_parser; build_parser()") == []
    # What command_run has done when the workers start: settings, the request, the workers.
    code = (
        "from webapp.cli.main import build_parser, prestart_workers\n"
        "from engine.runs import run_request\n"
        "from webapp.wiring.settings import Settings\n"
        "args = build_parser().parse_args(['run', '--models', 'bert-tiny'])\n"
        "workers = prestart_workers(run_request({'models': args.models}), Settings())\n"
        "assert list(workers) == ['cpu']\n"
        "for worker in workers.values(): worker.close()\n"
    )
    assert modules_after(code) == []


def test_which_runs_get_a_prestarted_worker(tmp_path):
    on = Settings(db_path=str(tmp_path / "b.duckdb"))
    cases = {
        "default hardware": (run_request({}), on, ["cpu"]),
        "cuda names its first device": (run_request({"hardware": ["cpu", "cuda"]}), on, ["cpu", "cuda:0"]),
        "repeats start a worker each": (run_request({"repeats": 3}), on, []),
        "switched off": (run_request({}), Settings(prestart_workers=False), []),
        "a Ray cluster": (run_request({}), Settings(ray_address="127.0.0.1:6379"), []),
    }
    for label, (request, settings, expected) in cases.items():
        workers = prestart_workers(request, settings)
        try:
            assert sorted(workers) == expected, label
        finally:
            for worker in workers.values():
                worker.close()


def test_the_scheduler_measures_with_the_prestarted_worker_and_close_ends_an_unused_one(tmp_path):
    settings = Settings(db_path=str(tmp_path / "b.duckdb"), results_dir=str(tmp_path / "results"), max_seconds=0.2)
    workers = prestart_workers(run_request({"hardware": ["cpu"]}), settings)
    services = Services(settings, workers=workers, allow_model_paths=True)
    try:
        assert services.scheduler.worker("cpu")._worker is workers["cpu"]  # taken, not a second process
        assert workers["cpu"].ping(timeout_s=120)
        pid = workers["cpu"].pid
        run = services.plan(run_request({"models": ["bert-tiny"], "batch_sizes": [1], "force": True}))
        services.scheduler.submit(run)
        services.scheduler.wait(run.run_id, timeout=240)
        outcome = services.run_results(run.run_id)
        assert outcome.status == "completed", outcome
        assert workers["cpu"].pid == pid  # the run used the process started before planning
    finally:
        services.close()

    spare = prestart_workers(run_request({}), settings)["cpu"]
    services = Services(settings, workers={"cpu": spare})
    started = time.monotonic()
    services.close()  # no run took it: ended, even while it is still importing torch
    # Generous bound (a loaded 2-core box): a still-starting worker is killed, not waited for
    # with the 5 s shutdown grace after its imports.
    assert time.monotonic() - started < 30
    assert spare.pid is None
