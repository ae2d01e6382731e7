"""False alarms and power of ``benchboard compare``: how often unchanged reruns come out ``slower``,
and how often a real 10% slowdown does.

    python perf/regression_power.py [--trials 20] [--max-seconds 0.3] [--spin-ms 0.5] [--slowdown 0.10]
                                    [--bert-max-seconds 0.3] [--bert-repeats R ...] [--no-bert]

1. A custom workload with a controlled cost, registered through a custom-benchmarks ``.py``
   file: its forward spins on ``perf_counter`` for the milliseconds written in a cost file,
   which each build reads. The script runs it unchanged (U) and ``--slowdown`` slower (S),
   interleaved U0 S0 U1 S1 ... U20, and compares every U(i) with U(i+1) (target: at most 1 of
   20 ``slower``) and every U(i) with S(i) (target: at least 19 of 20 ``slower``).
2. bert-tiny at batch 1, rerun ``--trials`` + 1 times unchanged: every run against the one
   before (target: at most 1 of 20 ``slower``), and every run from the fourth on against its
   history (the last 10 earlier results, conbench's z-score), reported alongside. One series
   per ``--bert-repeats`` value (default 1 and 3): with R > 1 each run measures in R fresh
   worker processes (``repeats``), whose between-process spread widens the CIs compared.

Every run is a real run (``force``, progressive off, one torch thread) through the same
``Services`` a server uses, in a throwaway database: the scheduler, one long-lived worker
process (as under ``benchboard serve``), storage, and the comparison the CLI, the API and the
Compare page share (``webapp.wiring.comparisons``). The load average is printed at the start
and the end: on a machine other processes keep busy, reruns differ for reasons no statistic
can see, so quote it with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.compare import SLOWER, RunComparison  # noqa: E402
from engine.runs import run_request  # noqa: E402
from webapp.wiring.comparisons import history_comparison, run_comparison  # noqa: E402
from webapp.wiring.services import Services  # noqa: E402
from webapp.wiring.settings import Settings  # noqa: E402

SPIN_BENCHMARK = '''
"""A workload with a controlled cost: forward() spins for the milliseconds in spin-cost.json."""
import json
import time
from pathlib import Path

import torch

from engine.models.spec import ModelSpec

COST_FILE = Path(__file__).with_name("spin-cost.json")


class Spin(torch.nn.Module):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        deadline = time.perf_counter() + self.seconds
        while time.perf_counter() < deadline:
            pass
        return x


def build():
    return Spin(json.loads(COST_FILE.read_text())["ms"] / 1000.0)


def inputs(batch_size, sequence_length, image_size):
    return {"x": torch.zeros(batch_size, 1)}


MODELS = [ModelSpec("spin", "test", "custom", "tabular", 0.0, build, inputs)]
'''
FALSE_ALARM_TARGET = 1  # at most this many slower verdicts per 20 unchanged comparisons
DETECTION_TARGET = 19  # at least this many per 20 slowed ones


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


class Bench:
    def __init__(self, root: Path, max_seconds: float):
        root.mkdir(parents=True, exist_ok=True)
        self.custom = root / "custom"
        self.custom.mkdir()
        (self.custom / "spin.py").write_text(SPIN_BENCHMARK)
        self.set_cost(1.0)
        settings = Settings(
            db_path=str(root / "power.duckdb"), results_dir=str(root / "results"), log_dir=str(root / "logs"),
            custom_benchmarks_dir=str(self.custom), max_seconds=max_seconds, threads=1, prestart_workers=False,
            resume=False,
        )
        self.services = Services(settings)

    def set_cost(self, ms: float) -> None:
        (self.custom / "spin-cost.json").write_text(json.dumps({"ms": ms}))

    def run(self, model: str, repeats: int = 1) -> str:
        request = run_request({"models": [model], "hardware": ["cpu"], "batch_sizes": [1], "force": True,
                               "incremental": False, "progressive_mode": False, "repeats": repeats})
        run = self.services.start_run(request)
        self.services.scheduler.wait(run.run_id)
        outcome = self.services.run_results(run.run_id)
        if outcome.status != "completed" or not outcome.results:
            raise SystemExit(f"run {run.run_id} of {model} ended {outcome.status}: {outcome.failures}")
        return run.run_id

    def compare(self, baseline: str, contender: str) -> RunComparison:
        return run_comparison(self.services.db, baseline, contender)

    def close(self) -> None:
        self.services.close()


def summary(comparisons: list[RunComparison]) -> tuple[int, Counter, list[float]]:
    configs = [c for comparison in comparisons for c in comparison.configs]
    verdicts = Counter(c.verdict for c in configs)
    return verdicts[SLOWER], verdicts, sorted(c.ratio for c in configs if c.ratio is not None)


def report_line(name: str, comparisons: list[RunComparison], target: str, passed: bool | None) -> list[str]:
    slower, verdicts, ratios = summary(comparisons)
    spread = f"{ratios[0]:.3f} .. {ratios[len(ratios) // 2]:.3f} .. {ratios[-1]:.3f}" if ratios else "-"
    verdict_text = ", ".join(f"{n} {v}" for v, n in verdicts.most_common())
    mark = "-" if passed is None else ("PASS" if passed else "MISS")
    configs = [c for comparison in comparisons for c in comparison.configs]
    contended = sum(bool(c.baseline.contended or c.contender.contended) for c in configs)
    return [name, f"{slower}/{len(comparisons)}", target, mark, spread, f"{contended}/{len(configs)}", verdict_text]


def print_table(rows: list[list[str]]) -> None:
    header = ["comparison", "slower", "target", "", "ratio min .. median .. max", "contended", "verdicts"]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--max-seconds", type=float, default=0.3, help="timing budget per spin run")
    parser.add_argument("--spin-ms", type=float, default=0.5, help="cost of the unchanged workload")
    parser.add_argument("--slowdown", type=float, default=0.10, help="how much slower S is (0.10: 10%%)")
    parser.add_argument("--bert-max-seconds", type=float, default=0.3, help="timing budget per bert-tiny run")
    parser.add_argument("--bert-repeats", type=int, nargs="+", default=[1, 3], metavar="R",
                        help="a bert-tiny series for each R: every run measured in R fresh worker processes "
                             "(default: 1 and 3)")
    parser.add_argument("--no-bert", action="store_true", help="skip the bert-tiny reruns")
    args = parser.parse_args(argv)

    started = time.monotonic()
    print(f"start: {load()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="benchboard-power-") as root:
        bench = Bench(Path(root) / "spin", args.max_seconds)
        try:
            bench.set_cost(args.spin_ms)
            unchanged = [bench.run("spin")]
            slowed = []
            for trial in range(args.trials):
                bench.set_cost(args.spin_ms * (1 + args.slowdown))
                slowed.append(bench.run("spin"))
                bench.set_cost(args.spin_ms)
                unchanged.append(bench.run("spin"))
                print(f"  spin trial {trial + 1}/{args.trials} done ({time.monotonic() - started:.0f} s)", flush=True)
            false_alarms = [bench.compare(a, b) for a, b in zip(unchanged, unchanged[1:])]
            detections = [bench.compare(a, s) for a, s in zip(unchanged, slowed)]
            allowed = FALSE_ALARM_TARGET * args.trials / 20
            needed = DETECTION_TARGET * args.trials / 20
            rows.append(report_line(f"spin {args.spin_ms:g} ms, unchanged rerun", false_alarms,
                                    f"<= {allowed:g}", summary(false_alarms)[0] <= allowed))
            rows.append(report_line(f"spin {args.spin_ms:g} ms, {args.slowdown:.0%} slower", detections,
                                    f">= {needed:g}", summary(detections)[0] >= needed))
        finally:
            bench.close()
        for repeats in [] if args.no_bert else args.bert_repeats:
            bench = Bench(Path(root) / f"bert-{repeats}", args.bert_max_seconds)
            name = "bert-tiny bs1" + (f", {repeats} processes per run" if repeats > 1 else ", one process")
            try:
                reruns = []
                for trial in range(args.trials + 1):
                    reruns.append(bench.run("bert-tiny", repeats))
                    print(f"  {name}: run {trial + 1}/{args.trials + 1} done ({time.monotonic() - started:.0f} s)",
                          flush=True)
                bert = [bench.compare(a, b) for a, b in zip(reruns, reruns[1:])]
                rows.append(report_line(f"{name}, unchanged rerun", bert, f"<= {allowed:g}",
                                        summary(bert)[0] <= allowed))
                histories = [history_comparison(bench.services.db, run_id) for run_id in reruns[3:]]
                rows.append(report_line(f"{name}, vs its history", histories, "(reported)", None))
            finally:
                bench.close()
    print()
    print_table(rows)
    print()
    print(f"end: {load()}; {time.monotonic() - started:.0f} s in all")
    misses = [row for row in rows if row[3] == "MISS"]
    return 1 if misses else 0



if __name__ == "__main__":
    sys.exit(main())
