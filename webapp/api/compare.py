"""GET /api/benchmark/compare: two runs config by config, or a run against its history."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter

from engine.compare import DEFAULT_LOOKBACK, MAX_LOOKBACK, RunComparison
from webapp.api.dependencies import require_allowed_origin
from webapp.api.parameters import OptionalRunId
from webapp.errors import ERROR_RESPONSES
from webapp.wiring.comparisons import comparison_request, reused_by_services
from webapp.wiring.services import Services



class CompareController(Controller):
    path = "/api/benchmark"
    tags = ["comparisons"]
    guards = [require_allowed_origin]

    @get("/compare", operation_id="compareRuns", responses=ERROR_RESPONSES, sync_to_thread=True)
    def compare(
        self,
        services: Services,
        baseline: OptionalRunId = None,
        contender: OptionalRunId = None,
        history: OptionalRunId = None,
        threshold: Annotated[str | None, Parameter(description="Ratio threshold: 5% or 0.05 (default 5%)",
                                                   max_length=32)] = None,
        threshold_for: Annotated[list[str] | None, Parameter(
            description="Per-config thresholds, PATTERN=THRESHOLD (bert-*=10%); the pattern matches the "
                        "config key or the model name", max_items=64)] = None,
        lookback: Annotated[int, Parameter(ge=1, le=MAX_LOOKBACK, description="History depth K")] = DEFAULT_LOOKBACK,
    ) -> RunComparison:
        """Two runs config by config (``baseline`` and ``contender``), or one run against the last
        ``lookback`` results of each of its configs (``history``): ratio of medians with its CI,
        Mann-Whitney p, z-score (history) and a verdict per config; configs on one side only, and
        (``reused``) results both runs hold, one having reused it: one measurement, no verdict."""
        return comparison_request(
            services.db, baseline=baseline, contender=contender, history=history, threshold=threshold,
            threshold_for=threshold_for or (), lookback=lookback, reused_of=reused_by_services(services),
        )
