"""Issue 15, outside the SQL sandbox: the Host allowlist against DNS rebinding, the token on
reads, Origin: null, report failures, no 500 for anything a client sends, and run limits.

The real app runs in process through Litestar's TestClient (a real DuckDB file, the real
registry and hardware detection), except where uvicorn itself matters (the Host header's
port, a real run whose report cannot be written), which start a real server on loopback.
Nothing here measures except that one run, of bert-tiny at batch size 1.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from descriptions import stored_run
from litestar.exceptions import WebSocketDisconnect
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from engine.runs import RunRecord
from storage.runs import get_run, save_run
from tests.integration.server import start_server
from webapp.app import create_app
from webapp.cli.main import build_parser
from webapp.reporting.reports import ReportWriter
from webapp.wiring.settings import Settings

TEST_CLIENT_HOST = "testserver.local"  # the Host that Litestar's TestClient sends
TOKEN = "s3cret"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
HUGE = "164605506839147610112"  # past INT64: the one cause of schemathesis's 67 server errors


def settings_in(root: Path, **overrides) -> Settings:
    return Settings(db_path=str(root / "b.duckdb"), results_dir=str(root / "results"), log_dir=str(root / "logs"),
                    prestart_workers=False, resume=False, **overrides)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """No token; answers TestClient's host name besides the defaults."""
    settings = settings_in(tmp_path_factory.mktemp("open"), allowed_hosts=[TEST_CLIENT_HOST], max_configs_per_run=10)
    with TestClient(create_app(settings)) as test_client:
        save_run(test_client.app.state.services.db, stored_run("run1"))
        yield test_client


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    settings = settings_in(tmp_path_factory.mktemp("guarded"), allowed_hosts=[TEST_CLIENT_HOST], token=TOKEN)
    with TestClient(create_app(settings)) as test_client:
        save_run(test_client.app.state.services.db, stored_run("run1"))
        yield test_client


@pytest.fixture(scope="module")
def default_hosts(tmp_path_factory):
    """The default allowlist only: the bound address (127.0.0.1), localhost, 127.0.0.1."""
    with TestClient(create_app(settings_in(tmp_path_factory.mktemp("hosts")))) as test_client:
        yield test_client


def run_count(client, headers=None) -> int:
    return len(client.get("/api/benchmark/runs", headers={"Host": "localhost", **(headers or {})}).json())


# ---- the Host allowlist ----------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1", "127.0.0.1:8731"])
def test_the_default_host_names_are_answered_on_any_port(default_hosts, host):
    assert default_hosts.get("/api/benchmark/hardware", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8731", "testserver.local", "localhost.evil.example"])
def test_any_other_host_is_400_naming_it(default_hosts, host):
    reply = default_hosts.get("/api/benchmark/hardware", headers={"Host": host})
    assert reply.status_code == 400
    body = reply.json()
    assert body["field"] == "Host" and host.split(":")[0] in body["reason"] and "--allowed-host" in body["reason"]
    assert default_hosts.get("/", headers={"Host": host}).status_code == 400  # pages too


def test_dns_rebinding_can_no_longer_start_a_run_or_run_sql(default_hosts):
    before = run_count(default_hosts)
    rebound = {"Host": "evil.example:8731", "Origin": "http://evil.example:8731"}
    started = default_hosts.post("/api/benchmark/run", json={"models": ["bert-tiny"], "batch_sizes": [1]},
                                 headers=rebound)
    assert started.status_code == 400 and started.json()["field"] == "Host"
    queried = default_hosts.post("/api/benchmark/sql", json={"sql": "SELECT * FROM test_runs"}, headers=rebound)
    assert queried.status_code == 400 and "rows" not in queried.json()
    assert run_count(default_hosts) == before
    with pytest.raises(WebSocketDisconnect) as refused:
        with default_hosts.websocket_connect("/api/benchmark/ws/any", headers=rebound) as socket:
            socket.receive_json()
    assert refused.value.code == 1008


def test_allowed_hosts_come_from_the_flag_or_the_environment(tmp_path):
    assert build_parser().parse_args(["serve", "--allowed-host", "bench.lan", "--allowed-host", "10.0.0.7"]
                                     ).allowed_hosts == ["bench.lan", "10.0.0.7"]
    settings = Settings.from_env({"BENCHBOARD_ALLOWED_HOSTS": "bench.lan, [::1]", "BENCHBOARD_HOST": "10.0.0.7"})
    assert settings.host_allowlist() == ["10.0.0.7", "localhost", "127.0.0.1", "bench.lan", "::1"]
    with TestClient(create_app(settings_in(tmp_path, allowed_hosts=["bench.lan"]))) as named:
        assert named.get("/api/benchmark/hardware", headers={"Host": "bench.lan:8000"}).status_code == 200
        assert named.get("/api/benchmark/hardware", headers={"Host": "other.lan"}).status_code == 400


def test_a_real_server_answers_its_address_with_a_port_and_refuses_a_rebound_name(server):
    # uvicorn passes the Host header as the client sent it, port included (Litestar's own
    # allowed-hosts check refuses "127.0.0.1:PORT" against "127.0.0.1": litestar#4869).
    assert httpx.get(server.url + "/api/benchmark/hardware", timeout=30).status_code == 200
    assert httpx.get(f"http://localhost:{server.port}/api/benchmark/hardware", timeout=30).status_code == 200
    rebound = httpx.post(server.url + "/api/benchmark/run", json={"models": ["bert-tiny"]},
                         headers={"Host": f"evil.example:{server.port}", "Origin": f"http://evil.example:{server.port}"},
                         timeout=30)
    assert rebound.status_code == 400 and rebound.json()["field"] == "Host"


# ---- the token guards reads -------------------------------------------------------------


def get_routes(app, prefix: str) -> list[tuple[str, HTTPRoute]]:
    """(path with its parameters filled in, route) for every GET route under ``prefix``."""
    values = {"run_id": "run1", "file_name": "report.md"}
    found = []
    for route in app.routes:
        if isinstance(route, HTTPRoute) and route.path.startswith(prefix) and "GET" in route.route_handler_map:
            path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values.get(m.group(1), "1"), route.path)
            found.append((path, route))
    return found


def test_every_api_read_needs_the_token_when_one_is_set(guarded):
    paths = [path for path, _ in get_routes(guarded.app, "/api/benchmark")]
    assert len(paths) >= 10  # status, results, models, hardware, reports (2), query, runs, export...
    for path in paths:
        refused = guarded.get(path)
        assert refused.status_code == 401, path
        assert "Authorization: Bearer" in refused.json()["reason"]
        assert guarded.get(path, headers=BEARER).status_code != 401, path
    assert guarded.post("/api/benchmark/sql", json={"sql": "SELECT run_id FROM test_runs"}).status_code == 401


def test_the_run_websocket_needs_the_token_when_one_is_set(guarded):
    with pytest.raises(WebSocketDisconnect) as refused:
        with guarded.websocket_connect("/api/benchmark/ws/run1") as socket:
            socket.receive_json()
    assert refused.value.code == 1008 and "Authorization: Bearer" in refused.value.detail
    with guarded.websocket_connect("/api/benchmark/ws/run1", headers=BEARER) as socket:
        assert socket.receive_json()["status"] == "completed"


def test_the_live_page_stream_needs_the_token_or_the_login_cookie(tmp_path):
    with TestClient(create_app(settings_in(tmp_path, allowed_hosts=[TEST_CLIENT_HOST], token=TOKEN))) as browser:
        save_run(browser.app.state.services.db, stored_run("run1"))
        assert browser.get("/runs/run1/events").status_code == 401
        browser.get(f"/login?token={TOKEN}", follow_redirects=False)
        stream = browser.get("/runs/run1/events")
        assert stream.status_code == 200 and "event: done" in stream.text


def test_origin_null_is_never_reflected_without_the_token(client, guarded):
    null = {"Origin": "null"}
    for app_client in (client, guarded):
        anonymous = app_client.get("/api/benchmark/hardware", headers=null)
        assert "access-control-allow-origin" not in anonymous.headers
        bare_preflight = app_client.options("/api/benchmark/sql", headers=null | {"Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in bare_preflight.headers
    refused = guarded.post("/api/benchmark/sql", json={"sql": "SELECT run_id FROM test_runs"}, headers=null)
    assert refused.status_code == 401 and "access-control-allow-origin" not in refused.headers
    wrong = guarded.get("/api/benchmark/hardware", headers=null | {"Authorization": "Bearer nope"})
    assert "access-control-allow-origin" not in wrong.headers
    # No token configured: nothing is ever reflected to null, whatever is presented.
    assert "access-control-allow-origin" not in client.get("/api/benchmark/hardware", headers=null | BEARER).headers
    trusted = guarded.get("/api/benchmark/hardware", headers=null | BEARER)
    assert trusted.status_code == 200 and trusted.headers["access-control-allow-origin"] == "null"


# ---- reports that cannot be written ------------------------------------------------------


def test_a_report_failure_is_recorded_shown_and_regenerated(tmp_path):
    with TestClient(create_app(settings_in(tmp_path, allowed_hosts=[TEST_CLIENT_HOST]))) as app_client:
        services = app_client.app.state.services
        save_run(services.db, stored_run("blocked"))
        # A file where the run's report folder goes: unwritable even for root, which the
        # read-only folder of the issue is not.
        services.settings.results_path.mkdir(parents=True, exist_ok=True)
        blocker = services.settings.results_path / "blocked"
        blocker.write_text("in the way")
        ReportWriter(services.db, services.settings.results_path).run_finished("blocked", services.run_status("blocked"))

        record = get_run(services.db, "blocked", RunRecord)
        assert record.status == "completed"
        assert "File exists" in record.report_error and "blocked" in record.report_error
        page = app_client.get("/runs/blocked")
        assert page.status_code == 200 and 'id="report-error"' in page.text
        assert "could not be written" in page.text and "/api/benchmark/reports/blocked/regenerate" in page.text

        still_blocked = app_client.post("/api/benchmark/reports/blocked/regenerate")
        assert still_blocked.status_code == 503 and "File exists" in still_blocked.json()["reason"]
        blocker.unlink()
        rebuilt = app_client.post("/api/benchmark/reports/blocked/regenerate")
        assert rebuilt.status_code == 200
        assert rebuilt.json()["reports"] == ["report.html", "report.md", "results.json"]
        assert rebuilt.json()["status"] == "completed"
        assert get_run(services.db, "blocked", RunRecord).report_error is None
        assert 'id="report-error"' not in app_client.get("/runs/blocked").text
        assert app_client.get("/api/benchmark/reports/blocked/report.md").status_code == 200


def test_regenerating_needs_an_ended_known_run(client, guarded):
    save_run(client.app.state.services.db, stored_run("going", status="running"))
    active = client.post("/api/benchmark/reports/going/regenerate")
    assert active.status_code == 409 and active.json()["field"] == "run_id"
    assert client.post("/api/benchmark/reports/nope/regenerate").status_code == 404
    assert guarded.post("/api/benchmark/reports/run1/regenerate").status_code == 401
    assert guarded.post("/api/benchmark/reports/run1/regenerate", headers=BEARER).status_code == 200
    foreign = client.post("/api/benchmark/reports/run1/regenerate", headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403


def test_a_real_run_whose_report_cannot_be_written_still_completes_and_says_why(tmp_path):
    blocked = tmp_path / "results-is-a-file"
    blocked.write_text("not a folder")
    with start_server(tmp_path, results_dir=blocked, secret_key="k", prestart_workers=True) as running:
        accepted = httpx.post(running.url + "/api/benchmark/run",
                              json={"models": ["bert-tiny"], "batch_sizes": [1], "force": True},
                              timeout=30).json()
        deadline = time.monotonic() + 120  # a cold worker on a loaded 2-core machine
        while time.monotonic() < deadline:
            status = httpx.get(f"{running.url}/api/benchmark/status/{accepted['run_id']}", timeout=30).json()
            if status["status"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.2)
        assert status["status"] == "completed" and status["error"] is None
        # The report is written after the terminal status goes out; wait for its outcome.
        while time.monotonic() < deadline and "report-error" not in (
            page := httpx.get(f"{running.url}/runs/{accepted['run_id']}", timeout=30).text
        ):
            time.sleep(0.2)
        assert "could not be written" in page and "Not a directory" in page


# ---- no 500 for anything a client sends ------------------------------------------------


def test_no_query_parameter_of_any_get_route_answers_a_500(client):
    checked = 0
    for path, route in get_routes(client.app, "/"):
        if path.startswith(("/static", "/schema")):
            continue
        _, kwargs_model = route.route_handler_map["GET"]
        for parameter in kwargs_model.expected_query_params:
            for value in (HUGE, f"-{HUGE}", "x"):
                reply = client.get(path, params={parameter.field_alias: value})
                assert reply.status_code < 500, (path, parameter.field_alias, value, reply.text[:300])
                checked += 1
    assert checked >= 60


@pytest.mark.parametrize("path", ["/api/benchmark/runs", "/api/benchmark/query", "/api/benchmark/export"])
def test_an_out_of_range_integer_is_400_naming_the_parameter(client, path):
    name = "offset" if path.endswith("runs") else "batch_size"
    reply = client.get(path, params={name: HUGE})
    assert reply.status_code == 400 and reply.json()["field"] == name


def test_json_nested_too_deep_is_400_at_the_first_value_of_the_wrong_type(client):
    # Decoded as the handler's type, the body is refused where nesting starts, before any depth.
    body = b"[" * 100_000 + b"]" * 100_000
    reply = client.post("/api/benchmark/run", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    assert reply.json()["field"] == "body" and reply.json()["reason"] == "Expected `object`, got `array`"
    nested = client.post("/api/benchmark/sql", content=b'{"sql": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
                         headers={"Content-Type": "application/json"})
    assert nested.status_code == 400
    assert nested.json()["field"] == "sql" and nested.json()["reason"] == "Expected `str`, got `array`"


@pytest.mark.parametrize("path", ["/api/benchmark/run", "/api/benchmark/sql"])
@pytest.mark.parametrize("body", [b"", b"   "])
def test_an_empty_body_is_400_naming_the_body(client, path, body):
    reply = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    assert reply.json() == {"error": "invalid request", "reason": "the request body is empty: send a JSON object",
                            "field": "body"}


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          None])
@pytest.mark.parametrize("path", ["/api/benchmark/run", "/api/benchmark/sql"])
def test_a_body_that_is_not_json_is_415(client, path, content_type):
    before = run_count(client)
    headers = {"Content-Type": content_type} if content_type else {}
    reply = client.post(path, content=b'{"models": ["bert-tiny"], "sql": "SELECT 1"}', headers=headers)
    assert reply.status_code == 415
    assert reply.json()["field"] == "Content-Type" and "application/json" in reply.json()["reason"]
    assert run_count(client) == before


def test_json_with_a_charset_or_a_json_suffix_is_accepted(client):
    for content_type in ("application/json; charset=utf-8", "application/vnd.benchboard+json"):
        reply = client.post("/api/benchmark/sql", content=b'{"sql": "SELECT 1 AS one"}',
                            headers={"Content-Type": content_type})
        assert reply.status_code == 200, reply.text


def test_a_body_of_the_wrong_shape_names_the_body(client):
    reply = client.post("/api/benchmark/run", json=[1, 2])
    assert reply.status_code == 400 and reply.json()["field"] == "body"


# ---- run limits ------------------------------------------------------------------------


def test_more_batch_sizes_than_64_are_refused(client):
    reply = client.post("/api/benchmark/run", json={"models": ["bert-tiny"], "batch_sizes": list(range(1, 66))})
    assert reply.status_code == 400 and reply.json()["field"] == "batch_sizes" and reply.json()["reason"] == "must have at most 64 items"


def test_a_run_of_more_configs_than_the_limit_is_refused_with_the_count(client):
    # This client's limit is 10 configs; the default is 2,000 (below).
    before = run_count(client)
    reply = client.post("/api/benchmark/run", json={"models": ["bert-tiny", "gpt2-tiny"], "batch_sizes": [1, 2, 4, 8, 16, 32]})
    assert reply.status_code == 400
    error = reply.json()
    assert error["field"] == "batch_sizes"
    assert "12 configs" in error["reason"] and "at most 10" in error["reason"]
    assert run_count(client) == before


def test_the_default_limit_is_2000_configs_and_configurable():
    assert Settings().max_configs_per_run == 2_000
    assert Settings.from_env({"BENCHBOARD_MAX_CONFIGS_PER_RUN": "50"}).max_configs_per_run == 50
    assert build_parser().parse_args(["serve", "--max-configs-per-run", "7"]).max_configs_per_run == 7


def test_a_refused_websocket_reaches_a_real_client_with_its_reason(tmp_path):
    # A real server and the `websockets` client: Litestar's TestClient reports a close sent
    # before the accept with its reason, where a real client gets only an HTTP 403.
    import socket as sockets

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    token = {"Authorization": "Bearer s3cret"}
    with start_server(tmp_path, token="s3cret") as server:
        refusals = [
            (server.ws_url, {}, "this server needs 'Authorization: Bearer <token>'"),
            (server.ws_url, {**token, "Origin": "http://evil.example"}, "origin not allowed"),
            # The Host a rebound name sends: the URL's name, over a socket to this server.
            (f"ws://evil.example:{server.port}", token, "host not allowed"),
        ]
        for base, headers, reason in refusals:
            wire = sockets.create_connection(("127.0.0.1", server.port), timeout=30)
            with connect(f"{base}/api/benchmark/ws/run1", sock=wire, additional_headers=headers,
                         open_timeout=30) as socket:
                with pytest.raises(ConnectionClosed) as closed:
                    socket.recv(timeout=30)
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, reason), base
        with connect(f"{server.ws_url}/api/benchmark/ws/{'a' * 65}", additional_headers=token,
                     open_timeout=30) as socket:
            assert socket.recv(timeout=30) == '{"error":"run_id: at most 64 characters, not 65"}'
