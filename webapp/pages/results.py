"""One result (/results/{id}): its samples as a histogram and in iteration order, every
statistic, the environment and fingerprint, the same config in other runs; and its raw
samples as JSON (GET /api/benchmark/results/{run_id}/samples/{result_id})."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template

from engine.errors import UnknownResultError
from engine.result import ResultRow
from engine.runs import RunRecord
from storage import dashboard
from storage import runs as run_rows
from webapp.api.dependencies import require_allowed_origin
from webapp.api.parameters import RunId
from webapp.errors import ERROR_RESPONSES
from webapp.pages.live_runs import new_submission_token
from webapp.pages.rendering import PAGE_EXCEPTION_HANDLERS, render
from webapp.reporting import charts
from webapp.wiring.services import Services

HISTOGRAM_BINS = 30
TRACE_POINTS = 600
SAMPLES_SHOWN = 2_000  # in the page's sample list; the JSON endpoint has them all


class StoredResult(ResultRow, kw_only=True):
    """A result as the result page reads it: the row plus its identity in storage and its trust."""

    config_key: str | None = None
    fingerprint: str | None = None
    noisy: bool = False


class ResultSamples(msgspec.Struct, kw_only=True):
    """One result's raw samples, in iteration order (milliseconds per timed iteration)."""

    run_id: str | None
    result_id: int
    n_samples: int | None
    samples_ms: list[float]


# Labels of the statistics the page lists, in this order; any other measured field a result
# carries (a later engine's) is listed after them under its own name.
STATISTICS: dict[str, tuple[str, str]] = {
    "n_samples": ("Timed iterations (n)", "{:,}"),
    "average_latency_ms": ("Mean (ms)", "{:,.4f}"),
    "std_latency_ms": ("Standard deviation (ms)", "{:,.4f}"),
    "min_latency_ms": ("Min (ms)", "{:,.4f}"),
    "p50_latency_ms": ("Median, p50 (ms)", "{:,.4f}"),
    "ci_low_ms": ("Median's 95% CI, low (ms)", "{:,.4f}"),
    "ci_high_ms": ("Median's 95% CI, high (ms)", "{:,.4f}"),
    "ci_met": ("CI met the target", "{}"),
    "p90_latency_ms": ("p90 (ms)", "{:,.4f}"),
    "p95_latency_ms": ("p95 (ms)", "{:,.4f}"),
    "p99_latency_ms": ("p99 (ms)", "{:,.4f}"),
    "max_latency_ms": ("Max (ms)", "{:,.4f}"),
    "throughput_items_per_second": ("Throughput (items/s)", "{:,.2f}"),
    "throughput_ci_low_items_per_second": ("Throughput's 95% CI, low (items/s)", "{:,.2f}"),
    "throughput_ci_high_items_per_second": ("Throughput's 95% CI, high (items/s)", "{:,.2f}"),
    "throughput_tokens_per_second": ("Throughput (tokens/s)", "{:,.1f}"),
    "load_time_ms": ("Load time (ms)", "{:,.1f}"),
    "cold_latency_ms": ("Cold first iteration (ms)", "{:,.3f}"),
    "memory_peak_mb": ("Peak memory above the loaded model (MB)", "{:,.1f}"),
    "total_timed_seconds": ("Timed seconds", "{:,.3f}"),
    "wall_seconds": ("Wall seconds for the config", "{:,.2f}"),
    "contended": ("Host contended while timed", "{}"),
    # A generation's own figures (issue 11); its latency statistics above are end to end.
    "ttft_ms": ("Time to first token (TTFT), median (ms)", "{:,.4f}"),
    "ttft_ci_low_ms": ("TTFT median's 95% CI, low (ms)", "{:,.4f}"),
    "ttft_ci_high_ms": ("TTFT median's 95% CI, high (ms)", "{:,.4f}"),
    "ttft_p90_ms": ("TTFT p90 (ms)", "{:,.4f}"),
    "ttft_p99_ms": ("TTFT p99 (ms)", "{:,.4f}"),
    "tpot_ms": ("Time per output token (TPOT), median (ms)", "{:,.4f}"),
    "tpot_ci_low_ms": ("TPOT median's 95% CI, low (ms)", "{:,.4f}"),
    "tpot_ci_high_ms": ("TPOT median's 95% CI, high (ms)", "{:,.4f}"),
    "tpot_p90_ms": ("TPOT p90 over every per-token gap (ms)", "{:,.4f}"),
    "tpot_p99_ms": ("TPOT p99 over every per-token gap (ms)", "{:,.4f}"),
    "e2e_ms": ("End-to-end generation, median (ms)", "{:,.4f}"),
    "decode_tokens_per_second": ("Decode throughput (tokens/s)", "{:,.1f}"),
    "prefill_tokens_per_second": ("Prefill throughput (tokens/s)", "{:,.1f}"),
}
# What the page shows elsewhere (identity, setup) or not at all.
NOT_STATISTICS = frozenset({
    "model_name", "hardware", "batch_size", "precision", "sequence_length", "image_size", "status", "samples_ms",
    "threads", "torch_version", "device_name", "weights", "parameters_million", "error_type", "error_message",
    "stop_reason", "run_id", "result_id", "model_family", "model_type", "hardware_type", "created_at",
    "config_key", "fingerprint", "noisy", "timing", "attn_implementation", "scenario", "new_tokens",
    "ttft_samples_ms", "tpot_samples_ms",
})


def statistics(result: StoredResult) -> list[tuple[str, str, str]]:
    """(field, label, value as text) for every statistic the result carries."""
    values = msgspec.structs.asdict(result)
    names = [*STATISTICS, *(name for name in values if name not in STATISTICS and name not in NOT_STATISTICS)]
    shown = []
    for name in names:
        value = values.get(name)
        if value is None:
            continue
        label, spec = STATISTICS.get(name, (name, "{}"))
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, float) and spec == "{}":
            text = f"{value:,.4g}"
        else:
            text = spec.format(value)
        shown.append((name, label, text))
    return shown


def setup_facts(result: StoredResult) -> list[tuple[str, str]]:
    """What the config ran as: shape, precision, threads, versions."""
    values = msgspec.structs.asdict(result)
    facts = [
        ("Model", f"{result.model_name} ({result.model_family or 'no family'}, {result.model_type or '?'})"),
        ("Hardware", f"{result.hardware} · {result.device_name or '?'}"),
        ("Batch size", str(result.batch_size)),
        ("Precision", result.precision),
        ("Sequence length", "—" if result.sequence_length is None else str(result.sequence_length)),
    ]
    for name, label in (("image_size", "Image size"), ("scenario", "Scenario"), ("new_tokens", "New tokens"),
                        ("timing", "Timing mode"),
                        ("attn_implementation", "Attention"), ("threads", "Threads"),
                        ("torch_version", "torch"), ("weights", "Weights"),
                        ("parameters_million", "Parameters (M)")):
        if values.get(name) is not None:
            facts.append((label, str(values[name])))
    return facts


def result_context(services: Services, result_id: int) -> dict:
    db = services.db
    result = dashboard.result_detail(db, result_id, StoredResult)
    if result is None:
        raise NotFoundException(f"there is no result {result_id}")
    run = run_rows.get_run(db, result.run_id, RunRecord) if result.run_id else None
    environment = (run.environment.get(result.hardware) if run else None) or {}
    histogram = dashboard.sample_histogram(db, result_id, HISTOGRAM_BINS)
    trace = dashboard.sample_trace(db, result_id, TRACE_POINTS)
    samples = dashboard.result_samples(db, result_id) or []
    others = dashboard.same_config_results(db, result.config_key)
    generate = result.scenario == "generate"
    return generation_charts(db, result) | {
        "active": "comparison",
        "result": result,
        "run": run,
        "statistics": statistics(result),
        "setup": setup_facts(result),
        "environment": sorted(environment.items()),
        "histogram_chart": charts.sample_histogram(
            histogram, result.p50_latency_ms, result.ci_low_ms, result.ci_high_ms,
            **({"what": "timed generations (end to end)", "count_title": "Generations",
                "axis_title": "End-to-end latency (ms)"} if generate else {}),
        ),
        "histogram_rows": histogram.to_dict("records"),
        "trace_chart": charts.sample_trace(trace),
        "samples": samples[:SAMPLES_SHOWN],
        "samples_total": len(samples),
        "samples_url": f"/api/benchmark/results/{result.run_id}/samples/{result_id}" if result.run_id else None,
        "submission": new_submission_token(),
        "others": [row for row in others.astype(object).where(others.notna(), None).to_dict("records")
                   if row["result_id"] != result_id],
    }


def generation_charts(db, result: StoredResult) -> dict:
    """A generation's raw samples as histograms (issue 11): every sample's time to first
    token, with the median TTFT and its CI marked, and every gap between consecutive tokens,
    with the median TPOT and its CI (TPOT is a sample's mean gap; the gaps show its spread)."""
    if result.scenario != "generate" or result.result_id is None:
        return {"ttft_chart": None, "ttft_rows": [], "gaps_chart": None, "gaps_rows": []}
    ttft = dashboard.sample_histogram(db, result.result_id, HISTOGRAM_BINS, samples="ttft_samples_ms")
    gaps = dashboard.sample_histogram(db, result.result_id, HISTOGRAM_BINS, samples="tpot_samples_ms")
    return {
        "ttft_chart": charts.sample_histogram(
            ttft, result.ttft_ms, result.ttft_ci_low_ms, result.ttft_ci_high_ms, what="times to first token",
            axis_title="Time to first token (ms)", count_title="Generations", median="median TTFT",
        ),
        "ttft_rows": ttft.to_dict("records"),
        "gaps_chart": charts.sample_histogram(
            gaps, result.tpot_ms, result.tpot_ci_low_ms, result.tpot_ci_high_ms, what="per-token gaps",
            axis_title="Gap between consecutive tokens (ms)", count_title="Gaps", median="median TPOT",
        ),
        "gaps_rows": gaps.to_dict("records"),
    }


class ResultPages(Controller):
    exception_handlers = PAGE_EXCEPTION_HANDLERS
    include_in_schema = False

    @get("/results/{result_id:int}", name="result", sync_to_thread=True)
    def result(self, request: HTMXRequest, services: Services, result_id: int) -> Template:
        context = result_context(services, result_id)
        return render(request, "pages/result.html", "pages/result.html", context)


class ResultSamplesController(Controller):
    path = "/api/benchmark"
    tags = ["data"]
    guards = [require_allowed_origin]

    @get(
        "/results/{run_id:str}/samples/{result_id:int}",
        operation_id="getResultSamples",
        responses=ERROR_RESPONSES,
        sync_to_thread=True,
    )
    def samples(
        self,
        services: Services,
        run_id: RunId,
        result_id: Annotated[int, Parameter(description="Result id (result_id of a results row)", ge=1)],
    ) -> ResultSamples:
        """One result's raw samples in iteration order, which results rows leave out."""
        result = dashboard.result_detail(services.db, result_id, StoredResult)
        if result is None or result.run_id != run_id:
            raise UnknownResultError(run_id, result_id)
        samples = dashboard.result_samples(services.db, result_id) or []
        return ResultSamples(
            run_id=result.run_id, result_id=result_id, n_samples=result.n_samples, samples_ms=samples
        )
