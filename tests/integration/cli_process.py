"""`benchboard` as a user runs it: the CLI in a fresh subprocess of this interpreter.

    done = benchboard("run", "--models", "bert-tiny", "--db-path", str(tmp_path / "b.duckdb"))
    assert done.returncode == 0, done.stderr

It runs from the repository root, offline, and without the caller's ``BENCHBOARD_*`` variables (a
developer's token, say), the way ``server.py`` starts its servers; ``env`` adds variables of the test's own.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.integration.server import REPO_ROOT

COMMAND = [sys.executable, "-m", "webapp.cli"]


def cli_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("BENCHBOARD_")}
    return {**clean, "HF_HUB_OFFLINE": "1", **(env or {})}


def benchboard(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
                          env=cli_environment(env))
