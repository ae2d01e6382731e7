"""Server logs: one console and one rotating ``benchmark_api_server.log`` on the root logger.

Every server logger (uvicorn's error and access logs, Litestar's, ours) propagates to the
root logger, so the file receives every line the console does. Litestar's own logging
config is off (``create_app`` passes ``logging_config=None``): applied at every app, it
replaced the root handlers with its own and left the file empty. Tokens never reach a
line: ``/login``'s query string and any ``token=`` value are redacted before formatting.

The root logger's one handler is a ``QueueHandler``: the caller (the event loop, for the
access log) only redacts and enqueues; a ``QueueListener`` thread formats the line and
writes the console and the file (the rotation check stats the file, and both handlers
flush, per line). ``flush_logs()`` waits until every line enqueued so far is written; the
listener is stopped (and drained) at exit.
"""

from __future__ import annotations

import atexit
import logging
import queue
import re
from logging.handlers import QueueHandler, QueueListener, RotatingFileHandler
from pathlib import Path

LOG_FILE = "benchmark_api_server.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers that uvicorn's own logging config gives handlers of their own and stops from
# propagating (when uvicorn's CLI configured logging before the app was built).
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar")
REDACTED = "[redacted]"
_LOGIN_QUERY = re.compile(r"(/login\?)[^\s\"']*")
_TOKEN_VALUE = re.compile(r"(\btoken=)[^&\s\"']+", re.IGNORECASE)

# The handlers the last configure_logging installed on the root logger, replaced by the next,
# and the listener thread that writes their lines.
_installed: list[logging.Handler] = []
_listener: QueueListener | None = None


def redact(text: str) -> str:
    """``text`` without the query string of ``/login`` or the value of any ``token=``."""
    if "token" not in text.lower() and "/login?" not in text:
        return text
    return _TOKEN_VALUE.sub(rf"\g<1>{REDACTED}", _LOGIN_QUERY.sub(rf"\g<1>{REDACTED}", text))


class RedactTokens(logging.Filter):
    """Rewrites a record's message with ``redact`` (on handlers, so propagated records pass it too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure_logging(log_dir: str, *, max_bytes: int = 10 * 1024**2, backups: int = 5) -> Path:
    """Log to the console and to ``<log_dir>/benchmark_api_server.log`` (rotated at ``max_bytes``,
    ``backups`` old files kept); returns the file's path.

    Called once per app: the handlers a previous call installed are removed and closed first,
    so building several apps in one process (the tests do) never stacks handlers."""
    global _listener
    path = (Path(log_dir) / LOG_FILE).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    _stop_listener()
    for handler in _installed:
        root.removeHandler(handler)
        handler.close()
    _installed.clear()

    formatter = logging.Formatter(_FORMAT)
    file_handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    console = logging.StreamHandler()
    for handler in (file_handler, console):
        handler.setFormatter(formatter)
        _installed.append(handler)
    lines: queue.Queue = queue.Queue()
    enqueue = QueueHandler(lines)
    enqueue.addFilter(RedactTokens())  # before the record leaves the caller: no token is queued
    root.addHandler(enqueue)
    _listener = QueueListener(lines, file_handler, console, respect_handler_level=True)
    _listener.start()
    _installed.insert(0, enqueue)
    root.setLevel(logging.INFO)

    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        # uvicorn's CLI gives these console handlers of their own; ours print the same lines
        # and also write them to the file.
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    return path


def log_file_handler() -> RotatingFileHandler | None:
    """The rotating file handler the last ``configure_logging`` installed (written by the listener)."""
    return next((h for h in _installed if isinstance(h, RotatingFileHandler)), None)


def flush_logs() -> None:
    """Wait until every line logged so far is written to the console and the file."""
    if _listener is not None and _listener.queue is not None:
        _listener.queue.join()


def _stop_listener() -> None:
    """Write what is queued, then end the listener thread (idempotent)."""
    global _listener
    if _listener is not None:
        listener, _listener = _listener, None
        listener.stop()


atexit.register(_stop_listener)
