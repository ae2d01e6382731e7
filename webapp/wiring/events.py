"""Fan-out of engine events to several listeners (reports, Channels, the CLI's progress bar)."""

from __future__ import annotations

import logging

from engine.ports import EventSink
from engine.result import Measurement
from engine.runs import RunStatus

log = logging.getLogger(__name__)


class EventFanout:
    """An EventSink that forwards to listeners in order; one failing listener does not
    stop the others or the scheduler."""

    def __init__(self, listeners: list[EventSink] | None = None):
        self.listeners: list[EventSink] = list(listeners or [])

    def _tell(self, event: str, run_id: str, payload) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, event)(run_id, payload)
            except Exception:
                log.exception("listener %r failed on %s of run %s", listener, event, run_id)

    def run_updated(self, run_id: str, status: RunStatus) -> None:
        self._tell("run_updated", run_id, status)

    def result_recorded(self, run_id: str, result: Measurement) -> None:
        self._tell("result_recorded", run_id, result)

    def run_finished(self, run_id: str, status: RunStatus) -> None:
        self._tell("run_finished", run_id, status)
