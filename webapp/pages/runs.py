"""Live runs: the list and the start form (/runs), one run (/runs/{id}) and its live HTML stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from litestar import Controller, get, post
from litestar.channels import ChannelsPlugin
from litestar.datastructures import FormMultiDict
from litestar.plugins.htmx import ClientRedirect, HTMXRequest
from litestar.response import Redirect, ServerSentEvent, Template
from litestar.response.sse import ServerSentEventMessage
from litestar.status_codes import HTTP_422_UNPROCESSABLE_ENTITY

import msgspec

from engine.config import DEFAULT_NEW_TOKENS, DEFAULT_SCENARIO, PRECISIONS, SCENARIOS
from engine.errors import InvalidRequestError
from engine.result import Measurement, ResultRow
from engine.runs import PRIORITIES, RunRecord, RunRequest, RunStatus, run_request
from storage import results as result_rows
from storage import runs as run_rows
from webapp.api.dependencies import require_token
from webapp.pages import live_runs
from webapp.live import ResultEvent, decode_event, run_channel
from webapp.pages.rendering import PAGE_EXCEPTION_HANDLERS, render, render_to_string, wants_fragment
from webapp.wiring import reuse
from webapp.wiring.comparisons import regressed_runs
from webapp.wiring.services import Services

RECENT_RUNS = 50
# After "done" the browser closes the stream itself. Ending it from here in the same
# instant could look like a dropped connection to EventSource (an error, and a reconnect).
CLOSE_GRACE_S = 2.0


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def status_view(status: RunStatus, remaining: float | None = None) -> dict:
    """The status plus what the page prints: percent, ETA and elapsed time as text.

    ``remaining`` is the page's own estimate (live_runs.estimate_remaining: this run's and
    history's per-config times); without one, the engine's."""
    remaining = status.estimated_remaining_time if remaining is None else remaining
    return msgspec.structs.asdict(status) | {
        "percent": int(status.progress * 100),
        "terminal": status.terminal,
        "eta": "—" if status.terminal else ("estimating…" if remaining is None else duration(remaining)),
        "elapsed": duration(status.elapsed_time),
    }


def row_view(row: Measurement) -> dict:
    """A result row as the run page shows it, from storage or from a live event alike."""
    fields = msgspec.structs.asdict(row)
    return fields | {
        "key": row.config.key(),
        "outcome": row.error_type or row.status,
        # Noisy: the median never converged, or (where results record it) the host was contended.
        "noisy": fields.get("ci_met") is False or bool(fields.get("contended")),
    }


def stored_rows(services: Services, run_id: str) -> tuple[list[dict], list[dict]]:
    """A run's measured rows and failed rows, each in recording order."""
    return (
        [row_view(row) for row in result_rows.results_for_run(services.db, run_id, ResultRow)],
        [row_view(row) for row in result_rows.failures_for_run(services.db, run_id, ResultRow)],
    )


# What the runs table shows of a run whose row holds no request.
NO_REQUEST_TEXT = "request not stored"
NO_REQUEST = {"models": [NO_REQUEST_TEXT], "hardware": [], "batch_sizes": [], "precision": None,
              "sequence_length": None, "scenario": None, "new_tokens": None}


def recent_runs(services: Services) -> list[dict]:
    runs = []
    for record in run_rows.list_runs(services.db, RunRecord, limit=RECENT_RUNS):
        status = services.run_status(record.run_id) if services.scheduler.get(record.run_id) else record
        request = record.request
        if request is None:  # stored by another writer without its request: say so, show no guess
            runs.append(status_view(status) | NO_REQUEST)
            continue
        runs.append(
            status_view(status)
            | {
                "models": request.models or [f"{request.priority} tier"],
                "hardware": request.hardware,
                "batch_sizes": request.batch_sizes,
                "precision": request.precision,
                "sequence_length": request.sequence_length,
                "scenario": request.scenario,
                "new_tokens": request.new_tokens,
            }
        )
    regressed = regressed_runs(services.db, [run["run_id"] for run in runs if run["status"] == "completed"])
    for run in runs:
        run["regressed"] = run["run_id"] in regressed
    return runs


# ---- the start form ---------------------------------------------------------------


def form_values(request: RunRequest) -> dict:
    """A request as the form shows it: the defaults on a fresh form."""
    return msgspec.structs.asdict(request) | {
        "models": request.models or [],
        "batch_sizes": ", ".join(map(str, request.batch_sizes)),
        "sequence_length": str(request.sequence_length),
        "new_tokens": str(request.new_tokens),
    }


def submitted_values(form: FormMultiDict) -> dict:
    """What the user submitted, kept as typed so the form can be shown again with errors."""
    return {
        "priority": form.get("priority", ""),
        "hardware": form.getall("hardware", []),
        "models": form.getall("models", []),
        "batch_sizes": form.get("batch_sizes", ""),
        "precision": form.get("precision", ""),
        "sequence_length": form.get("sequence_length", ""),
        "scenario": form.get("scenario", ""),
        "new_tokens": form.get("new_tokens", ""),
        "progressive_mode": "progressive_mode" in form,
        "incremental": "incremental" in form,
        "force": "force" in form,
        # Not on the run form: a result page's "Measure again" names them, so that the run
        # measures that very config (a vision model's image size, a chosen timing mode).
        **{name: form[name] for name in CONFIG_ONLY_FIELDS if form.get(name)},
    }


CONFIG_ONLY_FIELDS = ("image_size", "timing", "attn_implementation")


def _whole_numbers(field: str, text: str) -> list[int]:
    parts = [part for part in text.replace(",", " ").split() if part]
    if not parts:
        raise InvalidRequestError(field, "enter at least one number")
    try:
        return [int(part) for part in parts]
    except ValueError:
        bad = next(part for part in parts if not part.lstrip("-").isdigit())
        raise InvalidRequestError(field, f"{bad!r} is not a whole number") from None


def _one_whole_number(field: str, text: str) -> int:
    numbers = _whole_numbers(field, text)
    if len(numbers) != 1:
        raise InvalidRequestError(field, "enter a single number")
    return numbers[0]


def form_request(values: dict) -> RunRequest:
    """The form as a RunRequest, checked as the API checks its body."""
    return run_request(values | {
        "models": values["models"] or None,  # none chosen: the priority's default tier
        "batch_sizes": _whole_numbers("batch_sizes", values["batch_sizes"]),
        "sequence_length": _one_whole_number("sequence_length", values["sequence_length"]),
        # A form without the scenario fields (an older page) takes the defaults.
        "scenario": values.get("scenario") or DEFAULT_SCENARIO,
        "new_tokens": _one_whole_number("new_tokens", values.get("new_tokens") or str(DEFAULT_NEW_TOKENS)),
        "image_size": _one_whole_number("image_size", values["image_size"]) if values.get("image_size") else None,
    })


def form_context(services: Services, values: dict, errors: dict[str, str]) -> dict:
    return {
        "values": values,
        "errors": errors,
        "priorities": PRIORITIES,
        "precisions": PRECISIONS,
        "scenarios": SCENARIOS,
        "hardware_choices": [(hw.name, _hardware_label(hw)) for hw in services.hardware],
        "model_groups": live_runs.model_groups(services),
        # One run per rendering of the form, however often it is sent (a double-click).
        "submission": live_runs.new_submission_token(),
    } | preview_context(services, values)


def preview_context(services: Services, values: dict) -> dict:
    """The form's preview: how many configs and about how long, or why the form is not valid yet."""
    try:
        return {"preview": live_runs.preview(services, form_request(values))}
    except InvalidRequestError as error:
        return {"preview_error": f"{error.field}: {error.reason}"}


# ---- the live stream ----------------------------------------------------------------


def _status_event(request: HTMXRequest, status: RunStatus, remaining: float | None = None) -> ServerSentEventMessage:
    html = render_to_string(request, "partials/run_status.html", {"status": status_view(status, remaining)})
    return ServerSentEventMessage(event="status", data=html)


def unseen_rows(services: Services, run_id: str, sent: set[str]) -> list[dict]:
    """Rows the stream has not sent: stored ones (a progressive stop is stored, not published)
    and configs the run reused, in that order."""
    measured, failed = stored_rows(services, run_id)
    stored = [row for row in measured + failed if row["key"] not in sent]
    reused = reuse.reused_configs(services, services.run_record(run_id), sent | {row["key"] for row in stored})
    return stored + reused


def status_and_estimate(services: Services, run_id: str) -> tuple[RunStatus, float | None]:
    return services.run_status(run_id), live_runs.estimate_remaining(services, run_id)


def _row_event(request: HTMXRequest, row: dict) -> ServerSentEventMessage:
    html = render_to_string(request, "partials/run_row.html", {"row": row, "new": True})
    return ServerSentEventMessage(event="result", data=html)


async def live_run_events(
    request: HTMXRequest,
    services: Services,
    channels: ChannelsPlugin,
    run_id: str,
    shown: tuple[int, int],
) -> AsyncIterator[ServerSentEventMessage]:
    """HTML partials for the run page: rows it has not shown yet, then each status and new row.

    ``shown`` counts the measured and failed rows the page was rendered with. Subscribing
    comes first, so a row stored between the page and this stream is read from storage
    and, if it is also published, skipped as already sent. Each status also brings the rows
    that were stored or reused without an event of their own (progressive stops, incremental
    skips); the page drops a row it already has (static/js/app.js), so none shows twice.
    """
    async with channels.start_subscription([run_channel(run_id)]) as subscriber:
        status, remaining = await anyio.to_thread.run_sync(status_and_estimate, services, run_id)
        measured, failed = await anyio.to_thread.run_sync(stored_rows, services, run_id)
        sent = {row["key"] for row in measured + failed}
        for row in measured[shown[0] :] + failed[shown[1] :]:
            yield _row_event(request, row)
        for row in await anyio.to_thread.run_sync(unseen_rows, services, run_id, sent):
            sent.add(row["key"])
            yield _row_event(request, row)
        yield _status_event(request, status, remaining)
        last = status
        if not status.terminal:
            async for raw in subscriber.iter_events():
                event = decode_event(raw)
                if isinstance(event, ResultEvent):
                    row = row_view(event.row)
                    if row["key"] not in sent:
                        sent.add(row["key"])
                        yield _row_event(request, row)
                    continue
                status = event.status
                # Devices publish from their own threads; never let the bar move backwards.
                if not status.terminal and status.completed_configs < last.completed_configs:
                    continue
                last = status
                if status.completed_configs > len(sent) or status.terminal:
                    for row in await anyio.to_thread.run_sync(unseen_rows, services, run_id, sent):
                        sent.add(row["key"])
                        yield _row_event(request, row)
                remaining = None if status.terminal else await anyio.to_thread.run_sync(
                    live_runs.estimate_remaining, services, run_id
                )
                yield _status_event(request, status, remaining)
                if status.terminal:
                    break
    yield ServerSentEventMessage(event="done", data="done")
    await anyio.sleep(CLOSE_GRACE_S)


class RunPages(Controller):
    exception_handlers = PAGE_EXCEPTION_HANDLERS
    include_in_schema = False

    @get("/runs", name="runs", sync_to_thread=True)
    def runs(self, request: HTMXRequest, services: Services) -> Template:
        context = {"active": "runs", "runs": recent_runs(services)} | form_context(
            services, form_values(RunRequest()), {}
        )
        return render(request, "pages/runs.html", "partials/runs_table.html", context)

    @get("/runs/stream", name="runs-stream", guards=[require_token])
    async def stream(self, request: HTMXRequest, services: Services, channels: ChannelsPlugin) -> ServerSentEvent:
        """The runs table as server-sent HTML (event "runs"), again whenever a run changes."""

        async def table() -> str:
            runs = await anyio.to_thread.run_sync(recent_runs, services)
            return render_to_string(request, "partials/runs_table.html", {"runs": runs})

        async def messages() -> AsyncIterator[ServerSentEventMessage]:
            async for html in live_runs.runs_list_events(channels, table):
                yield ServerSentEventMessage(event="runs", data=html)

        return ServerSentEvent(messages())

    @post("/runs/preview", name="run-preview", status_code=200, guards=[require_token])
    async def preview(self, request: HTMXRequest, services: Services) -> Template:
        """The form's config count and duration estimate for what it holds now."""
        values = submitted_values(await request.form())
        context = await anyio.to_thread.run_sync(preview_context, services, values)
        return Template(template_name="partials/run_preview.html", context=context)

    @post("/runs", name="start-run", status_code=200, guards=[require_token])
    async def start(self, request: HTMXRequest, services: Services) -> Template | Redirect | ClientRedirect:
        form = await request.form()
        values = submitted_values(form)

        async def start_run() -> str:
            started = await anyio.to_thread.run_sync(services.start_run, form_request(values))
            return started.run_id

        try:
            run_id = await live_runs.submissions(request.app.state).start(form.get("submission", ""), start_run)
        except InvalidRequestError as error:
            context = {"active": "runs", "runs": await anyio.to_thread.run_sync(recent_runs, services)}
            # In a thread: the form lists the devices (the first question waits for engine.hardware's
            # probe process) and its preview plans and reads history from DuckDB.
            context |= await anyio.to_thread.run_sync(form_context, services, values, {error.field: error.reason})
            return render(
                request,
                "pages/runs.html",
                "partials/run_form.html",
                context,
                status_code=HTTP_422_UNPROCESSABLE_ENTITY,
            )
        url = f"/runs/{run_id}"
        return ClientRedirect(url) if wants_fragment(request) else Redirect(url, status_code=303)

    @get("/runs/{run_id:str}", name="run", sync_to_thread=True)
    def run(self, request: HTMXRequest, services: Services, run_id: str) -> Template:
        status = status_view(services.run_status(run_id), live_runs.estimate_remaining(services, run_id))
        measured, failed = stored_rows(services, run_id)
        record = services.run_record(run_id)
        reused = reuse.reused_configs(services, record, {row["key"] for row in measured + failed})
        context = {
            "active": "runs",
            "status": status,
            "config": record.request,
            "report_error": record.report_error,
            "rows": measured + failed + reused,
            "reused_count": len(reused),
            "skipped_count": max(0, status["completed_configs"] - len(measured) - len(failed)),
            "shown_measured": len(measured),
            "shown_failed": len(failed),
        }
        return render(request, "pages/run.html", "partials/run_live.html", context)

    @get("/runs/{run_id:str}/events", name="run-events", guards=[require_token])
    async def events(
        self,
        request: HTMXRequest,
        services: Services,
        channels: ChannelsPlugin,
        run_id: str,
        measured: int = 0,
        failed: int = 0,
    ) -> ServerSentEvent:
        """Server-sent HTML partials: event "status" (progress), "result" (a table row), "done"."""
        await anyio.to_thread.run_sync(
            services.run_status, run_id
        )  # an unknown run is a 404 now, not mid-stream
        return ServerSentEvent(live_run_events(request, services, channels, run_id, (measured, failed)))

    @post("/runs/{run_id:str}/cancel", name="cancel-run", status_code=200, guards=[require_token])
    async def cancel(self, request: HTMXRequest, services: Services, run_id: str) -> Template | Redirect:
        status = await anyio.to_thread.run_sync(services.cancel_run, run_id)
        if wants_fragment(request):
            return Template(template_name="partials/run_status.html", context={"status": status_view(status)})
        return Redirect(f"/runs/{run_id}", status_code=303)


def _hardware_label(hw) -> str:
    """A device as the run form lists it; a Ray node's also says its host and whether it is alive (issue 13)."""
    label = f"{hw.name} · {hw.device}"
    if hw.node is not None:
        label += f" · node {hw.node} on {hw.host}" + ("" if hw.alive else " (left the cluster)")
    return label
