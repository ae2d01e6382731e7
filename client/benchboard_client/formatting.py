"""Plain-text views of the server's answers, for terminals: a table and a progress line."""

from __future__ import annotations

from collections.abc import Sequence

PROGRESS_BAR_WIDTH = 24


def format_value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        # Throughputs run to the tens of thousands, latencies to fractions of a millisecond.
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(item) for item in value)
    return str(value)


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Rows as aligned text columns; ``columns`` picks and orders them (default: the first row's keys)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    cells = [[format_value(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    numeric = [all(_is_number(row.get(column)) for row in rows) for column in columns]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(columns), line(["-" * width for width in widths]), *(line(row) for row in cells)])


def _is_number(value: object) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def describe_progress(status: dict) -> str:
    """One line for a status object: bar, percent, status, step, configs and models done."""
    progress = min(max(float(status.get("progress") or 0.0), 0.0), 1.0)
    filled = round(progress * PROGRESS_BAR_WIDTH)
    bar = "#" * filled + "-" * (PROGRESS_BAR_WIDTH - filled)
    parts = [f"[{bar}] {progress:6.1%}", str(status.get("status", "?"))]
    if status.get("current_step"):
        parts.append(str(status["current_step"]))
    if status.get("total_configs") is not None:
        parts.append(f"configs {status.get('completed_configs', 0)}/{status['total_configs']}")
    parts.append(f"models {status.get('completed_models', 0)}/{status.get('total_models', 0)}")
    if status.get("error"):
        parts.append(f"error: {status['error']}")
    return "  ".join(parts)


# The columns a results table shows, in the order a reader compares them: the one list, which
# ``benchboard run`` prints too (webapp/cli/main.py), so `remote results` shows what `run` does.
RESULT_COLUMNS = ("model_name", "hardware", "batch_size", "precision", "timing", "p50_latency_ms",
                  "p90_latency_ms", "p99_latency_ms", "throughput_items_per_second", "memory_peak_mb",
                  "n_samples", "ci_met")
# A generate result's own figures (time to first token, time per output token, end to end).
GENERATE_RESULT_COLUMNS = ("model_name", "hardware", "batch_size", "precision", "new_tokens", "ttft_ms",
                           "ttft_p99_ms", "tpot_ms", "tpot_p99_ms", "e2e_ms", "decode_tokens_per_second",
                           "prefill_tokens_per_second", "memory_peak_mb", "n_samples", "ci_met")


def format_results(rows: Sequence[dict], leading: Sequence[str] = (), trailing: Sequence[str] = ()) -> str:
    """Result rows as tables by scenario: forward rows with ``RESULT_COLUMNS``, generate rows with
    ``GENERATE_RESULT_COLUMNS`` under a ``generate:`` line (a row without a scenario is a forward
    one, as stored before scenarios existed). ``leading``/``trailing`` columns frame each table."""
    if not rows:
        return "(no rows)"
    tables = []
    for scenario, columns in (("forward", RESULT_COLUMNS), ("generate", GENERATE_RESULT_COLUMNS)):
        picked = [row for row in rows if (row.get("scenario") or "forward") == scenario]
        if picked:
            table = format_table(picked, [*leading, *columns, *trailing])
            tables.append(table if scenario == "forward" else f"generate:\n{table}")
    return "\n\n".join(tables)
