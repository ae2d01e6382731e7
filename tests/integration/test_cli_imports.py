"""`benchboard run` with its prestarted worker plans from the worker's answer to a PlanQuery
(issue 16): the CLI process itself imports neither torch nor transformers, and the environment
it stores for the run is the one it would have read itself, key for key and value for value."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
import transformers

from engine.models.builtin import TINY_ENCODER
from engine.runs import RunRecord
from storage import runs as run_rows
from storage.database import Database
from tests.integration.server import REPO_ROOT

# The CLI's main, with a hook that says at exit which of these modules the process imported.
CLI = (
    "import atexit, json, sys\n"
    "HEAVY = ('torch', 'transformers', 'altair', 'pandas')\n"
    "atexit.register(lambda: print('IMPORTED ' + json.dumps([m for m in HEAVY if m in sys.modules]), file=sys.stderr))\n"
    "from webapp.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def run_cli(*args: str, prestart: bool) -> tuple[dict, list[str]]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("BENCHBOARD_")}
    env.update(HF_HUB_OFFLINE="1", BENCHBOARD_PRESTART_WORKERS="1" if prestart else "0")
    done = subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, timeout=600,
                          cwd=REPO_ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = [line for line in done.stderr.splitlines() if line.startswith("IMPORTED ")]
    assert imported, done.stderr[-3000:]
    return json.loads(done.stdout), json.loads(imported[-1].removeprefix("IMPORTED "))


def test_a_run_with_a_worker_imports_neither_torch_nor_transformers_and_stores_the_same_environment(tmp_path):
    torch.manual_seed(0)
    checkpoint = tmp_path / "bert-tiny-ckpt"
    transformers.BertModel(transformers.BertConfig(**TINY_ENCODER)).save_pretrained(checkpoint)
    db_path = tmp_path / "b.duckdb"
    common = ("run", "--models", str(checkpoint), "--batch-sizes", "1", "--max-seconds", "0.3", "--no-incremental",
              "--json", "--db-path", str(db_path), "--results-dir", str(tmp_path / "results"))

    with_worker, imported = run_cli(*common, prestart=True)
    assert with_worker["status"] == "completed"
    assert [(r["model_name"], r["batch_size"]) for r in with_worker["results"]] == [(str(checkpoint), 1)]
    assert "torch" not in imported and "transformers" not in imported, imported
    assert {"altair", "pandas"} <= set(imported)  # the report at the end is written with them, as before

    # The same run planned by the CLI itself (no prestarted worker): it imports both, the hook sees it.
    alone, imported_alone = run_cli(*common, prestart=False)
    assert alone["status"] == "completed"
    assert {"torch", "transformers"} <= set(imported_alone)

    with Database(str(db_path)) as db:
        records = [run_rows.get_run(db, outcome["run_id"], RunRecord) for outcome in (with_worker, alone)]
    planned_by_worker, planned_alone = (record.environment for record in records)
    assert list(planned_by_worker) == ["cpu"]
    assert planned_by_worker == planned_alone
    assert list(planned_by_worker["cpu"]) == list(planned_alone["cpu"])  # the same keys, in the same order
    assert records[0].fingerprint == records[1].fingerprint


def test_a_model_the_worker_cannot_resolve_is_refused_naming_the_field(tmp_path):
    env = {name: value for name, value in os.environ.items() if not name.startswith("BENCHBOARD_")}
    done = subprocess.run(
        [sys.executable, "-m", "webapp.cli", "run", "--models", "no-such-model", "--db-path", str(tmp_path / "b.duckdb"),
         "--results-dir", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, env={**env, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "unknown model 'no-such-model'; available:" in done.stderr
    assert "Traceback" not in done.stderr
