"""Fan-out of engine events to several listeners (reports, Channels, the CLI's progress bar)."""

from __future__ import annotations

import logging

from engine.ports import EventSink
from engine.result import Result

log = logging.getLogger(__name__)


class EventFanout:
    """An EventSink that forwards to listeners in order; one failing listener does not
    stop the others or the scheduler."""

    def __init__(self, listeners: list[EventSink] | None = None):
        self.listeners: list[EventSink] = list(listeners or [])

    def run_updated(self, run_id: str, status: dict) -> None:
        for listener in self.listeners:
            try:
                listener.run_updated(run_id, status)
            except Exception:
                log.exception("listener %r failed on run %s", listener, run_id)

    def result_recorded(self, run_id: str, result: Result) -> None:
        for listener in self.listeners:
            try:
                listener.result_recorded(run_id, result)
            except Exception:
                log.exception("listener %r failed on a result of run %s", listener, run_id)
