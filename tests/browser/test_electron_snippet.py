"""The seed's "Integration with Electron" JavaScript, run unchanged in headless Chromium.

The page that runs it is served from another origin (a dev server on localhost, as an
Electron app in development has), so its fetch is a cross-origin request that only CORS
lets through. The only edit to the snippet is the server's address; the page around it
defines the ``updateProgressBar`` the snippet calls.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from integration.server import start_server

pytestmark = pytest.mark.browser

# Copied verbatim from seed/benchmark-system.md, "Integration with Electron".
SEED_SNIPPET = """\
// Example JavaScript code for Electron
const ws = new WebSocket('ws://localhost:8000/api/benchmark/ws/YOUR_RUN_ID');

ws.onmessage = (event) => {
  const data = JSON.parse(event.data);
  console.log('Progress:', data.progress);
  updateProgressBar(data.progress);
};

// Start a benchmark run
fetch('http://localhost:8000/api/benchmark/run', {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({
    priority: 'high',
    hardware: ['cpu'],
    models: ['bert', 'gpt2'],
    batch_sizes: [1, 8]
  })
}).then(response => response.json())
  .then(data => {
    console.log('Run ID:', data.run_id);
    // Connect WebSocket for real-time updates
    const ws = new WebSocket(`ws://localhost:8000/api/benchmark/ws/${data.run_id}`);
  });
"""
SEED_ADDRESS = "localhost:8000"

PAGE = """\
<!doctype html>
<html>
<head>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<title>Electron snippet</title>
<script>
  window.progressUpdates = [];
  function updateProgressBar(progress) { window.progressUpdates.push(progress); }
</script>
<script>
SNIPPET
</script>
</head>
<body></body>
</html>
"""

# Generous: a server's start and a page's first requests on a busy 2-core machine.
BROWSER_WAIT_S = 60
# Building bert-base-uncased and measuring its first config takes ~15 s on 2 idle cores.
FIRST_RESULT_WAIT_S = 180
TERMINAL = ("completed", "failed", "cancelled")


def snippet_page(server_address: str) -> str:
    snippet = SEED_SNIPPET.replace(SEED_ADDRESS, server_address)
    assert snippet.count(server_address) == 3, "the seed snippet names the server three times"
    return PAGE.replace("SNIPPET", snippet)


@contextmanager
def page_origin(html: str) -> Iterator[str]:
    """Serve ``html`` at / on a free loopback port; yields the page's URL on localhost."""

    class OnePage(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/":
                self.send_error(404)
                return
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    origin = ThreadingHTTPServer(("127.0.0.1", 0), OnePage)
    thread = threading.Thread(target=origin.serve_forever, daemon=True)
    thread.start()
    try:
        # localhost, while the server is addressed as 127.0.0.1: the request crosses hosts as
        # well as ports, as one from an Electron dev server does.
        yield f"http://localhost:{origin.server_address[1]}/"
    finally:
        origin.shutdown()
        origin.server_close()


class SnippetPage:
    """A page running the snippet, with everything the browser showed of it: console
    lines, uncaught errors, the frames each WebSocket received, and HTTP responses."""

    def __init__(self, browser):
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.page.set_default_timeout(BROWSER_WAIT_S * 1000)
        self.console: list[tuple[str, str]] = []
        self.uncaught: list[str] = []
        self.frames: dict[str, list[dict]] = {}
        self.closed: set[str] = set()
        self.responses: list = []
        self.page.on("console", lambda message: self.console.append((message.type, message.text)))
        self.page.on("pageerror", lambda error: self.uncaught.append(str(error)))
        self.page.on("websocket", self._watch_socket)
        self.page.on("response", lambda response: self.responses.append(response))

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.origin = self.page.evaluate("location.origin")

    def _watch_socket(self, socket) -> None:
        frames = self.frames.setdefault(socket.url, [])
        socket.on("framereceived", lambda payload: frames.append(json.loads(payload)))
        socket.on("close", lambda _: self.closed.add(socket.url))

    def wait_until(self, condition, what: str, timeout_s: float = BROWSER_WAIT_S) -> None:
        # Playwright delivers events while the page waits, so poll through the page.
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; console: {self.console}")
            self.page.wait_for_timeout(50)

    def console_lines(self, prefix: str) -> list[str]:
        return [text for _, text in self.console if text.startswith(prefix)]

    def errors(self) -> list[str]:
        return [text for kind, text in self.console if kind == "error"] + self.uncaught

    def close(self) -> None:
        self.context.close()


@contextmanager
def snippet_running(browser, server) -> Iterator[SnippetPage]:
    address = server.url.removeprefix("http://")
    with page_origin(snippet_page(address)) as url:
        page = SnippetPage(browser)
        try:
            page.open(url)
            yield page
        finally:
            page.close()


def test_the_electron_snippet_starts_a_run_cross_origin_and_follows_it(browser, tmp_path):
    # A prestarted worker imports torch and transformers while the server starts, not after the
    # snippet's POST; building bert-base-uncased still leaves the socket time to see progress 0.
    with start_server(tmp_path, prestart_workers=True) as server, snippet_running(browser, server) as snippet:
        snippet.wait_until(lambda: snippet.console_lines("Run ID: "), "the snippet to log its run id")
        [run_line] = snippet.console_lines("Run ID: ")
        run_id = run_line.removeprefix("Run ID: ")
        status = httpx.get(f"{server.url}/api/benchmark/status/{run_id}", timeout=30).json()
        assert status["run_id"] == run_id
        assert status["total_configs"] == 4  # bert-base-uncased and gpt2 at batch sizes 1 and 8
        [run_reply] = [reply for reply in snippet.responses if reply.url == f"{server.url}/api/benchmark/run"]
        assert run_reply.status == 202
        assert run_reply.headers["access-control-allow-origin"] == snippet.origin

        # The first socket names a run that does not exist: the server says so and closes it,
        # and the snippet's handler passes on the progress that message does not have.
        unknown_socket = f"{server.ws_url}/api/benchmark/ws/YOUR_RUN_ID"
        snippet.wait_until(lambda: unknown_socket in snippet.closed, "the unknown run's socket to close")
        [refusal] = snippet.frames[unknown_socket]
        assert "YOUR_RUN_ID" in refusal["error"]
        assert snippet.console_lines("Progress:") == ["Progress: undefined"]
        assert snippet.page.evaluate("progressUpdates.length === 1 && progressUpdates[0] === undefined")

        # The second socket follows the real run: status objects from the start, progress as
        # configs are measured, then the terminal status on cancel, after which the server closes it.
        run_socket = f"{server.ws_url}/api/benchmark/ws/{run_id}"
        snippet.wait_until(
            lambda: any(status["progress"] > 0 for status in snippet.frames.get(run_socket, [])),
            "the first measured config's progress on the snippet's socket",
            timeout_s=FIRST_RESULT_WAIT_S,
        )
        cancelled = httpx.post(f"{server.url}/api/benchmark/cancel/{run_id}", timeout=30)
        assert cancelled.status_code == 200, cancelled.text
        snippet.wait_until(lambda: run_socket in snippet.closed, "the cancelled run's socket to close")
        statuses = snippet.frames[run_socket]
        assert {status["run_id"] for status in statuses} == {run_id}
        assert [status["status"] for status in statuses if status["status"] in TERMINAL] == ["cancelled"]
        assert statuses[-1]["status"] == "cancelled"
        progress = [status["progress"] for status in statuses]
        assert progress == sorted(progress)
        assert progress[0] == 0 and 0 < progress[-1] < 1

        assert snippet.errors() == [], "the browser reported errors (a CORS refusal among them?)"


def test_an_origin_outside_the_allowlist_cannot_start_a_run(browser, tmp_path):
    with start_server(tmp_path, cors_origins=["http://localhost:1"]) as server, \
            snippet_running(browser, server) as snippet:
        snippet.wait_until(lambda: "Failed to fetch" in str(snippet.uncaught), "the snippet's fetch to fail")

        assert any("blocked by CORS policy" in error for error in snippet.errors()), snippet.errors()
        assert snippet.console_lines("Run ID:") == []
        # The preflight failed, so the POST itself never reached the server.
        assert httpx.get(f"{server.url}/api/benchmark/runs", timeout=30).json() == []
