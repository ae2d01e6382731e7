"""A progress bar on stderr for headless runs, fed by engine events."""

from __future__ import annotations

import sys
import threading
import time

from engine.result import Measurement
from engine.runs import RunStatus


class ProgressBar:
    """engine.ports.EventSink drawing ``[####....] 3/8 step (eta)`` on one line.

    On a terminal the line is redrawn in place; in a log (not a tty) one line per
    config is written, so CI logs stay readable.
    """

    WIDTH = 28

    def __init__(self, stream=sys.stderr):
        self._stream = stream
        self._tty = stream.isatty()
        self._lock = threading.Lock()
        self._total = 0
        self._last_line = ""
        self._closed = False
        self._started = time.monotonic()

    def start(self, total: int) -> None:
        self._total = total
        self._started = time.monotonic()

    def run_updated(self, run_id: str, status: RunStatus) -> None:
        done, total = status.completed_configs, status.total_configs or self._total
        filled = int(self.WIDTH * done / total) if total else self.WIDTH
        eta = status.estimated_remaining_time
        eta_text = f" eta {eta:.0f}s" if eta else ""
        step = status.current_step or status.status
        line = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total} {step}{eta_text}"
        with self._lock:
            if self._closed or line == self._last_line:
                return
            self._last_line = line
            if self._tty:
                self._stream.write("\r\x1b[2K" + line)
            else:
                self._stream.write(line + "\n")
            self._stream.flush()

    def result_recorded(self, run_id: str, result: Measurement) -> None:
        if not result.ok:
            with self._lock:
                prefix = "\n" if self._tty else ""
                self._stream.write(f"{prefix}{result.config.label()}: {result.status}: {result.error_message}\n")

    def run_finished(self, run_id: str, status: RunStatus) -> None:
        """The bar's last line is drawn by ``close``."""

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._tty and self._last_line:
                self._stream.write("\n")
            self._stream.write(f"done in {time.monotonic() - self._started:.1f}s\n")
            self._stream.flush()
