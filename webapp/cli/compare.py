"""``benchboard compare``: two runs config by config, or a run against its history; a CI gate.

    benchboard compare BASELINE CONTENDER [--db-path PATH | --url URL] [--threshold 5%] [--fail-on-regression]
    benchboard compare --history RUN [--lookback 10]

Exit status: 0; 1 only with --fail-on-regression when a config is slower; 2 for an unknown run,
a bad argument, or data that could not be read (no database at the path, a file that is not a
DuckDB database, a database another process holds, a server that cannot be reached or refuses
the token), so a CI gate tells a regression from a comparison that never happened.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import msgspec

from engine.compare import DEFAULT_LOOKBACK, MAX_LOOKBACK, RunComparison, format_ratio, format_threshold, thresholds_from
from engine.errors import InvalidRequestError, UnknownRunError
from storage.errors import StorageError
from webapp.cli.main import _add_model_dir_flags, _print_json, _print_table
from webapp.wiring.settings import Settings

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2


def add_compare_parser(subparsers) -> argparse.ArgumentParser:
    compare = subparsers.add_parser(
        "compare", help="compare two runs, or a run against its history; a CI regression gate",
        description="Match the configs of two runs (or of a run and the last K results of each config) and "
                    "give each a verdict: slower, faster, unchanged, noisy or incomparable.",
    )
    compare.add_argument("runs", nargs="*", metavar="RUN", help="BASELINE CONTENDER run ids")
    compare.add_argument("--history", metavar="RUN", default=None,
                         help="compare RUN against the last --lookback results of each of its configs")
    compare.add_argument("--lookback", type=int, default=DEFAULT_LOOKBACK, metavar="K",
                         help=f"history depth (default {DEFAULT_LOOKBACK})")
    compare.add_argument("--threshold", default=None, metavar="T",
                         help="ratio of medians beyond which a config may be slower or faster: 5%% or 0.05 (default 5%%)")
    compare.add_argument("--threshold-for", action="append", default=[], metavar="PATTERN=T",
                         help="a threshold for configs whose key or model name matches PATTERN ('bert-*=10%%'); repeatable")
    compare.add_argument("--fail-on-regression", action="store_true",
                         help="exit 1 when any config is slower (anything else that goes wrong exits 2)")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")
    where = compare.add_mutually_exclusive_group()
    where.add_argument("--db-path", default=None, help="DuckDB file (env BENCHBOARD_DB_PATH; default benchmarks.duckdb)")
    where.add_argument("--url", default=None, help="a running server instead of a database file")
    compare.add_argument("--token", default=None, help="API token for --url (default: env BENCHBOARD_TOKEN)")
    # With --db-path: the results a run reused are found by planning its request again, which
    # needs the folders its models came from.
    _add_model_dir_flags(compare)
    return compare


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def run_compare(args: argparse.Namespace) -> int:
    if args.history and args.runs:
        return _error("give BASELINE CONTENDER or --history RUN, not both", EXIT_USAGE)
    if not args.history and len(args.runs) != 2:
        return _error("give two run ids (BASELINE CONTENDER), or --history RUN", EXIT_USAGE)
    if not 1 <= args.lookback <= MAX_LOOKBACK:
        return _error(f"--lookback must be between 1 and {MAX_LOOKBACK}", EXIT_USAGE)
    try:
        thresholds_from(args.threshold, args.threshold_for)  # refused here, before any connection
        comparison = _remote(args) if args.url else _local(args)
    except (InvalidRequestError, UnknownRunError, StorageError) as error:
        return _error(str(error), EXIT_USAGE)  # never EXIT_REGRESSION: that is a slower config only
    if args.json:
        _print_json(comparison)
    else:
        print_comparison(comparison)
    return EXIT_REGRESSION if args.fail_on_regression and comparison.has_regression else EXIT_OK


def _local(args: argparse.Namespace) -> RunComparison:
    from webapp.wiring.comparisons import history_comparison, reused_by_services, run_comparison
    from webapp.wiring.services import Services

    settings = Settings.from_env(db_path=args.db_path, models_dir=args.models_dir,
                                 custom_benchmarks_dir=args.custom_benchmarks_dir)
    db_path = settings.db_path
    if not Path(db_path).exists():
        raise StorageError(f"no database at {db_path} (pass --db-path, or --url for a server)")
    thresholds = thresholds_from(args.threshold, args.threshold_for)
    import duckdb

    try:
        # Services, not just the database: which results a run reused (incremental mode) comes
        # from planning its request again, as on the server, so both compare the same results.
        services = Services(settings, allow_model_paths=True)
        try:
            reused_of = reused_by_services(services)
            if args.history:
                return history_comparison(services.db, args.history, thresholds, args.lookback, reused_of)
            return run_comparison(services.db, args.runs[0], args.runs[1], thresholds, reused_of)
        finally:
            services.close()
    except duckdb.Error as error:  # one Database does not translate (a file of another DuckDB version, say)
        raise StorageError(f"cannot read the database {db_path}: {error}") from None


class _RemoteFailure(StorageError):
    """The server could not be asked, or refused (a token, an error of its own): exit 2, like a
    database that cannot be opened."""


def _remote(args: argparse.Namespace) -> RunComparison:
    from benchboard_client import (
        BenchmarkAPIClient,
        BenchmarkAPIError,
        InvalidRequest,
        InvalidServerAddress,
        NotFound,
    )

    token = args.token or os.environ.get("BENCHBOARD_TOKEN") or None
    try:
        with BenchmarkAPIClient(args.url, token=token) as client:
            answer = client.compare_runs(
                baseline=None if args.history else args.runs[0], contender=None if args.history else args.runs[1],
                history=args.history, threshold=args.threshold, threshold_for=args.threshold_for or None,
                lookback=args.lookback,
            )
    except InvalidServerAddress as error:  # refused before any connection: no scheme, no host, a bad port
        raise InvalidRequestError("--url", error.reason) from None
    except NotFound as error:
        # The server's reason already reads "no run with id 'X'", as a local comparison says it.
        raise _RemoteFailure(error.reason or str(error)) from None
    except InvalidRequest as error:
        raise InvalidRequestError(error.field or "request", error.reason or str(error)) from None
    except BenchmarkAPIError as error:
        raise _RemoteFailure(str(error)) from None
    return msgspec.convert(answer, RunComparison)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def print_comparison(comparison: RunComparison, out=None) -> None:
    """The table (config, both medians, ratio with its CI, p, verdict), then unmatched configs."""
    out = out or sys.stdout
    history = comparison.mode == "history"
    columns = ["config", "history mean ms" if history else "baseline ms", "contender ms", "ratio [95% CI]"]
    columns += ["z", "p", "verdict"] if history else ["p", "verdict"]
    rows = []
    for config in comparison.configs:
        row = [config.label, _ms(config.baseline.median_ms), _ms(config.contender.median_ms), format_ratio(config)]
        if history:
            row.append("-" if config.z_score is None else f"{config.z_score:+.1f}")
        verdict = f"{config.verdict} (reused from run {config.reused_from})" if config.reused_from else config.verdict
        rows.append(row + [_p(config.p_value), verdict])
    if rows:
        _print_table(columns, rows, out=out)
    for title, unmatched in (("added", comparison.added), ("removed", comparison.removed)):
        for config in unmatched:
            reused = f", reused from run {config.run_id}" if title == "added" and config.run_id != comparison.contender_run_id else ""
            print(f"{title}: {config.label} (median {_ms(config.median_ms)} ms{reused})", file=out)
    for config in comparison.reused:
        print(f"reused, same measurement: {config.label} (median {_ms(config.median_ms)} ms, "
              f"measured by run {config.run_id})", file=out)
    what = (f"run {comparison.contender_run_id} against the last {comparison.lookback} results of each config"
            if history else f"run {comparison.contender_run_id} against run {comparison.baseline_run_id}")
    counts = ", ".join(f"{n} {verdict}" for verdict, n in comparison.counts.items() if n)
    # Against a history a reused result is the measuring run's comparison: shown, not counted.
    uncounted = sum(1 for config in comparison.configs if config.reused_from) if history else 0
    matched = f"{len(comparison.configs) - uncounted} matched ({counts or 'none'})"
    if uncounted:
        matched += f", {uncounted} reused from earlier runs (not counted)"
    print(f"{what}: {matched}, {len(comparison.added)} added, "
          f"{len(comparison.removed)} removed{f', {len(comparison.reused)} reused' if comparison.reused else ''}; threshold {format_threshold(comparison.threshold)}", file=sys.stderr)
