"""A server starts, lists its models and devices, and plans and runs a run without importing torch
or transformers (issue 16: they were ~3 s of every start). Its answers are the ones a server that
has both imported gives, and the environment it stores for a run, key for key, is that one's too.

Each server runs in a fresh process, so that its sys.modules holds only what it imported itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import msgspec
import torch
import transformers

from engine.models.builtin import TINY_ENCODER
from engine.models.registry import ModelRegistry
from engine.runs import RunRecord
from storage import runs as run_rows
from storage.database import Database
from tests.integration.server import REPO_ROOT

# create_app, its startup, GET models and hardware, two refused runs and one measured to its end;
# argv: the root folder, and "preimported" to import torch and transformers first (the server as
# it was: those already imported, the registry and detection ask them in process).
SERVER = """
import json, sys, time
if sys.argv[2] == "preimported":
    import torch, transformers
from litestar.testing import TestClient
from webapp.app import create_app
from webapp.wiring.settings import Settings

root = sys.argv[1]
settings = Settings(db_path=root + "/b.duckdb", results_dir=root + "/results", log_dir=root + "/logs",
                    prestart_workers=False, max_seconds=0.3, allowed_hosts=["testserver.local"])
answers = {}
with TestClient(create_app(settings)) as client:
    answers["started"] = [m for m in ("torch", "transformers") if m in sys.modules]
    answers["models"] = client.get("/api/benchmark/models").json()
    answers["hardware"] = client.get("/api/benchmark/hardware").json()
    answers["refused"] = []
    for body in ({"models": ["no-such-model"]}, {"models": ["bert-tiny"], "hardware": ["cuda:97"]}):
        refused = client.post("/api/benchmark/run", json=body)
        answers["refused"].append([refused.status_code, refused.json()])
    accepted = client.post("/api/benchmark/run", json={"models": ["bert-tiny"], "hardware": ["cpu"], "batch_sizes": [1]})
    answers["accepted"] = accepted.status_code
    run_id = answers["run_id"] = accepted.json()["run_id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = client.get(f"/api/benchmark/status/{run_id}").json()["status"]
        if status not in ("queued", "running"):
            break
        time.sleep(0.1)
    answers["status"] = status
answers["imported"] = [m for m in ("torch", "transformers") if m in sys.modules]
print(json.dumps(answers))
"""


def serve(root, mode: str) -> dict:
    root.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith("BENCHBOARD_")}
    done = subprocess.run([sys.executable, "-c", SERVER, str(root), mode], capture_output=True, text=True,
                          timeout=600, cwd=REPO_ROOT, env={**env, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    with Database(str(root / "b.duckdb")) as db:
        answers["record"] = run_rows.get_run(db, answers["run_id"], RunRecord)
    return answers


def test_a_server_starts_lists_plans_and_runs_without_torch_or_transformers_and_answers_as_before(tmp_path):
    lean = serve(tmp_path / "lean", "lean")
    assert lean["started"] == [] and lean["imported"] == [], lean["imported"]
    assert lean["accepted"] == 202 and lean["status"] == "completed"

    # The same requests to a server that has both imported: it asks them in process, as before.
    before = serve(tmp_path / "preimported", "preimported")
    assert before["imported"] == ["torch", "transformers"]
    assert before["accepted"] == 202 and before["status"] == "completed"

    # The listing is what the registry describes where transformers is imported (this process).
    assert lean["models"] == before["models"] == [msgspec.to_builtins(spec.describe()) for spec in ModelRegistry().list()]
    assert lean["hardware"] == before["hardware"]
    assert [hw["name"] for hw in lean["hardware"]][0] == "cpu"
    assert lean["refused"] == before["refused"]
    assert [(status, body["field"]) for status, body in lean["refused"]] == [(400, "models"), (400, "hardware")]

    stored, stored_before = lean["record"].environment, before["record"].environment
    assert list(stored) == ["cpu"]
    assert stored == stored_before
    assert list(stored["cpu"]) == list(stored_before["cpu"])  # the same keys, in the same order
    assert lean["record"].fingerprint == before["record"].fingerprint


# create_app and its startup with a models_dir; prints what got imported.
STARTED = """
import json, sys
from litestar.testing import TestClient
from webapp.app import create_app
from webapp.wiring.settings import Settings

root = sys.argv[1]
settings = Settings(db_path=root + "/b.duckdb", results_dir=root + "/results", log_dir=root + "/logs",
                    models_dir=root + "/models", prestart_workers=False, allowed_hosts=["testserver.local"])
with TestClient(create_app(settings)) as client:
    print(json.dumps([m for m in ("torch", "transformers") if m in sys.modules]))
"""


def imported_at_start(root) -> list[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("BENCHBOARD_")}
    done = subprocess.run([sys.executable, "-c", STARTED, str(root)], capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT, env={**env, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_server_with_checkpoints_imports_both_as_it_starts_before_it_freezes_its_objects(tmp_path):
    # Listing a checkpoint reads its config with transformers and counts its parameters with torch;
    # imported at start, their objects are frozen with the app's, out of every garbage collection.
    (tmp_path / "models").mkdir()
    assert imported_at_start(tmp_path) == []  # an empty models folder: nothing to list but built-ins
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(**TINY_ENCODER)).save_pretrained(tmp_path / "models" / "my-bert")
    assert imported_at_start(tmp_path) == ["torch", "transformers"]


def test_a_server_that_stops_before_any_question_about_devices_ends_its_facts_probe(tmp_path, monkeypatch):
    # create_app starts the probe; a server that never asks about its devices must not leave it
    # behind for a later server of the same process (a test's), whose detection would take that
    # stale answer over its own.
    from litestar.testing import TestClient

    from engine import hardware
    from webapp.app import create_app
    from webapp.wiring.settings import Settings

    probe = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    monkeypatch.setattr(hardware, "_started_probe", probe)  # as create_app's start_facts_probe leaves it
    try:
        settings = Settings(db_path=str(tmp_path / "b.duckdb"), results_dir=str(tmp_path / "results"),
                            log_dir=str(tmp_path / "logs"), prestart_workers=False, resume=False,
                            allowed_hosts=["testserver.local"])
        with TestClient(create_app(settings)) as client:
            assert client.get("/api/benchmark/models").status_code == 200  # no question about devices
        assert hardware._started_probe is None
        assert probe.poll() is not None  # ended and reaped, not left running
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.communicate()
