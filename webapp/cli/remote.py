"""``benchboard remote ...``: drive a running server over its JSON API, through the Python client.

    benchboard remote start --models bert-tiny --batch-sizes 1 8 --watch
    benchboard remote results RUN_ID
    benchboard remote query --model bert-tiny --json

Requests go through the client only, never the engine or storage, so these commands work
against any server the user can reach; of the engine, only `benchboard run`'s flag choices
and defaults are read, so `remote start` takes that command's flags.

Exit status: 0; 1 when a followed run ends failed or cancelled, or the server cannot be reached or
fails; 2 for what the command itself got wrong: a request the server refuses as invalid (an
unknown model or hardware, a bad value), an unknown run, a malformed --url; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import TYPE_CHECKING

from engine.config import ATTN_IMPLEMENTATIONS, SCENARIOS, TIMINGS
from engine.runs import RunRequest

if TYPE_CHECKING:
    from benchboard_client import BenchmarkAPIClient

# benchboard_client (httpx, websockets) is imported by the actions only: `benchboard` builds
# this parser for every command, `benchboard run` included (issue 16). engine.config and
# engine.runs are light (msgspec), and `benchboard` has imported them already: the flags take
# `run`'s choices and defaults from them, and the server checks every value again.

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
FAILURE_COLUMNS = ("model_name", "hardware", "batch_size", "precision", "error_type", "error_message")
MODEL_COLUMNS = ("name", "family", "type", "modality", "parameters_million", "source")
HARDWARE_COLUMNS = ("name", "type", "device", "memory_gb", "compute_units", "precisions")
REPORT_COLUMNS = ("run_id", "status", "reports", "modified")
# A run's configs with no row yet, by the run's status: a cancelled or failed run's never ran.
CONFIGS_WITHOUT_A_ROW = {"queued": "still to run", "running": "still to run", "completed": "skipped"}
STATUS_FIELDS = ("run_id", "status", "progress", "current_step", "completed_configs", "total_configs",
                 "completed_models", "total_models", "priority", "start_time", "elapsed_time",
                 "estimated_remaining_time", "completion_time", "error")


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None,
                        help=f"server address (default: env BENCHBOARD_URL, else {DEFAULT_URL})")
    parser.add_argument("--token", default=None,
                        help="API token for servers started with --token (default: env BENCHBOARD_TOKEN)")
    parser.add_argument("--json", action="store_true", help="print the server's JSON instead of a table")


def add_remote_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``remote`` and its actions on the ``benchboard`` command's subparsers."""
    remote = subparsers.add_parser("remote", help="drive a running benchboard server over its JSON API")
    actions = remote.add_subparsers(dest="remote_command", required=True, metavar="ACTION")

    def action(name: str, help_text: str, *, takes_run_id: bool = False) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text)
        if takes_run_id:
            parser.add_argument("run_id", metavar="RUN_ID")
        _connection_flags(parser)
        return parser

    # The fields of POST /api/benchmark/run, under `benchboard run`'s flag names; unset ones are
    # not sent, so the server's defaults (RunRequest's) apply.
    defaults = RunRequest()
    start = action("start", "start a run on the server")
    start.add_argument("--models", nargs="+", default=None, metavar="NAME",
                       help="model names (default: the priority's tier)")
    start.add_argument("--hardware", nargs="+", default=None, metavar="DEVICE",
                       help=f"devices, e.g. cpu cuda:0 (default {' '.join(defaults.hardware)})")
    start.add_argument("--batch-sizes", nargs="+", type=int, default=None, metavar="N",
                       help=f"default {' '.join(map(str, defaults.batch_sizes))}")
    start.add_argument("--precision", default=None,
                       help=f"fp32, fp16, bf16 or int8 (default {defaults.precision})")
    start.add_argument("--priority", default=None,
                       help=f"critical, high, medium, low or all (default {defaults.priority})")
    start.add_argument("--sequence-length", type=int, default=None, metavar="N",
                       help=f"default {defaults.sequence_length}")
    start.add_argument("--threads", type=int, default=None, metavar="N",
                       help="torch threads in the server's worker (default: the server's setting)")
    start.add_argument("--timing", choices=TIMINGS, default=None,
                       help="latency: each call timed alone with a device sync; throughput: calls pipelined "
                            "(default latency at batch size 1, throughput at larger batches)")
    start.add_argument("--attn-implementation", choices=ATTN_IMPLEMENTATIONS, default=None,
                       help="attention transformers builds the models with (default sdpa)")
    start.add_argument("--image-size", type=int, default=None, metavar="N",
                       help="image size for vision models (default each model's own)")
    start.add_argument("--scenario", choices=SCENARIOS, default=None,
                       help="forward: one forward pass; generate: greedy decoding timed token by token "
                            f"(default {defaults.scenario})")
    start.add_argument("--new-tokens", type=int, default=None, metavar="N",
                       help="generate: tokens each generation produces, exactly "
                            f"(default {defaults.new_tokens})")
    start.add_argument("--repeats", type=int, default=None, metavar="R",
                       help="measure each config in R fresh worker processes and pool the samples "
                            f"(default {defaults.repeats})")
    start.add_argument("--progressive", action=argparse.BooleanOptionalAction, default=None,
                       help="cheap configs first; stop escalating batch sizes at OOM, timeout or plateau "
                            f"(default {'on' if defaults.progressive_mode else 'off'}; --no-progressive "
                            "measures every config, in the order given)")
    start.add_argument("--no-incremental", action="store_true",
                       help="measure again configs with recent results")
    start.add_argument("--force", action="store_true", help="measure every config, even with recent results")
    start.add_argument("--watch", action="store_true", help="follow the run's progress until it ends")

    action("status", "show a run's status", takes_run_id=True)
    action("watch", "follow a run's progress until it ends", takes_run_id=True)
    action("results", "show a run's results", takes_run_id=True)
    action("cancel", "cancel a queued or running run", takes_run_id=True)
    action("models", "list the models the server can benchmark")
    action("hardware", "list the server's hardware")
    action("reports", "list the runs that have reports")

    query = action("query", "query stored results")
    query.add_argument("--model", default=None, help="model name")
    query.add_argument("--family", default=None, help="model family")
    query.add_argument("--hardware", default=None, help="hardware name or type")
    query.add_argument("--batch-size", type=int, default=None, metavar="N")
    query.add_argument("--precision", default=None)
    query.add_argument("--limit", type=int, default=None, metavar="N", help="rows, 1..1000 (default 100)")
    return remote


def run_remote(args: argparse.Namespace) -> int:
    """Carry out one ``benchboard remote`` action; the exit code."""
    url, given_as = ((args.url, "--url") if args.url else
                     (os.environ["BENCHBOARD_URL"], "BENCHBOARD_URL") if os.environ.get("BENCHBOARD_URL") else
                     (DEFAULT_URL, "--url"))
    token = args.token or os.environ.get("BENCHBOARD_TOKEN") or None
    from benchboard_client import (
        BenchmarkAPIClient,
        BenchmarkAPIError,
        InvalidRequest,
        InvalidServerAddress,
        NotFound,
    )

    try:
        client = BenchmarkAPIClient(url, token=token)
    except InvalidServerAddress as error:  # refused before any connection: no scheme, no host, a bad port
        print(f"error: {given_as}: {error.reason}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with client:
            return ACTIONS[args.remote_command](client, args)
    except (InvalidRequest, NotFound) as error:
        # Refused for what the command says (`run` exits 2 for the same): an unknown model or run.
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BenchmarkAPIError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("\nstopped following; the run goes on on the server", file=sys.stderr)
        return EXIT_INTERRUPTED


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, default=str))


def _exit_code(final: dict) -> int:
    if final["status"] == "completed":
        return 0
    print(f"run {final['run_id']} {final['status']}" + (f": {final['error']}" if final.get("error") else ""),
          file=sys.stderr)
    return EXIT_FAILED


def _notice(text: str) -> None:
    """A line about the connection (lost and retrying, back): on stderr, so --json stays clean."""
    print(text, file=sys.stderr, flush=True)


def _follow(client: BenchmarkAPIClient, run_id: str, as_json: bool) -> int:
    from benchboard_client import describe_progress

    def show(status: dict) -> None:
        print(json.dumps(status) if as_json else describe_progress(status), flush=True)

    return _exit_code(client.monitor_progress(run_id, show, on_notice=_notice))


# The server's message repeats the status it answers with ("benchmark run running: 2 configs ...").
_STATUS_PREFIX = re.compile(r"^benchmark run \w+: ")


def action_start(client: BenchmarkAPIClient, args: argparse.Namespace) -> int:
    run = client.start_benchmark(
        priority=args.priority, hardware=args.hardware, models=args.models, batch_sizes=args.batch_sizes,
        precision=args.precision, progressive_mode=args.progressive,
        incremental=False if args.no_incremental else None, sequence_length=args.sequence_length,
        force=args.force or None, scenario=args.scenario, new_tokens=args.new_tokens, timing=args.timing,
        attn_implementation=args.attn_implementation, image_size=args.image_size, threads=args.threads,
        repeats=args.repeats,
    )
    if args.json:
        _print_json(run)
    else:
        # "run ID running: 2 configs at priority high", not the status twice.
        print(f"run {run['run_id']} {run['status']}: {_STATUS_PREFIX.sub('', run['message'])}")
    return _follow(client, run["run_id"], args.json) if args.watch else 0


def action_status(client: BenchmarkAPIClient, args: argparse.Namespace) -> int:
    status = client.get_status(args.run_id)
    if args.json:
        _print_json(status)
    else:
        width = max(map(len, STATUS_FIELDS))
        for name in STATUS_FIELDS:
            print(f"{name.ljust(width)}  {status.get(name) if status.get(name) is not None else '-'}")
    return 0


def action_watch(client: BenchmarkAPIClient, args: argparse.Namespace) -> int:
    return _follow(client, args.run_id, args.json)


def action_results(client: BenchmarkAPIClient, args: argparse.Namespace) -> int:
    from benchboard_client import format_results, format_table

    outcome = client.get_results(args.run_id)
    if args.json:
        _print_json(outcome)
        return 0
    results, failures = outcome["results"], outcome.get("failures") or []
    reused = outcome.get("reused") or []  # an older server sends none
    sections = []
    if results or not (failures or reused):
        sections.append(format_results(results))  # forward rows, then generate rows with TTFT/TPOT/e2e
    if reused:
        sections.append("reused (results of earlier runs, not measured again):\n"
                        + format_results(reused, leading=("run_id",)))
    if failures:
        sections.append("not measured:\n" + format_table(failures, FAILURE_COLUMNS))
    print("\n\n".join(sections))
    print(f"\nrun {outcome['run_id']} {outcome['status']}: "
          + _results_summary(client, outcome, len(results), len(reused), len(failures)), file=sys.stderr)
    return 0


def _results_summary(client: BenchmarkAPIClient, outcome: dict, measured: int, reused: int, failed: int) -> str:
    """"3 measured, 1 reused, 2 not measured, 6 never ran (of 12 configs)": what the run did with each
    config; configs with no row at all are counted from the run's total."""
    parts = [f"{measured} measured"] + ([f"{reused} reused"] if reused else []) + [f"{failed} not measured"]
    from benchboard_client import BenchmarkAPIError

    try:
        total = client.get_status(outcome["run_id"]).get("total_configs")
    except BenchmarkAPIError:  # the results are shown; the count of configs without a row is extra
        total = None
    if isinstance(total, int) and total > 0:
        rest = total - measured - reused - failed
        if rest > 0:
            parts.append(f"{rest} {CONFIGS_WITHOUT_A_ROW.get(outcome['status'], 'never ran')}")
        parts[-1] += f" (of {total} configs)"
    return ", ".join(parts)


def action_cancel(client: BenchmarkAPIClient, args: argparse.Namespace) -> int:
    status = client.cancel(args.run_id)
    if args.json:
        _print_json(status)
    else:
        print(f"run {status['run_id']} {status['status']}")
    return 0


def _listing(fetch, columns):
    """``columns``: the table's columns, or a function that returns them (imports the client)."""
    def show(client: BenchmarkAPIClient, args: argparse.Namespace) -> int:
        from benchboard_client import format_table

        rows = fetch(client, args)
        if args.json:
            _print_json(rows)
        else:
            print(format_table(rows, columns() if callable(columns) else columns))
        return 0
    return show


def action_query(client: BenchmarkAPIClient, args: argparse.Namespace) -> int:
    from benchboard_client import format_results

    rows = client.query_results(model=args.model, hardware=args.hardware, batch_size=args.batch_size,
                                precision=args.precision, limit=args.limit, family=args.family)
    if args.json:
        _print_json(rows)
    else:
        print(format_results(rows, leading=("run_id",), trailing=("created_at",)))
    return 0


ACTIONS = {
    "start": action_start,
    "status": action_status,
    "watch": action_watch,
    "results": action_results,
    "cancel": action_cancel,
    "models": _listing(lambda client, args: client.get_models(), MODEL_COLUMNS),
    "hardware": _listing(lambda client, args: client.get_hardware(), HARDWARE_COLUMNS),
    "reports": _listing(lambda client, args: client.get_reports(), REPORT_COLUMNS),
    "query": action_query,
}
