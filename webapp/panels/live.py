"""Live panels: a tab's panels with a refresh interval run again when results land.

Why server-sent events over the ``runs`` channel rather than polling (htmx ``every Ns``): a
panel re-runs only when something it could show has changed (a result or a run's end was
published), never on an idle server, and all of a tab's live panels share one connection
(browsers allow six per host). The interval is the most often a panel runs: results that
land while a panel waits for its next turn re-run it once, when its turn comes, so its last
state is always shown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec

from webapp.live import ResultEvent, StatusEvent, decode_event

# Events come in bursts (a config's result, then its run's status): a panel waits this long
# after the first, so one run covers the burst.
SETTLE_S = 0.3


def results_landed(raw: bytes) -> bool:
    """Whether a ``runs`` channel message means the tables panels read have changed: a result
    (or failure) was recorded, or a run ended."""
    try:
        event = decode_event(raw)
    except msgspec.DecodeError:
        return False
    if isinstance(event, ResultEvent):
        return True
    return isinstance(event, StatusEvent) and event.status.terminal


async def live_panel_updates(
    events: AsyncIterator[bytes],
    refresh_s: dict[str, float],
    render: Callable[[str], Awaitable[str | None]],
    *,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[tuple[str, str]]:
    """(panel key, its HTML) whenever results land, for each panel at most once per its
    ``refresh_s`` (the page has just drawn them all, so the first wait counts from now).
    ``render`` answers None for a panel that is gone: nothing is sent for it.

    ``events`` is the ``runs`` channel's messages; it ending ends the updates.
    """
    if not refresh_s:
        return
    last = {index: clock() for index in refresh_s}
    due: dict[str, float] = {}
    pending: asyncio.Future | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(events.__anext__())
            timeout = max(0.0, min(due.values()) - clock()) if due else None
            done, _ = await asyncio.wait({pending}, timeout=timeout)
            if pending in done:
                finished, pending = pending, None
                try:
                    raw = finished.result()
                except StopAsyncIteration:
                    return
                if results_landed(raw):
                    for index, seconds in refresh_s.items():
                        due.setdefault(index, max(clock() + SETTLE_S, last[index] + seconds))
            now = clock()
            for index in sorted(index for index, when in due.items() if when <= now):
                del due[index]
                last[index] = now
                html = await render(index)
                if html is not None:
                    yield index, html
    finally:
        if pending is not None:
            pending.cancel()
