"""Live runs: the list and the start form (/runs), one run (/runs/{id}) and its live HTML stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
from litestar import Controller, get, post
from litestar.channels import ChannelsPlugin
from litestar.datastructures import FormMultiDict
from litestar.plugins.htmx import ClientRedirect, HTMXRequest
from litestar.response import Redirect, ServerSentEvent, Template
from litestar.response.sse import ServerSentEventMessage
from litestar.status_codes import HTTP_422_UNPROCESSABLE_ENTITY

from engine.config import DEFAULT_SEQUENCE_LENGTH, PRECISIONS
from engine.errors import InvalidRequestError
from engine.runs import PRIORITY_RANK, TERMINAL_STATUSES, RunRequest
from storage import results as result_rows
from storage import runs as run_rows
from webapp.api.dependencies import require_token
from webapp.live import run_channel
from webapp.pages.rendering import PAGE_EXCEPTION_HANDLERS, render, render_to_string, wants_fragment
from webapp.services import Services, status_from_record

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


def status_view(status: dict) -> dict:
    """The status object plus what the page prints: percent, ETA and elapsed time as text."""
    terminal = status["status"] in TERMINAL_STATUSES
    remaining = status.get("estimated_remaining_time")
    return status | {
        "percent": int(status["progress"] * 100),
        "terminal": terminal,
        "eta": "—" if terminal else ("estimating…" if remaining is None else duration(remaining)),
        "elapsed": duration(status.get("elapsed_time")),
    }


def row_view(row: dict) -> dict:
    """A result row as the run page shows it, from storage or from a live event alike."""
    outcome = row.get("error_type") or row.get("status") or "ok"
    return {
        "key": f"{row['model_name']}|{row['hardware']}|{row['batch_size']}|{row['precision']}",
        "model_name": row["model_name"],
        "hardware": row["hardware"],
        "batch_size": row["batch_size"],
        "precision": row["precision"],
        "outcome": outcome,
        "p50_latency_ms": row.get("p50_latency_ms"),
        "p99_latency_ms": row.get("p99_latency_ms"),
        "throughput_items_per_second": row.get("throughput_items_per_second"),
        "memory_peak_mb": row.get("memory_peak_mb"),
        "error_message": row.get("error_message"),
        "stop_reason": row.get("stop_reason"),
    }


def stored_rows(services: Services, run_id: str) -> tuple[list[dict], list[dict]]:
    """A run's measured rows and failed rows, each in recording order."""
    return (
        [row_view(row) for row in result_rows.results_for_run(services.db, run_id)],
        [row_view(row) for row in result_rows.failures_for_run(services.db, run_id)],
    )


def recent_runs(services: Services) -> list[dict]:
    runs = []
    for record in run_rows.list_runs(services.db, limit=RECENT_RUNS):
        live = services.scheduler.get(record["run_id"]) is not None
        status = services.run_status(record["run_id"]) if live else status_from_record(record)
        request = record["request"] or {}
        runs.append(
            status_view(status)
            | {
                "models": request.get("models") or [f"{request.get('priority', 'high')} tier"],
                "hardware": request.get("hardware") or [],
                "batch_sizes": request.get("batch_sizes") or [],
                "precision": request.get("precision"),
            }
        )
    return runs


# ---- the start form ---------------------------------------------------------------

FORM_DEFAULTS = {
    "priority": "high",
    "hardware": ["cpu"],
    "models": [],
    "batch_sizes": "1, 8",
    "precision": "fp32",
    "sequence_length": str(DEFAULT_SEQUENCE_LENGTH),
    "progressive_mode": True,
    "incremental": True,
    "force": False,
}


def form_values(form: FormMultiDict) -> dict:
    """What the user submitted, kept as typed so the form can be shown again with errors."""
    return {
        "priority": form.get("priority", ""),
        "hardware": form.getall("hardware", []),
        "models": form.getall("models", []),
        "batch_sizes": form.get("batch_sizes", ""),
        "precision": form.get("precision", ""),
        "sequence_length": form.get("sequence_length", ""),
        "progressive_mode": "progressive_mode" in form,
        "incremental": "incremental" in form,
        "force": "force" in form,
    }


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


def run_request(values: dict) -> RunRequest:
    """The form as a RunRequest; the engine's planner then checks models, hardware and ranges."""
    return RunRequest(
        priority=values["priority"],
        hardware=values["hardware"],
        models=values["models"] or None,  # none chosen: the priority's default tier
        batch_sizes=_whole_numbers("batch_sizes", values["batch_sizes"]),
        precision=values["precision"],
        progressive_mode=values["progressive_mode"],
        incremental=values["incremental"],
        sequence_length=_one_whole_number("sequence_length", values["sequence_length"]),
        force=values["force"],
    )


def form_context(services: Services, values: dict, errors: dict[str, str]) -> dict:
    return {
        "values": values,
        "errors": errors,
        "priorities": list(PRIORITY_RANK),
        "precisions": PRECISIONS,
        "hardware_choices": [(hw.name, f"{hw.name} · {hw.device_name}") for hw in services.hardware],
        "model_choices": [
            (spec.name, f"{spec.name} ({spec.family}, {spec.parameters_million:,.1f} M)")
            for spec in sorted(
                services.registry.list(), key=lambda spec: (spec.family, spec.parameters_million)
            )
        ],
    }


# ---- the live stream ----------------------------------------------------------------


def _status_event(request: HTMXRequest, status: dict) -> ServerSentEventMessage:
    html = render_to_string(request, "partials/run_status.html", {"status": status_view(status)})
    return ServerSentEventMessage(event="status", data=html)


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
    and, if it is also published, skipped as already sent.
    """
    async with channels.start_subscription([run_channel(run_id)]) as subscriber:
        status = await anyio.to_thread.run_sync(services.run_status, run_id)
        measured, failed = await anyio.to_thread.run_sync(stored_rows, services, run_id)
        sent = {row["key"] for row in measured + failed}
        for row in measured[shown[0] :] + failed[shown[1] :]:
            yield _row_event(request, row)
        yield _status_event(request, status)
        last = status
        if status["status"] not in TERMINAL_STATUSES:
            async for raw in subscriber.iter_events():
                message = json.loads(raw)
                if message["type"] == "result":
                    row = row_view(message["row"])
                    if row["key"] not in sent:
                        sent.add(row["key"])
                        yield _row_event(request, row)
                    continue
                status = message["status"]
                # Devices publish from their own threads; never let the bar move backwards.
                terminal = status["status"] in TERMINAL_STATUSES
                if not terminal and status["completed_configs"] < last["completed_configs"]:
                    continue
                last = status
                yield _status_event(request, status)
                if terminal:
                    break
    yield ServerSentEventMessage(event="done", data="done")
    await anyio.sleep(CLOSE_GRACE_S)


class RunPages(Controller):
    exception_handlers = PAGE_EXCEPTION_HANDLERS
    include_in_schema = False

    @get("/runs", name="runs", sync_to_thread=True)
    def runs(self, request: HTMXRequest, services: Services) -> Template:
        context = {"active": "runs", "runs": recent_runs(services)} | form_context(
            services, FORM_DEFAULTS, {}
        )
        return render(request, "pages/runs.html", "partials/runs_table.html", context)

    @post("/runs", name="start-run", status_code=200, guards=[require_token])
    async def start(self, request: HTMXRequest, services: Services) -> Template | Redirect | ClientRedirect:
        values = form_values(await request.form())
        try:
            run = await anyio.to_thread.run_sync(services.start_run, run_request(values))
        except InvalidRequestError as error:
            context = {"active": "runs", "runs": await anyio.to_thread.run_sync(recent_runs, services)}
            context |= form_context(services, values, {error.field: error.reason})
            return render(
                request,
                "pages/runs.html",
                "partials/run_form.html",
                context,
                status_code=HTTP_422_UNPROCESSABLE_ENTITY,
            )
        url = f"/runs/{run.run_id}"
        return ClientRedirect(url) if wants_fragment(request) else Redirect(url, status_code=303)

    @get("/runs/{run_id:str}", name="run", sync_to_thread=True)
    def run(self, request: HTMXRequest, services: Services, run_id: str) -> Template:
        status = status_view(services.run_status(run_id))
        record = run_rows.get_run(services.db, run_id) or {}
        measured, failed = stored_rows(services, run_id)
        context = {
            "active": "runs",
            "status": status,
            "config": record.get("request") or {},
            "rows": measured + failed,
            "shown_measured": len(measured),
            "shown_failed": len(failed),
        }
        return render(request, "pages/run.html", "partials/run_live.html", context)

    @get("/runs/{run_id:str}/events", name="run-events")
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
