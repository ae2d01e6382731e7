"""The ``benchboard`` command: run headless, serve the dashboard and API, inspect and query."""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import signal
import socket
import sys
import threading
from pathlib import Path

import msgspec

from engine.config import ATTN_IMPLEMENTATIONS, SCENARIOS, TIMINGS
from engine.errors import EngineError, InvalidRequestError
from engine.runs import RunRequest, run_request
from webapp.cli.interrupts import cancelling_on_signals
from webapp.cli.progress import ProgressBar
from webapp.wiring.settings import ENV_PREFIX, Settings, SettingsError, setting_problem

# The exit statuses of every command (README.md, "Exit status").
EXIT_OK = 0
EXIT_FAILED = 1  # a run that failed, a query that failed, a database that cannot be opened or is in use
EXIT_USAGE = 2  # a bad flag or argument, refused before anything starts
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 143  # SIGTERM while a run measures (128 + 15, as a shell reports a SIGTERM death)


class UsageError(Exception):
    """A bad argument found once parsed (a folder that is not there, a port already taken): one
    ``error:`` line naming the flag, exit 2."""


def _setting_type(name: str, kind: type):
    """An argparse ``type`` for the setting ``name``: refused at parse time (exit 2, naming the flag)
    with the words ``Settings`` uses for the same value from the environment."""

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {'a whole number' if kind is int else 'a number'}, not {text!r}") from None
        reason = setting_problem(name, value)
        if reason is not None:
            raise argparse.ArgumentTypeError(reason)
        return value

    convert.__name__ = kind.__name__
    return convert


class _Version(argparse.Action):
    """``--version``: the installed distribution's version, looked up only when asked."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("benchboard")
        except PackageNotFoundError:
            number = "(not installed)"
        print(f"benchboard {number}")
        parser.exit()


def _add_storage_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db-path", default=None, help="DuckDB file, made if missing (env BENCHBOARD_DB_PATH; "
                                                         "default benchmarks.duckdb)")
    parser.add_argument("--results-dir", default=None,
                        help="where reports go (env BENCHBOARD_RESULTS_DIR; default results/)")


def _add_model_dir_flags(parser: argparse.ArgumentParser, *, custom: bool = True) -> None:
    parser.add_argument("--models-dir", default=None, metavar="DIR",
                        help="discover every Hugging Face checkpoint folder under DIR, which must exist "
                             "(env BENCHBOARD_MODELS_DIR)")
    if custom:
        parser.add_argument("--custom-benchmarks-dir", default=None, metavar="DIR",
                            help="folder of .py files registering workloads, which must exist "
                                 "(env BENCHBOARD_CUSTOM_BENCHMARKS_DIR)")


def _add_max_seconds_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-seconds", type=_setting_type("max_seconds", float), default=None, metavar="S",
                        help="timing budget per config, a number of seconds above 0 (env BENCHBOARD_MAX_SECONDS; "
                             "default 10)")


def _add_ray_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="also use every node of this Ray cluster, devices named NODE/DEVICE "
                             "(env BENCHBOARD_RAY_ADDRESS; needs pip install 'benchboard[ray]')")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchboard", description="Trustworthy ML inference benchmarks.",
                                     epilog="Exit status: 0 done, 1 failed (a run, a query, the database), "
                                            "2 bad argument, 130 interrupted (Ctrl-C), 143 a run cancelled by SIGTERM; "
                                            "compare: 1 a regression.")
    parser.add_argument("--version", action=_Version, help="print benchboard's version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="benchmark models headless, with a progress bar")
    run.add_argument("--models", nargs="+", default=None,
                     help="model names, checkpoint folders or Hub ids (default: the priority's tier)")
    _add_model_dir_flags(run)
    defaults = RunRequest()  # the one set of run defaults, shared with the API and the form
    run.add_argument("--hardware", nargs="+", help=f"devices, e.g. cpu cuda:0 (default {' '.join(defaults.hardware)})")
    run.add_argument("--batch-sizes", nargs="+", type=int, metavar="N",
                     help=f"default {' '.join(map(str, defaults.batch_sizes))}")
    run.add_argument("--precision", help=f"fp32, fp16, bf16 or int8 (default {defaults.precision})")
    run.add_argument("--priority", help=f"critical, high, medium, low or all (default {defaults.priority})")
    run.add_argument("--sequence-length", type=int, metavar="N", help=f"default {defaults.sequence_length}")
    run.add_argument("--threads", type=int, default=None, metavar="N",
                     help="torch threads in the worker (default: torch's own, the physical cores)")
    run.add_argument("--timing", choices=TIMINGS, default=None,
                     help="latency: each call timed alone with a device sync; throughput: calls pipelined "
                          "(default latency at batch size 1, throughput at larger batches)")
    run.add_argument("--attn-implementation", choices=ATTN_IMPLEMENTATIONS, default=None,
                     help="attention transformers builds the models with (default sdpa)")
    run.add_argument("--image-size", type=int, default=None, metavar="N",
                     help="image size for vision models (default each model's own)")
    run.add_argument("--scenario", choices=SCENARIOS, default=None,
                     help="forward: one forward pass; generate: greedy decoding with the KV cache, reporting "
                          "time to first token, time per output token and decode tokens/s (decoder, "
                          f"encoder-decoder and audio models; default {defaults.scenario})")
    run.add_argument("--new-tokens", type=int, default=None, metavar="N",
                     help=f"generate: tokens each generation produces, exactly (default {defaults.new_tokens})")
    run.add_argument("--parallel-devices", action="store_true", default=None,
                     help="let several devices measure at the same time (default: one config at a time per machine)")
    _add_max_seconds_flag(run)
    run.add_argument("--progressive", action=argparse.BooleanOptionalAction, default=None,
                     help="cheap configs first; stop escalating batch sizes at OOM, timeout or plateau "
                          f"(default {'on' if defaults.progressive_mode else 'off'})")
    run.add_argument("--no-incremental", action="store_true", help="measure again configs with recent results")
    run.add_argument("--repeats", type=int, default=None, metavar="R",
                     help="measure each config in R fresh worker processes and pool the samples, recording "
                          "the spread between processes (default 1)")
    run.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    _add_storage_flags(run)
    _add_ray_flag(run)

    serve = commands.add_parser("serve", help="serve the dashboard and the JSON API")
    serve.add_argument("--host", default=None, help="bind address (env BENCHBOARD_HOST; default 127.0.0.1)")
    serve.add_argument("--port", type=_setting_type("port", int), default=None, metavar="PORT",
                       help="TCP port, 0-65535 (env BENCHBOARD_PORT; default 8000)")
    serve.add_argument("--log-dir", default=None, metavar="DIR",
                       help="where benchmark_api_server.log goes, made if missing (env BENCHBOARD_LOG_DIR; "
                            "default logs/)")
    serve.add_argument("--token", default=None,
                       help="require 'Authorization: Bearer TOKEN' on every API call, the WebSocket and the live streams")
    serve.add_argument("--cors-origin", action="append", default=None, dest="cors_origins", metavar="ORIGIN",
                       help="an origin browser pages may call the API from (repeatable; replaces the default of "
                            "localhost, file:// and app://; env BENCHBOARD_CORS_ORIGINS, comma-separated)")
    serve.add_argument("--allowed-host", action="append", default=None, dest="allowed_hosts", metavar="NAME",
                       help="a Host name to answer besides the bound address, localhost and 127.0.0.1 (repeatable)")
    serve.add_argument("--max-configs-per-run", type=_setting_type("max_configs_per_run", int), default=None,
                       metavar="N", help="refuse runs of more configs, N at least 1 "
                                         "(env BENCHBOARD_MAX_CONFIGS_PER_RUN; default 2000)")
    serve.add_argument("--reuse-running", action="store_true",
                       help="if a benchboard server already serves the database or answers at --api-url, "
                            "say where and exit 0 (what run_benchmark_dashboard.sh does)")
    serve.add_argument("--api-url", default=None, metavar="URL",
                       help="with --reuse-running: where a server may already answer (default http://localhost:8000)")
    _add_model_dir_flags(serve)
    serve.add_argument("--panels-dir", default=None, metavar="DIR",
                       help="folder of TOML/YAML files, one custom dashboard tab each")
    _add_max_seconds_flag(serve)
    _add_storage_flags(serve)
    _add_ray_flag(serve)

    hardware = commands.add_parser("hardware", help="list the devices found here (and on a Ray cluster's nodes)")
    hardware.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_ray_flag(hardware)

    models = commands.add_parser("models", help="list the models that can be benchmarked")
    _add_model_dir_flags(models, custom=False)
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")

    query = commands.add_parser(
        "query", help="run one guarded, read-only SQL query on the results",
        description="Run one guarded, read-only SQL query (SELECT, WITH, DESCRIBE ... over the results tables "
                    "and views) on an existing database; a missing --db-path is an error, never made.")
    query.add_argument("sql", metavar="SQL", help='the query, e.g. "SELECT count(*) FROM performance_results"')
    query.add_argument("--db-path", default=None,
                       help="DuckDB file, which must exist (env BENCHBOARD_DB_PATH; default benchmarks.duckdb)")
    query.add_argument("--json", action="store_true", help="print the columns and rows as JSON")
    query.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="bind the SQL's $NAME to VALUE (repeatable): an integer such as -3 binds as an "
                            "integer, a decimal number such as 1.5 or 2e-3 as a double, anything else as text; "
                            "for a number as text, cast it in the SQL ($NAME::VARCHAR)")

    from webapp.cli.remote import add_remote_parser

    add_remote_parser(commands)
    from webapp.cli.compare import add_compare_parser

    add_compare_parser(commands)
    return parser


def _print_table(columns: list[str], rows: list[list], out=sys.stdout) -> None:
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in cells:
        print("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(row, widths, strict=True)), file=out)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return " ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.1f}"
    return str(value)


def _numeric(text: str) -> bool:
    return text.replace(",", "").replace(".", "", 1).lstrip("-").isdigit()


def command_run(args: argparse.Namespace) -> int:
    settings = Settings.from_env(
        db_path=args.db_path, results_dir=args.results_dir, models_dir=args.models_dir,
        custom_benchmarks_dir=args.custom_benchmarks_dir, max_seconds=args.max_seconds,
        parallel_devices=args.parallel_devices, resume=False, ray_address=args.ray_address,
    )
    # Refused before the workers start: folders that are not there, paths that cannot be made.
    _check_model_folders(args, settings)
    _make_db_folder(args, settings)
    _check_makeable(args, "results_dir", settings.results_dir)
    given = {
        "priority": args.priority, "hardware": args.hardware, "models": args.models, "batch_sizes": args.batch_sizes,
        "precision": args.precision, "progressive_mode": args.progressive, "sequence_length": args.sequence_length,
        "threads": args.threads, "timing": args.timing, "attn_implementation": args.attn_implementation,
        "image_size": args.image_size, "scenario": args.scenario, "new_tokens": args.new_tokens,
    }
    given["repeats"] = args.repeats
    request = run_request({
        **{name: value for name, value in given.items() if value is not None},
        "incremental": not args.no_incremental, "force": args.no_incremental,
    })
    # The workers start now, and import torch and transformers while this process imports the
    # rest, opens the database and plans (issue 16).
    workers = prestart_workers(request, settings)
    try:
        from webapp.wiring.services import Services

        progress = ProgressBar(sys.stderr)
        services = Services(settings, listeners=[progress], allow_model_paths=True, workers=workers,
                            facts=plan_facts(request, workers))
    except BaseException:
        for worker in workers.values():
            worker.close()
        raise
    try:
        run = services.plan(request)
        # Once the run is known to be sound: the folder its report goes in.
        _make_folder(args, "results_dir", settings.results_dir)
        progress.start(run.total_configs)
        with cancelling_on_signals(lambda: services.scheduler.cancel(run.run_id)) as stopped_by:
            services.scheduler.submit(run)
            services.scheduler.wait(run.run_id)
        progress.close()
        outcome = services.run_results(run.run_id, with_samples=args.json)
    finally:
        services.close()
    _warn_contended(outcome.results)  # before the report, whose last line sums the run up
    if args.json:
        _print_json(outcome)
    else:
        _report(run, outcome)
    if outcome.status == "cancelled":
        return EXIT_TERMINATED if stopped_by[:1] == [signal.SIGTERM] else EXIT_INTERRUPTED
    return EXIT_OK if outcome.status == "completed" else EXIT_FAILED


def _given_as(args: argparse.Namespace, name: str) -> str:
    """How the user gave the setting ``name``: its flag, or the BENCHBOARD_ variable it came from."""
    variable = ENV_PREFIX + name.upper()
    if getattr(args, name, None) is None and os.environ.get(variable):
        return variable
    return "--" + name.replace("_", "-")


def _check_model_folders(args: argparse.Namespace, settings: Settings) -> None:
    """A --models-dir, --custom-benchmarks-dir or --panels-dir that is not a folder is refused
    (exit 2), not silently ignored."""
    for name in ("models_dir", "custom_benchmarks_dir", "panels_dir"):
        folder = getattr(settings, name, None)
        if folder is None:
            continue
        path = Path(folder).expanduser()
        if not path.exists():
            raise UsageError(f"{_given_as(args, name)} {folder}: no such folder")
        if not path.is_dir():
            raise UsageError(f"{_given_as(args, name)} {folder}: not a folder")


def _make_folder(args: argparse.Namespace, name: str, folder: str, *, given: str | None = None) -> Path:
    """The folder a setting names (or the folder of the file ``given``), made if missing; one that
    cannot be made is a UsageError naming the flag, the path given and why."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        from storage.database import folder_problem  # duckdb's import, on this rare path only

        raise UsageError(f"{_given_as(args, name)} {given or folder}: {folder_problem(error, path)}") from None
    return path


def _make_db_folder(args: argparse.Namespace, settings: Settings) -> None:
    """The database's folder, as opening it would make it, but refused naming the flag."""
    if settings.db_path != ":memory:":
        _make_folder(args, "db_path", str(Path(settings.db_path).parent), given=settings.db_path)


def _check_makeable(args: argparse.Namespace, name: str, folder: str) -> None:
    """Refuse a folder that can never be made because a part of its path is a file, without
    making it (a run makes its results folder once it is planned)."""
    path = Path(folder).absolute()
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise UsageError(f"{_given_as(args, name)} {folder}: {part} is a file, not a folder")
            return


# What a request may name a device of this machine as, besides its own name.
_LOCAL_DEVICE = re.compile(r"cpu|mps|(cuda|xpu):\d+")
_DEVICE_ALIASES = {"cuda": "cuda:0", "xpu": "xpu:0"}  # as engine.hardware resolves them


def prestart_workers(request: RunRequest, settings: Settings) -> dict:
    """A started worker per local device the run names, by device (the starts go on in the
    background). None where the settings say not to (BENCHBOARD_PRESTART_WORKERS=0), for a
    Ray cluster's devices, or for repeats, whose every repeat starts a fresh worker anyway.
    A device that turns out not to exist costs a worker that fails to start; planning
    refuses the run with the list of what is present."""
    if not settings.prestart_workers or settings.ray_address or request.repeats > 1:
        return {}
    from engine.worker_client import WorkerProcess

    devices = sorted({_DEVICE_ALIASES.get(name, name) for name in request.hardware})
    workers = {}
    for device in (d for d in devices if _LOCAL_DEVICE.fullmatch(d)):
        worker = workers[device] = WorkerProcess(
            device, models_dir=settings.models_dir, custom_benchmarks_dir=settings.custom_benchmarks_dir
        )
        threading.Thread(target=worker.ping, name=f"prestart-{device}", daemon=True).start()
    return workers


def plan_facts(request: RunRequest, workers: dict) -> dict | None:
    """What planning needs of torch and transformers (the devices, each device's environment, the
    models), asked of the prestarted workers so that this process imports neither (issue 16).
    None where there are no workers or one cannot answer (a device that is not here): then
    this process plans by itself, and refuses what is wrong with the list of what is present."""
    if not workers:
        return None
    from engine.worker_protocol import PlanQuery

    query = PlanQuery(models=request.models, priority=request.priority)
    facts = {device: worker.plan_facts(query) for device, worker in workers.items()}
    return None if any(answer is None for answer in facts.values()) else facts


def _warn_contended(results) -> None:
    """Say which results other processes disturbed: their numbers are not to be trusted."""
    for row in results:
        if row.contended:
            share = row.other_cpu_seconds / row.total_timed_seconds if row.total_timed_seconds else 0.0
            print(f"warning: {row.model_name} on {row.hardware} batch {row.batch_size} {row.precision} was measured "
                  f"while other processes used {share:.0%} of a core (contended); measure it again on a quiet "
                  "machine", file=sys.stderr)


def _print_json(value) -> None:
    print(msgspec.json.format(msgspec.json.encode(value)).decode())


def _report(run, outcome) -> None:
    # The client's column lists, which `remote results` prints too; imported here, at the run's
    # end, as the client brings httpx (issue 16).
    from benchboard_client.formatting import GENERATE_RESULT_COLUMNS, RESULT_COLUMNS

    for columns, scenario in ((RESULT_COLUMNS, "forward"), (GENERATE_RESULT_COLUMNS, "generate")):
        rows = [[getattr(r, c) for c in columns] for r in outcome.results if (r.scenario or "forward") == scenario]
        if rows:
            _print_table(list(columns), rows)
    failures = [f for f in outcome.failures if f.error_type != "progressive_stop"]
    for failure in failures:
        print(f"not measured: {failure.model_name} on {failure.hardware} batch {failure.batch_size} "
              f"{failure.precision}: {failure.error_type}: {failure.error_message}", file=sys.stderr)
    if run.skipped_configs:
        print(f"skipped {run.skipped_configs} of {run.total_configs} configs: recent results with the same "
              "environment exist (incremental mode; --no-incremental measures again)", file=sys.stderr)
    print(f"run {run.run_id} {outcome.status}: {len(outcome.results)} measured, {len(failures)} failed, "
          f"{run.skipped_configs} skipped", file=sys.stderr)


def command_serve(args: argparse.Namespace) -> int:
    from storage.database import Database, DatabaseLockedError
    from webapp.cli.serving import DEFAULT_API_URL, is_benchboard, server_of

    settings = Settings.from_env(
        host=args.host, port=args.port, db_path=args.db_path, results_dir=args.results_dir, log_dir=args.log_dir,
        token=args.token, cors_origins=args.cors_origins, models_dir=args.models_dir,
        custom_benchmarks_dir=args.custom_benchmarks_dir, max_seconds=args.max_seconds,
        allowed_hosts=args.allowed_hosts, max_configs_per_run=args.max_configs_per_run,
        panels_dir=args.panels_dir, ray_address=args.ray_address,
    )
    _check_model_folders(args, settings)
    _make_db_folder(args, settings)
    api_url = (args.api_url or DEFAULT_API_URL).rstrip("/")
    if args.reuse_running and is_benchboard(api_url):
        print(f"benchboard: the dashboard is already served at {api_url}/ (with the API); open it there")
        return 0
    _check_log_folder(args, settings)
    _make_folder(args, "results_dir", settings.results_dir)
    # The server opens the database in its lifespan, where a lock error would end in uvicorn's
    # traceback; find out here, and say who holds it.
    try:
        Database(settings.db_path).close()
    except DatabaseLockedError as error:
        url = server_of(error.holder_pid)
        if url and args.reuse_running:
            print(f"benchboard: the dashboard is already served at {url}/ by process {error.holder_pid}, "
                  f"which holds {settings.db_path}; open it there")
            return 0
        served = f" That process is the benchboard server at {url}/: use it." if url else ""
        print(f"error: {error}{served}", file=sys.stderr)
        return EXIT_USAGE
    # Before the app is built and its workers start: a host that does not resolve or a port
    # already taken is refused now, naming the flag, not by uvicorn once everything started.
    _check_bind(args, settings.host, settings.port)
    import uvicorn

    from webapp.app import create_app

    print(f"benchboard dashboard: http://{settings.host}:{settings.port}/  (API under /api/benchmark, docs at /schema)",
          file=sys.stderr)
    # log_config=None: create_app has configured logging (console and log file); uvicorn's
    # own config would replace it.
    # asyncio's loop, even where uvloop is installed: with uvloop, a Ctrl-C during start-up was
    # lost once in nine tries (tests/integration/test_cli_outcomes.py), the server serving on.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info", log_config=None,
                loop="asyncio")
    return EXIT_OK


def _check_log_folder(args: argparse.Namespace, settings: Settings) -> None:
    from webapp.wiring.logging_setup import LOG_FILE

    folder = _make_folder(args, "log_dir", settings.log_dir)
    try:
        with open(folder / LOG_FILE, "a", encoding="utf-8"):
            pass
    except OSError as error:
        raise UsageError(f"{_given_as(args, 'log_dir')} {settings.log_dir}: cannot write {folder / LOG_FILE}: "
                         f"{error.strerror or error}") from None


def _check_bind(args: argparse.Namespace, host: str, port: int) -> None:
    """Bind (and let go) every address ``host`` resolves to at ``port``, as uvicorn will."""
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise UsageError(f"{_given_as(args, 'host')} {host}: no such host or address ({error.strerror})") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
                if error.errno == errno.EADDRINUSE:
                    raise UsageError(f"{_given_as(args, 'port')} {port}: {where} is already in use "
                                     "(another server?)") from None
                if error.errno == errno.EADDRNOTAVAIL:
                    raise UsageError(f"{_given_as(args, 'host')} {host}: not an address of this machine") from None
                if error.errno == errno.EACCES:
                    raise UsageError(f"{_given_as(args, 'port')} {port}: permission denied to listen on {where} "
                                     "(ports below 1024 need privileges)") from None
                raise UsageError(f"cannot listen on {where} (--host, --port): {error.strerror or error}") from None


def _print_records(records: list[msgspec.Struct], columns: list[str], as_json: bool) -> int:
    if as_json:
        _print_json(records)
    else:
        _print_table(columns, [[getattr(record, c) for c in columns] for record in records])
    return 0


def command_hardware(args: argparse.Namespace) -> int:
    from engine.hardware import detect_hardware

    columns = ["name", "type", "device", "memory_gb", "compute_units", "precisions"]
    address = Settings.from_env(ray_address=args.ray_address).ray_address
    if not address:
        return _print_records(detect_hardware(), columns, args.json)
    from engine.ray_executor import connect

    cluster = connect(address)
    try:
        hardware = [*detect_hardware(), *cluster.hardware()]
    finally:
        cluster.close()
    return _print_records(hardware, [*columns, "node", "host", "alive"], args.json)


def command_models(args: argparse.Namespace) -> int:
    from engine.models.registry import ModelRegistry

    settings = Settings.from_env(models_dir=args.models_dir)
    _check_model_folders(args, settings)
    specs = [spec.describe() for spec in ModelRegistry(models_dir=settings.models_dir).list()]
    columns = ["name", "family", "type", "modality", "parameters_million", "source", "tier", "scenarios"]
    return _print_records(specs, columns, args.json)


_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _query_params(given: list[str]) -> dict[str, int | float | str]:
    """``--param NAME=VALUE`` flags as the $parameters they bind: an integer (digits, a sign) as
    an int, a decimal number as a float, anything else (nan, 1_000, " 5") as the text itself."""
    params: dict[str, int | float | str] = {}
    for flag in given:
        name, equals, text = flag.partition("=")
        if not equals:
            raise UsageError(f"--param {flag}: not NAME=VALUE")
        if not _PARAM_NAME.fullmatch(name):
            raise UsageError(f"--param {flag}: {'no name' if not name else repr(name) + ' is not a name'} "
                             "before the = (letters, digits, _; not a digit first)")
        if name in params:
            raise UsageError(f"--param {flag}: ${name} is already given")
        params[name] = int(text) if _INTEGER.fullmatch(text) else float(text) if _DECIMAL.fullmatch(text) else text
    return params


def command_query(args: argparse.Namespace) -> int:
    from storage.database import Database
    from storage.schema import ALLOWED_QUERY_TABLES
    from storage.sql_guard import ParameterRefused, QueryFailed, QueryRefused, QueryTimeout, run_guarded_query

    params = _query_params(args.param)
    settings = Settings.from_env(db_path=args.db_path)
    # Read-only: a mistyped path is refused, never made into an empty database.
    if settings.db_path != ":memory:" and not Path(settings.db_path).exists():
        raise UsageError(f"no database at {settings.db_path} (pass --db-path)")
    with Database(settings.db_path) as db:
        try:
            # pool=None: one query of one process, on this thread, finished before the database closes.
            result = run_guarded_query(db, args.sql, allowed_tables=ALLOWED_QUERY_TABLES, params=params,
                                       timeout_s=settings.sql_timeout_s, row_cap=settings.sql_row_cap, pool=None)
        except ParameterRefused as error:
            if error.missing:
                print(f"error: query refused: parameter ${error.name} has no value: pass it with "
                      f"--param {error.name}=VALUE", file=sys.stderr)
            else:
                print(f"error: --param {error.name}: the query does not use ${error.name}", file=sys.stderr)
            return EXIT_USAGE
        except QueryRefused as error:
            print(f"error: query refused: {error.reason}", file=sys.stderr)
            return EXIT_USAGE
        except (QueryTimeout, QueryFailed) as error:
            print(f"error: {error.reason}", file=sys.stderr)
            return EXIT_FAILED
    if args.json:
        print(json.dumps(msgspec.to_builtins(result), default=str, indent=2))
    else:
        _print_table(result.columns, result.rows)
        if result.truncated:
            print(f"(truncated at {result.row_count} rows)", file=sys.stderr)
    return 0


def _ray_missing(args: argparse.Namespace) -> bool:
    """A Ray address without Ray installed (say how to install it), or one it cannot take
    (ray://, Ray Client): exit 2, before anything starts."""
    from engine.nodes import RAY_MISSING, ray_installed, unsupported_ray_address

    address = Settings.from_env(ray_address=args.ray_address).ray_address
    refused = unsupported_ray_address(address) if address else None
    if refused is not None:
        source = "" if args.ray_address else " (from BENCHBOARD_RAY_ADDRESS)"
        print(f"error: {refused}{source}", file=sys.stderr)
        return True
    if address and not ray_installed():
        print(f"error: {RAY_MISSING}", file=sys.stderr)
        return True
    return False


COMMANDS = {"run": command_run, "serve": command_serve, "hardware": command_hardware, "models": command_models,
            "query": command_query}


def main(argv: list[str] | None = None) -> int:
    """Run one ``benchboard`` command; its exit status (README.md, "Exit status"). No traceback
    reaches the user for what a user can do: a bad flag, a path, Ctrl-C, a closed pipe."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return interrupted()


def interrupted() -> int:
    """Ctrl-C outside a run's measuring (which cancels the run instead): one line, exit 130."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while exiting is no traceback either
    forget_interrupt()
    try:
        print("interrupted", file=sys.stderr)
    except OSError:
        pass
    return EXIT_INTERRUPTED


def forget_interrupt() -> None:
    """Clear CPython's note of an unhandled Ctrl-C. A KeyboardInterrupt that went through an
    ``exec`` of source text (dataclasses and enum build their methods so, at import) sets it, caught
    or not, and the interpreter then ends itself with SIGINT at exit (status -2, not ours); the next
    ``exec`` of source text that succeeds clears it (CPython's run_eval_code_obj)."""
    exec("pass")


def _main(argv: list[str] | None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parse_arguments(parser, argv)
    try:
        code = _dispatch(args)
        sys.stdout.flush()  # here, where a reader that went away is caught, not at exit
        return code
    except BrokenPipeError:
        # The reader went away (`benchboard models | head`, `remote query --json | head -1`): not
        # an error of ours. stdout points at /dev/null, so the interpreter's last flush is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (UsageError, SettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, except that an unknown flag is refused by the (sub)command it was
    given to, with that command's usage, not the top level's."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _command_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost subcommand's parser that ``args`` went through (``remote query``'s, say)."""
    for action in parser._actions:  # argparse keeps its subparsers nowhere public
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return _command_parser(chosen, args)
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("run", "serve", "hardware") and _ray_missing(args):
        return EXIT_USAGE
    if args.command == "remote":
        from webapp.cli.remote import run_remote

        return run_remote(args)
    if args.command == "compare":
        from webapp.cli.compare import run_compare

        return run_compare(args)
    try:
        return COMMANDS[args.command](args)
    except InvalidRequestError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:
        path_error = _storage_error(error, "DatabasePathError")
        if path_error:
            print(f"error: {_given_as(args, 'db_path')} {error.path}: {error.reason}", file=sys.stderr)
            return EXIT_USAGE
        if not isinstance(error, EngineError) and not _storage_error(error):
            raise
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED


def _storage_error(error: Exception, kind: str = "StorageError") -> bool:
    """A storage.database.StorageError (or the subclass named ``kind``); that module (and duckdb)
    is imported only by the commands that open a database, so an error of a command that did not
    cannot be one."""
    database = sys.modules.get("storage.database")
    return database is not None and isinstance(error, getattr(database, kind))


if __name__ == "__main__":
    sys.exit(main())
