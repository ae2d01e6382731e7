"""The Compare page (/compare): two runs, or a run and its history, config by config.

The same comparison as GET /api/benchmark/compare and ``benchboard compare`` (webapp.api.compare),
shown as a table sorted by ratio with verdict badges, and each pair's sample distributions.
``/compare?contender=RUN`` alone compares RUN with the previous run of the same configs.
"""

from __future__ import annotations

from litestar import Controller, get
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template
from litestar.status_codes import HTTP_400_BAD_REQUEST

from engine.compare import DEFAULT_LOOKBACK, RunComparison, format_threshold
from engine.errors import InvalidRequestError
from engine.runs import RunRecord
from storage import comparisons
from storage import runs as run_rows
from webapp.wiring.comparisons import ReusedOf, comparison_request, reused_by_services
from webapp.pages.rendering import PAGE_EXCEPTION_HANDLERS, optional_text, render
from webapp.reporting import charts
from webapp.wiring.services import Services

RUN_CHOICES = 200


def run_choices(services: Services) -> list[tuple[str, str]]:
    """(run id, label) of the stored runs, newest first, for the pickers."""
    choices = []
    for record in run_rows.list_runs(services.db, RunRecord, limit=RUN_CHOICES):
        request = record.request
        if request is None:  # stored by another writer without its request
            models = "request not stored"
        else:
            models = ", ".join(request.models or [f"{request.priority} tier"])
        created = record.created_at.strftime("%Y-%m-%d %H:%M") if record.created_at else ""
        choices.append((record.run_id, f"{record.run_id} · {created} · {record.status} · {models}"))
    return choices


def previous_run(services: Services, run_id: str, reused_of: ReusedOf) -> str | None:
    """The latest earlier completed run that measured one of the run's configs, the configs it
    reused included: what ``/compare?contender=RUN`` compares RUN with."""
    return comparisons.previous_run_with_configs(services.db, run_id, reused_of(run_id))


def _short(run_id: str | None) -> str:
    return (run_id or "")[:8]


def side_labels(comparison: RunComparison) -> tuple[str, str]:
    if comparison.mode == "history":
        return f"last {comparison.lookback}", f"run {_short(comparison.contender_run_id)}"
    return f"run {_short(comparison.baseline_run_id)}", f"run {_short(comparison.contender_run_id)}"


def comparison_view(comparison: RunComparison) -> dict:
    """What the page adds to the comparison: each config's chart of both distributions."""
    labels = side_labels(comparison)
    return {
        "comparison": comparison,
        "labels": labels,
        "charts": [
            charts.sample_distributions(config.label, config.baseline.quantiles_ms, config.contender.quantiles_ms, labels)
            for config in comparison.configs
        ],
        "threshold_text": format_threshold(comparison.threshold),
    }


class ComparePages(Controller):
    exception_handlers = PAGE_EXCEPTION_HANDLERS
    include_in_schema = False

    @get("/compare", name="compare", sync_to_thread=True)
    def compare(
        self,
        request: HTMXRequest,
        services: Services,
        baseline: str | None = None,
        contender: str | None = None,
        history: str | None = None,
        threshold: str | None = None,
        lookback: str | None = None,
    ) -> Template:
        values = {
            "baseline": optional_text(baseline), "contender": optional_text(contender),
            "history": optional_text(history), "threshold": optional_text(threshold) or "",
            "lookback": optional_text(lookback) or str(DEFAULT_LOOKBACK),
        }
        context = {"active": "compare", "values": values, "errors": {}, "runs": run_choices(services),
                   "comparison": None, "note": None}
        status_code = 200
        reused_of = reused_by_services(services)
        if values["contender"] and not values["baseline"] and not values["history"]:
            services.run_status(values["contender"])  # an unknown run is a 404 page
            previous = previous_run(services, values["contender"], reused_of)
            if previous is None:
                context["note"] = ("No earlier completed run measured any of this run's configs; "
                                   "compare it with its history instead, or pick a baseline.")
            values["baseline"] = previous
        asked = values["history"] or (values["baseline"] and values["contender"])
        if asked:
            try:
                try:
                    lookback = int(values["lookback"])
                except ValueError:
                    raise InvalidRequestError("lookback", f"{values['lookback']!r} is not a whole number") from None
                # A whole number out of range gets comparison_request's "must be between 1 and ...".
                comparison = comparison_request(
                    services.db, baseline=values["baseline"], contender=values["contender"],
                    history=values["history"], threshold=values["threshold"], lookback=lookback,
                    reused_of=reused_of,
                )
            except InvalidRequestError as error:
                context["errors"] = {error.field: error.reason}
                status_code = HTTP_400_BAD_REQUEST
            else:
                context |= comparison_view(comparison)
        return render(request, "pages/compare.html", "partials/compare_body.html", context, status_code=status_code)

    @get("/compare/previous/{run_id:str}", name="compare-previous", sync_to_thread=True)
    def previous(self, services: Services, run_id: str) -> Template:
        """The run page's link to ``/compare?contender=RUN``, or nothing when no earlier completed
        run measured any of its configs (the comparison would only say so). The run page asks for
        it once loaded, so the page itself does not wait on planning the run again."""
        services.run_status(run_id)  # an unknown run is a 404
        previous = previous_run(services, run_id, reused_by_services(services))
        return Template(template_name="partials/compare_previous.html", context={"run_id": run_id, "previous": previous})
