#!/usr/bin/env python3
"""Drive a benchboard server from Python: start a run, watch it live, print its results and reports.

Start a server first (``benchboard serve``), then:

    python examples/benchmark_integration_example.py --url http://127.0.0.1:8000
    python examples/benchmark_integration_example.py --models bert-base-uncased gpt2 --batch-sizes 1 8 16

Exits 0 when the run completes, 1 when it fails, is cancelled or the server refuses.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# The seed's import line. `pip install ./client` (the benchboard-client distribution) provides it.
from benchmark_api_client import (
    RESULT_COLUMNS,
    BenchmarkAPIClient,
    BenchmarkAPIError,
    describe_progress,
    format_table,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("BENCHBOARD_URL", "http://127.0.0.1:8000"),
                        help="server address (default: env BENCHBOARD_URL, else http://127.0.0.1:8000)")
    parser.add_argument("--token", default=os.environ.get("BENCHBOARD_TOKEN"),
                        help="API token, if the server has one (default: env BENCHBOARD_TOKEN)")
    parser.add_argument("--models", nargs="+", default=["bert-tiny", "gpt2-tiny"],
                        help="models to benchmark (default: the tiny test models)")
    parser.add_argument("--hardware", nargs="+", default=["cpu"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1], metavar="N")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--force", action="store_true", help="measure again configs that have recent results")
    return parser.parse_args(argv)


def show_hardware_and_models(client: BenchmarkAPIClient, wanted: list[str]) -> None:
    hardware = client.get_hardware()
    print("hardware: " + ", ".join(f"{hw['name']} ({hw.get('device') or hw['type']})" for hw in hardware))
    models = {model["name"]: model for model in client.get_models()}
    for name in wanted:
        model = models.get(name)
        if model:
            print(f"model {name}: {model['family']} {model['type']}, "
                  f"{model['parameters_million']}M parameters")


def run_benchmark(client: BenchmarkAPIClient, args: argparse.Namespace) -> dict:
    run = client.start_benchmark(priority="high", hardware=args.hardware, models=args.models,
                                 batch_sizes=args.batch_sizes, precision=args.precision,
                                 progressive_mode=True, force=args.force)
    print(f"started run {run['run_id']}: {run['message']}")
    final = client.monitor_progress(run["run_id"],
                                    lambda status: print(describe_progress(status), flush=True))
    print(f"run {final['run_id']} {final['status']} in {final['elapsed_time']:.1f}s")
    return final


def show_results(client: BenchmarkAPIClient, run_id: str) -> None:
    outcome = client.get_results(run_id)
    print()
    print(format_table(outcome["results"], RESULT_COLUMNS))
    for failure in outcome.get("failures") or []:
        print(f"not measured: {failure['model_name']} batch {failure['batch_size']}: "
              f"{failure['error_type']}: {failure['error_message']}")


def show_reports(client: BenchmarkAPIClient, run_id: str, wait_s: float = 30.0) -> None:
    # The server writes a run's reports just after it publishes the run's end, so that a slow
    # report never delays the status; give it a moment to list this run's folder.
    deadline = time.monotonic() + wait_s
    entries = client.get_reports()
    while not any(entry["run_id"] == run_id for entry in entries) and time.monotonic() < deadline:
        time.sleep(0.2)
        entries = client.get_reports()
    print()
    for entry in entries:
        marker = "*" if entry["run_id"] == run_id else " "
        print(f"{marker} {entry['run_id']}  {entry['status']:<10} {', '.join(entry['reports'])}  "
              f"{client.base_url}{entry['url']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with BenchmarkAPIClient(args.url, token=args.token) as client:
            show_hardware_and_models(client, args.models)
            final = run_benchmark(client, args)
            show_results(client, final["run_id"])
            show_reports(client, final["run_id"])
    except (BenchmarkAPIError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if final["status"] != "completed":
        reason = final.get("error") or "see the results above"
        print(f"error: run {final['status']}: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
