"""Headless Chromium (through Playwright) against a real benchboard server with tiny models."""

from __future__ import annotations

import re

import httpx
import pytest
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, LAPTOP, TINY_MODELS, wait_for_run


def pytest_collection_modifyitems(items):
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(
        reason=f"{CHROMIUM} is missing: install Chromium to run the browser tests (.ci/run does)"
    )
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("browser-server")


@pytest.fixture(scope="session")
def db_path(server_dir):
    return server_dir / "benchmarks.duckdb"


@pytest.fixture(scope="session")
def server(server_dir, db_path):
    # tests/ is on sys.path (its conftest.py sits in a folder without __init__.py), so the
    # integration tests' server helper is importable as integration.server.
    from integration.server import start_server

    with start_server(server_dir, db_path=db_path, max_seconds=0.3) as running:
        yield running


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# Refused SQL (400) and a run form with errors (422) are answered with HTML that htmx shows
# by design; Chromium still logs every 4xx response. Any other status is still an error.
EXPECTED_REFUSAL = re.compile(r"^Failed to load resource: the server responded with a status of (400|422) ")


class ConsoleErrors(list):
    """Every console error and uncaught exception of a page, with the URL it happened on."""

    def watch(self, page) -> None:
        def on_console(message) -> None:
            if message.type == "error" and not EXPECTED_REFUSAL.match(message.text):
                self.append(f"{page.url}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.append(f"{page.url}: uncaught {error}"))


@pytest.fixture
def console_errors():
    return ConsoleErrors()


@pytest.fixture
def open_page(browser, console_errors):
    """Opens fresh pages on a server (a new browser context each), closed after the test;
    the test fails if any of them logged a JS error."""
    contexts = []

    def open_on(running_server, viewport=LAPTOP):
        context = browser.new_context(viewport=viewport, base_url=running_server.url, accept_downloads=True)
        contexts.append(context)
        new_page = context.new_page()
        new_page.set_default_timeout(20_000)
        console_errors.watch(new_page)
        return new_page

    yield open_on
    for context in contexts:
        context.close()
    assert list(console_errors) == [], "the browser console reported errors"


@pytest.fixture
def page(open_page, server):
    """A fresh laptop-sized page on the session's server."""
    return open_page(server)


@pytest.fixture
def measured(server):
    """Results to show: those of an earlier test's run, or a run started through the API for this one."""
    if not httpx.get(f"{server.url}/api/benchmark/query", params={"limit": 1}, timeout=30).json():
        reply = httpx.post(
            f"{server.url}/api/benchmark/run",
            json={
                "models": TINY_MODELS,
                "batch_sizes": [1, 2],
                "progressive_mode": False,
            },
            timeout=30,
        )
        assert reply.status_code == 202, reply.text
        assert wait_for_run(server, reply.json()["run_id"])["status"] == "completed"
    return server


@pytest.fixture(scope="module")
def seeded_server(tmp_path_factory):
    """A server of its own per module, on the database tests/browser/seeded.py writes (its results
    folder holds each run's reports). No worker starts: nothing measures."""
    from integration.server import start_server
    from seeded import seed

    folder = tmp_path_factory.mktemp("seeded-server")
    seed(folder / "seeded.duckdb", folder / "results")  # the server's results folder (integration.server)
    with start_server(folder, db_path=folder / "seeded.duckdb", max_seconds=0.3, prestart_workers=False) as running:
        yield running
