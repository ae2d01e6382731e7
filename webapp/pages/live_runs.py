"""What the Runs pages know beyond the engine's status: an ETA from this run's and history's
per-config times, one run per form submission, the form's model picker and preview, and the
runs list kept live over the ``runs`` channel. The configs a run reused are webapp.wiring.reuse's."""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from litestar.channels import ChannelsPlugin
from litestar.datastructures import State

from engine.runs import RunRequest
from storage import dashboard
from webapp.live import RUNS_CHANNEL
from webapp.wiring.reuse import snapshot
from webapp.wiring.services import Services

# ---- one run per submission ----------------------------------------------------------

SUBMISSIONS_STATE_KEY = "run_submissions"
REMEMBERED_SUBMISSIONS = 1_000
MAX_TOKEN_LENGTH = 64


def new_submission_token() -> str:
    """A fresh token for one rendering of a form that starts a run."""
    return uuid.uuid4().hex


class Submissions:
    """The runs started per submission token: a double-click, a resent form or a second tab
    with the same form starts the run once, and every submission gets that run back.

    All access is on the event loop, so a token is claimed before the first await."""

    def __init__(self) -> None:
        self._runs: OrderedDict[str, asyncio.Future[str]] = OrderedDict()

    async def start(self, token: str, start: Callable[[], Awaitable[str]]) -> str:
        token = token.strip()[:MAX_TOKEN_LENGTH]
        if not token:
            return await start()
        if token in self._runs:
            return await asyncio.shield(self._runs[token])
        claimed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        claimed.add_done_callback(lambda future: future.cancelled() or future.exception())  # retrieved
        self._runs[token] = claimed
        while len(self._runs) > REMEMBERED_SUBMISSIONS:
            self._runs.popitem(last=False)
        try:
            run_id = await start()
        except BaseException as error:
            # A refused form may be fixed and sent again: forget the token, tell the waiters.
            self._runs.pop(token, None)
            claimed.set_exception(error)
            raise
        claimed.set_result(run_id)
        return run_id


def submissions(state: State) -> Submissions:
    return state.setdefault(SUBMISSIONS_STATE_KEY, Submissions())


# ---- how long is left ------------------------------------------------------------------------


def estimate_remaining(services: Services, run_id: str) -> float | None:
    """Seconds left for a live run: each pending config's median wall time in history, else the
    mean of this run's measured configs; configs incremental mode will reuse take none. None
    while neither says anything (or for a run that is not live)."""
    live = services.scheduler.get(run_id)
    if live is None or live.terminal:
        return None
    configs, finished = snapshot(live)
    pending = [c.key() for c in configs if c.key() not in finished]
    if not pending:
        return 0.0
    history = dashboard.typical_wall_seconds(services.db, pending)
    request = live.request
    reusable = (
        set(dashboard.reused_results(services.db, run_id, pending, sorted(set(live.fingerprints.values()))))
        if request.incremental and not request.force
        else set()
    )
    this_run = live.measured_seconds / live.measured_configs if live.measured_configs else None
    fallback = this_run if this_run is not None else (sum(history.values()) / len(history) if history else None)
    total = 0.0
    for key in pending:
        if key in reusable:
            continue
        seconds = history.get(key, fallback)
        if seconds is None:
            return None
        total += seconds
    return total


# ---- the start form ----------------------------------------------------------------------------

# Registered sizes below this are the tiny, random-weight builds meant for quick checks and tests.
TINY_PARAMETERS_MILLION = 5.0


def model_groups(services: Services) -> list[tuple[str, list[tuple[str, str]]]]:
    """The model picker's groups: tiny sizes first, then full sizes; (name, label) in each."""
    tiny, full = [], []
    for spec in sorted(services.registry.list(), key=lambda spec: (spec.family, spec.parameters_million)):
        choice = (spec.name, f"{spec.name} · {spec.family}, {spec.parameters_million:,.1f} M")
        (tiny if spec.parameters_million < TINY_PARAMETERS_MILLION else full).append(choice)
    return [("Tiny sizes (quick checks and tests)", tiny), ("Full sizes", full)]


def preview(services: Services, request: RunRequest) -> dict:
    """How many configs ``request`` expands to and about how long they take: history's median
    wall time where a config was measured before, configs incremental mode will reuse at none,
    and at most the timing budget per config for the rest."""
    run = services.plan(request)
    keys = [config.key() for config in run.configs]
    history = dashboard.typical_wall_seconds(services.db, keys)
    reusable = (
        set(dashboard.reused_results(services.db, "", keys, sorted(set(run.fingerprints.values()))))
        if request.incremental and not request.force
        else set()
    )
    known = [history[key] for key in keys if key in history and key not in reusable]
    unknown = [key for key in keys if key not in history and key not in reusable]
    budget = services.settings.max_seconds
    return {
        "configs": len(keys),
        "models": len(run.model_names()),
        "hardware": len({config.hardware for config in run.configs}),
        "batch_sizes": len(run.request.batch_sizes),  # as planned: each size once, as the run measures it
        "reused": len(reusable),
        "known_seconds": sum(known),
        "known": len(known),
        "unknown": len(unknown),
        "budget_seconds": budget,
        "upper_seconds": sum(known) + len(unknown) * budget,
    }


# ---- the runs list, live -----------------------------------------------------------------------

# Events come in bursts (a config's start, its result, its end): the list is drawn once per burst.
RUNS_LIST_SETTLE_S = 0.3


async def runs_list_events(
    channels: ChannelsPlugin, render: Callable[[], Awaitable[str]]
) -> AsyncIterator[str]:
    """The runs table's HTML now, and again after every burst of run events that changes it."""
    async with channels.start_subscription([RUNS_CHANNEL]) as subscriber:
        last = await render()
        yield last
        events = subscriber.iter_events()
        async for _ in events:
            await anyio.sleep(RUNS_LIST_SETTLE_S)
            try:
                for _ in range(subscriber.qsize):  # the rest of the burst, already queued
                    await events.__anext__()
            except StopAsyncIteration:
                return
            html = await render()
            if html != last:
                last = html
                yield html
