"""What every request goes through before its handler runs on the event loop.

Litestar runs a plain-function guard or hook on a worker thread, a thread hop for each: on a
2-core machine with a run measuring, those hops were about a quarter of the server's CPU per
GET /status (issue 16, perf/api_load.py). None of ours waits on anything, so none may hop.
"""

from __future__ import annotations

import inspect

from webapp.app import create_app
from webapp.wiring.settings import Settings


def test_every_routes_guards_and_hooks_run_on_the_event_loop(tmp_path):
    app = create_app(Settings(
        db_path=str(tmp_path / "b.duckdb"), results_dir=str(tmp_path / "results"), log_dir=str(tmp_path / "logs"),
        prestart_workers=False,
    ))
    on_a_thread = []
    handlers = [handler for route in app.routes for handler in getattr(route, "route_handlers", [])]
    assert len(handlers) > 20  # the API, the pages and the run WebSocket
    for handler in handlers:
        hooks = [*handler.resolve_guards()]
        if hasattr(handler, "resolve_before_request") and (before := handler.resolve_before_request()):
            hooks.append(before)
        on_a_thread += [(handler.handler_name, hook) for hook in hooks if not inspect.iscoroutinefunction(hook)]
    assert not on_a_thread
    assert all(inspect.iscoroutinefunction(hook) for hook in app.before_send)
