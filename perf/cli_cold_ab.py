"""Interleaved A/B of a cold ``benchboard run`` between two versions of the code (issue 16).

    python perf/cli_cold_ab.py [--a REV] [--b REV] [--rounds 3] [--max-seconds S]

Each side is a git revision, exported with ``git archive`` into a temporary folder, or ``.``
for the working tree as it is (the default B; the default A is HEAD). Both run with this
interpreter (the same torch and transformers), the side's folder first on PYTHONPATH, so the
CLI and the worker it starts run that side's code. Each run is the command of
``perf/vs_optimum_benchmark.py``'s cold wall: ``run --models CKPT --batch-sizes 1 8
--sequence-length 128 --no-incremental --json`` of bert-tiny's sizes saved with
``save_pretrained`` (random weights, seed 0), on a fresh database and results folder each time,
HF_HUB_OFFLINE=1. Sides alternate A B B A ... so drift in the machine's load hits both alike.

Printed per run: the wall (process start to exit), the CLI process's CPU seconds (user + sys
of it and the worker it waited for, from the children's rusage) and which of torch,
transformers, altair and pandas the CLI process itself had imported when it exited (an atexit
hook installed before ``main`` runs: the modules the coordinating process paid for). Then each
side's median wall and B / A. ``uptime`` is printed before and after: on a loaded machine read
the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from perf.vs_optimum_benchmark import make_checkpoint  # noqa: E402  the same checkpoint its cold wall runs
HEAVY = ("torch", "transformers", "altair", "pandas")
# Runs main() with an exit hook that reports which heavy modules this process imported.
CLI = (
    "import atexit, sys\n"
    f"HEAVY = {HEAVY!r}\n"
    "atexit.register(lambda: print('IMPORTED ' + ','.join(m for m in HEAVY if m in sys.modules), file=sys.stderr))\n"
    "from webapp.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def export(rev: str, into: Path) -> Path:
    """The code of ``rev`` in a folder (``.``: the working tree itself)."""
    if rev == ".":
        return ROOT
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def env(source: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": str(source)}


def run_once(source: Path, checkpoint: Path, workdir: Path, label: str, max_seconds: float | None) -> dict:
    command = [
        sys.executable, "-c", CLI, "run", "--models", str(checkpoint), "--batch-sizes", "1", "8",
        "--sequence-length", "128", "--no-incremental", "--json",
        "--db-path", str(workdir / f"{label}.duckdb"), "--results-dir", str(workdir / f"{label}-results"),
        *(["--max-seconds", str(max_seconds)] if max_seconds else []),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, env=env(source), capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{label}: benchboard run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    imported = [line.split(" ", 1)[1] if " " in line else "" for line in done.stderr.splitlines()
                if line.startswith("IMPORTED")]
    results = json.loads(done.stdout)["results"]
    return {
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "imported": imported[-1] if imported else "?",
        "measured": len(results),
        "contended": sum(bool(r["contended"]) for r in results),
    }


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", default="HEAD", help="git revision, or . for the working tree (default HEAD)")
    parser.add_argument("--b", default=".", help="git revision, or . for the working tree (default .)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument("--max-seconds", type=float, default=None, help="the CLI's --max-seconds (default its own)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="benchboard-cliab-"))
    sources = {"A": export(args.a, workdir / "a"), "B": export(args.b, workdir / "b")}
    checkpoint = make_checkpoint(workdir / "bert-tiny-ckpt")
    print(f"A = {args.a} ({sources['A']}), B = {args.b} ({sources['B']}); work in {workdir}")
    print(f"before: {uptime()}", flush=True)
    walls: dict[str, list[float]] = {"A": [], "B": []}
    order = [side for index in range(args.rounds) for side in (("A", "B") if index % 2 == 0 else ("B", "A"))]
    for index, side in enumerate(order):
        run = run_once(sources[side], checkpoint, workdir, f"run{index}-{side}", args.max_seconds)
        walls[side].append(run["wall_s"])
        print(f"{index + 1:>2} {side}: wall {run['wall_s']:6.2f} s  cpu {run['cpu_s']:6.2f} s  "
              f"measured {run['measured']} ({run['contended']} contended)  CLI imported: {run['imported'] or 'none'}",
              flush=True)
    print(f"after: {uptime()}")
    a, b = statistics.median(walls["A"]), statistics.median(walls["B"])
    print(f"median wall A {a:.2f} s, B {b:.2f} s, B / A {b / a:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
