"""The log file receives every line the console does, access lines included, rotates, and
never holds a token. A real server on loopback writes it; the file is read back."""

from __future__ import annotations

import logging
import re
import time
from logging.handlers import QueueHandler, RotatingFileHandler

import httpx
from litestar.testing import TestClient

from tests.integration.server import start_server
from webapp.app import create_app
from webapp.wiring.logging_setup import LOG_FILE, configure_logging, flush_logs, log_file_handler
from webapp.wiring.settings import Settings

TOKEN = "s3cret-t0ken"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: ")


def queue_handlers() -> list[QueueHandler]:
    """The root logger's queue handlers (pytest adds handlers of its own)."""
    return [h for h in logging.getLogger().handlers if isinstance(h, QueueHandler)]


def wait_for(predicate, timeout_s: float = 10.0) -> bool:
    """Log lines are written as they happen, but the server's answer may reach us first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_a_real_server_logs_every_console_line_to_the_file_without_tokens(tmp_path):
    with start_server(tmp_path, token=TOKEN) as server:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        hardware = httpx.get(server.url + "/api/benchmark/hardware", headers=bearer, timeout=30)
        assert hardware.status_code == 200
        login = httpx.get(f"{server.url}/login?token={TOKEN}", follow_redirects=False, timeout=30)
        assert login.status_code in (302, 303)
        assert httpx.get(f"{server.url}/login?token=wrong-{TOKEN}", timeout=30).status_code == 401
        log_file = tmp_path / "logs" / LOG_FILE
        assert wait_for(lambda: log_file.exists() and "/login?" in log_file.read_text())
        logged = log_file.read_text()

        assert "benchboard serving" in logged  # ours
        assert "Uvicorn running on" in logged or "Application startup complete" in logged  # uvicorn's
        assert '"GET /api/benchmark/hardware HTTP/1.1" 200' in logged  # uvicorn's access log
        assert '"GET /login?[redacted] HTTP/1.1"' in logged
        assert TOKEN not in logged

        console = [line for line in server.output().splitlines() if LOG_LINE.match(line)]
        assert any("GET /api/benchmark/hardware" in line for line in console)
        assert TOKEN not in server.output()
        missing = set(console) - set(logged.splitlines())
        assert not missing, f"console lines missing from the log file: {sorted(missing)[:5]}"


def test_building_apps_again_replaces_the_log_file_handler(tmp_path):
    for name in ("one", "two", "three"):
        settings = Settings(db_path=str(tmp_path / name / "b.duckdb"), results_dir=str(tmp_path / name / "results"),
                            log_dir=str(tmp_path / name / "logs"), prestart_workers=False, resume=False,
                            allowed_hosts=["testserver.local"])
        create_app(settings)
    assert len(queue_handlers()) == 1
    assert log_file_handler().baseFilename == str((tmp_path / "three" / "logs" / LOG_FILE).resolve())
    with TestClient(create_app(settings)) as client:
        client.get("/api/benchmark/hardware")
    flush_logs()
    assert "benchboard serving" in (tmp_path / "three" / "logs" / LOG_FILE).read_text()


def test_the_log_file_rotates(tmp_path):
    path = configure_logging(str(tmp_path), max_bytes=2_000, backups=2)
    log = logging.getLogger("benchboard.test.rotation")
    for number in range(200):
        log.info("line %d of a log that outgrows its file", number)
    flush_logs()
    rotated = sorted(p.name for p in tmp_path.iterdir())
    assert rotated == [LOG_FILE, f"{LOG_FILE}.1", f"{LOG_FILE}.2"]
    assert all(p.stat().st_size <= 2_000 for p in tmp_path.iterdir())
    assert "line 199 " in path.read_text()


def test_the_caller_only_enqueues_and_the_listener_writes_the_file_redacted(tmp_path):
    """No handler that writes (a stream or a file) runs on the logging thread, e.g. the event
    loop writing an access line: the root logger's only handler of ours is a QueueHandler, the
    token is already gone from what it queues, and the line reaches the file."""
    path = configure_logging(str(tmp_path))
    ours = [h for h in logging.getLogger().handlers if isinstance(h, (QueueHandler, RotatingFileHandler))]
    assert len(ours) == 1 and isinstance(ours[0], QueueHandler)
    queued = []
    ours[0].enqueue = lambda record: (queued.append(record), ours[0].queue.put_nowait(record))
    logging.getLogger("uvicorn.access").info('127.0.0.1:5 - "GET /login?token=%s HTTP/1.1" 303', TOKEN)
    flush_logs()
    assert queued and TOKEN not in queued[0].getMessage()
    assert '"GET /login?[redacted] HTTP/1.1" 303' in path.read_text()
    assert TOKEN not in path.read_text()


def test_redaction_keeps_everything_but_the_token():
    from webapp.wiring.logging_setup import redact

    line = '127.0.0.1:5 - "GET /login?token=abc&next=/runs HTTP/1.1" 303'
    assert redact(line) == '127.0.0.1:5 - "GET /login?[redacted] HTTP/1.1" 303'
    assert redact("GET /api/benchmark/runs?limit=5&token=abc") == "GET /api/benchmark/runs?limit=5&token=[redacted]"
    assert redact("nothing secret here") == "nothing secret here"
