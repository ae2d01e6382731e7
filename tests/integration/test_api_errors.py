"""Every client mistake gets a 4xx JSON answer naming the field and the reason.

These run the real app (real DuckDB file, real registry and hardware detection) in
process through Litestar's TestClient; nothing here starts a benchmark worker
(``prestart_workers=False``, and no test here queues a run that could be measured).
"""

from __future__ import annotations

import os
import time
from datetime import datetime

import pytest
from litestar.testing import TestClient

from storage.runs import save_run
from descriptions import stored_run
from webapp.app import create_app
from webapp.reporting.reports import write_reports
from webapp.wiring.settings import Settings

TEST_CLIENT_HOST = "testserver.local"  # the Host that Litestar's TestClient sends


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    settings = Settings(db_path=str(root / "b.duckdb"), results_dir=str(root / "results"), log_dir=str(root / "logs"),
                        prestart_workers=False, allowed_hosts=[TEST_CLIENT_HOST])
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    root = tmp_path_factory.mktemp("guarded")
    settings = Settings(db_path=str(root / "b.duckdb"), results_dir=str(root / "results"),
                        log_dir=str(root / "logs"), token="s3cret", prestart_workers=False,
                        allowed_hosts=[TEST_CLIENT_HOST])
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"modelz": ["bert-tiny"]}, "modelz", "unknown field"),
        ({"models": ["no-such-model"]}, "models", "unknown model 'no-such-model'; available: "),
        ({"models": []}, "models", "must have at least 1 item"),
        ({"models": ["/etc"]}, "models", "is a path"),
        # Devices no machine has, so the refusal holds on a GPU box too.
        ({"hardware": ["cuda:97"]}, "hardware", "hardware 'cuda:97' is not present on this machine; present: cpu"),
        ({"hardware": ["tpu:0"]}, "hardware", "not present"),
        ({"batch_sizes": [0]}, "batch_sizes", "must be at least 1 (at batch_sizes[0])"),
        ({"batch_sizes": [1, 8192]}, "batch_sizes", "must be at most 4096 (at batch_sizes[1])"),
        ({"batch_sizes": []}, "batch_sizes", "must have at least 1 item"),
        ({"batch_sizes": list(range(1, 66))}, "batch_sizes", "must have at most 64 items"),
        ({"batch_sizes": "8"}, "batch_sizes", "Expected `array`"),
        ({"batch_sizes": [1.5]}, "batch_sizes", "Expected `int`"),
        ({"precision": "fp64"}, "precision", "must be one of fp32, fp16, bf16, int8"),
        ({"priority": "urgent"}, "priority", "must be one of critical, high, medium, low, all"),
        ({"sequence_length": 0}, "sequence_length", "must be at least 1"),
        ({"sequence_length": 40000}, "sequence_length", "must be at most 32768"),
        ({"new_tokens": 1}, "new_tokens", "must be at least 2"),
        ({"progressive_mode": "yes"}, "progressive_mode", "Expected `bool`"),
        # JSON's own types hold: no string, float or number stands in for another type, as
        # Litestar's lenient conversion (meant for query strings) would let it.
        ({"batch_sizes": ["1e3"]}, "batch_sizes", "Expected `int`, got `str`"),
        ({"batch_sizes": ["1"]}, "batch_sizes", "Expected `int`, got `str`"),
        ({"sequence_length": "128"}, "sequence_length", "Expected `int`, got `str`"),
        ({"sequence_length": 128.0}, "sequence_length", "Expected `int`, got `float`"),
        ({"force": "true"}, "force", "Expected `bool`, got `str`"),
        ({"force": 1}, "force", "Expected `bool`, got `int`"),
        ({"repeats": "1"}, "repeats", "Expected `int`, got `str`"),
    ],
)
def test_bad_run_request_is_400_naming_the_field(client, body, field, reason):
    reply = client.post("/api/benchmark/run", json={"models": ["bert-tiny"], **body})
    assert reply.status_code == 400
    error = reply.json()
    assert error["field"] == field
    assert reason in error["reason"]


@pytest.mark.parametrize("path", ["/api/benchmark/run", "/api/benchmark/sql"])
@pytest.mark.parametrize("content", [b"{not json", b'{"sq', b"\xff\xfe"])
def test_malformed_json_body_is_400_naming_the_body(client, path, content):
    reply = client.post(path, content=content, headers={"content-type": "application/json"})
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid request"
    assert reply.json()["field"] == "body"
    assert reply.json()["reason"].startswith("the body is not valid JSON: ")


def test_a_sql_body_of_the_wrong_json_type_is_400_naming_the_field(client):
    reply = client.post("/api/benchmark/sql", json={"sql": 1})
    assert reply.status_code == 400
    assert reply.json()["field"] == "sql"
    assert "Expected `str`, got `int`" in reply.json()["reason"]


@pytest.mark.parametrize("path", ["/api/benchmark/status/nope", "/api/benchmark/results/nope"])
def test_unknown_run_is_404_naming_it(client, path):
    reply = client.get(path)
    assert reply.status_code == 404
    assert reply.json()["reason"] == "no run with id 'nope'"


def test_cancelling_an_unknown_run_is_404(client):
    reply = client.post("/api/benchmark/cancel/nope")
    assert reply.status_code == 404
    assert reply.json()["field"] == "run_id"


@pytest.mark.parametrize(
    ("url", "field", "reason"),
    [
        ("/api/benchmark/query?limit=0", "limit", "must be at least 1"),
        ("/api/benchmark/query?limit=1001", "limit", "must be at most 1000"),
        ("/api/benchmark/query?batch_size=x", "batch_size", "must be a whole number, not 'x'"),
        ("/api/benchmark/query?limit=2.5", "limit", "must be a whole number, not '2.5'"),
        ("/api/benchmark/query?precision=fp64", "precision", "must be one of fp32, fp16, bf16, int8, not 'fp64'"),
        ("/api/benchmark/export?format=xml", "format", "must be one of csv, parquet, json, not 'xml'"),
        ("/api/benchmark/runs?offset=164605506839147610112", "offset", "must be at most "),
        ("/api/benchmark/query?batch_size=99999999999", "batch_size", "must be at most 2147483647"),
        ("/api/benchmark/runs?status=weird", "status", "must be one of queued, running"),
        ("/api/benchmark/runs?limit=0", "limit", "must be at least 1"),
    ],
)
def test_bad_query_parameter_is_400_naming_it(client, url, field, reason):
    reply = client.get(url)
    assert reply.status_code == 400
    assert reply.json()["field"] == field
    assert reason in reply.json()["reason"]


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("DROP TABLE models", "DROP is not allowed"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
        ("SELECT 1; SELECT 2", "only one statement is allowed"),
        ("SELECT * FROM secrets", "not in the allowlist"),
        ("SELECT FROM WHERE", "syntax error"),
        ("SELECT model_name FROM performance_results", "model_name"),
    ],
)
def test_refused_or_failing_sql_is_400_with_the_reason(client, sql, reason):
    reply = client.post("/api/benchmark/sql", json={"sql": sql})
    assert reply.status_code == 400
    assert reason in reply.json()["reason"]


def test_sql_body_with_an_unknown_field_is_400(client):
    reply = client.post("/api/benchmark/sql", json={"sql": "SELECT 1", "query": "x"})
    assert reply.status_code == 400 and reply.json()["field"] == "query"


@pytest.mark.parametrize(
    "path",
    [
        "/api/benchmark/reports/run1/..%2F..%2Fb.duckdb",
        "/api/benchmark/reports/..%2F..%2Fetc/passwd",
        "/api/benchmark/reports/run1/%2Fetc%2Fpasswd",
        "/api/benchmark/reports/run1/secret.txt",
        "/api/benchmark/reports/%2Fetc/passwd",
    ],
)
def test_report_download_never_leaves_results_dir(client, path):
    app_settings = client.app.state.services.settings
    save_run(client.app.state.services.db, stored_run("run1"))
    write_reports(client.app.state.services.db, app_settings.results_path, "run1")
    (app_settings.results_path / "run1" / "secret.txt").write_text("not a report")
    reply = client.get(path)
    assert reply.status_code == 404
    assert "passwd" not in reply.text or reply.json()["error"] == "not found"


def test_report_files_download_through_the_server(client):
    services = client.app.state.services
    save_run(services.db, stored_run("run2"))
    write_reports(services.db, services.settings.results_path, "run2")
    listing = {entry["run_id"]: entry for entry in client.get("/api/benchmark/reports").json()}
    assert listing["run2"]["reports"] == ["report.html", "report.md", "results.json"]
    assert listing["run2"]["url"] == "/api/benchmark/reports/run2/report.html"
    markdown = client.get("/api/benchmark/reports/run2/report.md")
    assert markdown.status_code == 200 and markdown.text.startswith("# benchboard report: run run2")
    assert markdown.headers["content-disposition"].startswith("inline")  # viewable in the browser
    assert markdown.headers["content-type"] == "text/markdown; charset=utf-8"  # one charset, not two


def test_state_changing_calls_need_the_token_when_one_is_set(guarded):
    refused = guarded.post("/api/benchmark/run", json={"models": ["bert-tiny"]})
    assert refused.status_code == 401
    assert "Authorization: Bearer" in refused.json()["reason"]
    wrong = guarded.post("/api/benchmark/cancel/x", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    allowed = guarded.post("/api/benchmark/cancel/x", headers={"Authorization": "Bearer s3cret"})
    assert allowed.status_code == 404  # past the guard, to the unknown run
    # Reads need it too (tests/integration/test_hardening.py checks every endpoint).
    assert guarded.get("/api/benchmark/hardware").status_code == 401
    assert guarded.get("/api/benchmark/hardware", headers={"Authorization": "Bearer s3cret"}).status_code == 200


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:5173", "app://electron", "file://"])
def test_default_cors_allows_electron_and_localhost_origins(client, origin):
    reply = client.options(
        "/api/benchmark/run",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"},
    )
    assert reply.status_code in (200, 204)
    assert reply.headers["access-control-allow-origin"] in (origin, "*")


def test_file_pages_origin_null_is_allowed_only_with_a_token(client, guarded):
    # A file:// page's preflight announces the Authorization header its request will carry.
    preflight = {"Origin": "null", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    assert "access-control-allow-origin" not in client.options("/api/benchmark/run", headers=preflight).headers
    assert guarded.options("/api/benchmark/run", headers=preflight).headers["access-control-allow-origin"] == "null"
    with_token = guarded.get("/api/benchmark/hardware", headers={"Origin": "null", "Authorization": "Bearer s3cret"})
    assert with_token.status_code == 200 and with_token.headers["access-control-allow-origin"] == "null"


@pytest.mark.parametrize("path", ["/api/benchmark/run", "/api/benchmark/cancel/x", "/api/benchmark/sql"])
def test_a_simple_cross_site_post_cannot_change_anything(client, path):
    # A form on another site can send text/plain without a preflight; CORS would only
    # hide the answer, so the server refuses the request itself.
    runs_before = client.get("/api/benchmark/runs").json()
    reply = client.post(path, content=b'{"models": ["bert-tiny"]}',
                        headers={"Origin": "https://evil.example", "Content-Type": "text/plain"})
    assert reply.status_code == 403
    assert "origin https://evil.example may not call this server" in reply.json()["reason"]
    assert client.get("/api/benchmark/runs").json() == runs_before


def test_the_servers_own_pages_may_post_from_any_host_name(client):
    reply = client.post("/api/benchmark/sql", json={"sql": "SELECT 1 AS one"},
                        headers={"Origin": "http://testserver.local", "Host": "testserver.local"})
    assert reply.status_code == 200 and reply.json()["rows"] == [[1]]


def test_default_cors_refuses_other_sites(client):
    reply = client.options(
        "/api/benchmark/run",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in reply.headers or reply.status_code >= 400


def test_openapi_schema_lists_every_route_with_an_operation_id(client):
    schema = client.get("/schema/openapi.json").json()
    operations = [op for path in schema["paths"].values() for op in path.values() if isinstance(op, dict)]
    api_operations = [op for p, item in schema["paths"].items() if p.startswith("/api/") for op in item.values()]
    assert len(api_operations) >= 12
    assert all(op.get("operationId") for op in operations)


def test_websocket_from_an_origin_outside_the_cors_allowlist_is_refused(client):
    from litestar.exceptions import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/api/benchmark/ws/any", headers={"Origin": "https://evil.example"}) as socket:
            socket.receive_json()
    assert refused.value.code == 1008
    with client.websocket_connect("/api/benchmark/ws/any", headers={"Origin": "http://localhost:5173"}) as socket:
        assert socket.receive_json() == {"error": "no run with id 'any'"}


@pytest.mark.parametrize(
    ("query", "field"),
    [("baseline=stored-a&contender=nope", "contender"), ("baseline=nope&contender=stored-a", "baseline"),
     ("history=nope", "history")],
)
def test_an_unknown_run_in_a_comparison_is_404_naming_its_parameter(client, query, field):
    save_run(client.app.state.services.db, stored_run("stored-a"))
    reply = client.get(f"/api/benchmark/compare?{query}")
    assert reply.status_code == 404
    assert reply.json() == {"error": "not found", "reason": "no run with id 'nope'", "field": field}


def test_exporting_an_unknown_run_is_404_not_an_empty_file(client):
    reply = client.get("/api/benchmark/export?run_id=zzzz")
    assert reply.status_code == 404
    assert reply.json() == {"error": "not found", "reason": "no run with id 'zzzz'", "field": "run_id"}
    save_run(client.app.state.services.db, stored_run("stored-empty"))
    assert client.get("/api/benchmark/export?run_id=stored-empty").status_code == 200  # known, no results yet


def test_a_reports_modified_time_is_when_its_files_were_last_written(client):
    services = client.app.state.services
    save_run(services.db, stored_run("run-rewritten"))
    folder = services.settings.results_path / "run-rewritten"

    def newest_file() -> float:
        return max(path.stat().st_mtime for path in folder.iterdir())

    first = client.post("/api/benchmark/reports/run-rewritten/regenerate").json()["modified"]
    os.utime(folder, (folder.stat().st_atime, folder.stat().st_mtime - 7200))  # says nothing of its files
    listed = {entry["run_id"]: entry for entry in client.get("/api/benchmark/reports").json()}["run-rewritten"]
    assert listed["modified"] == first
    assert datetime.fromisoformat(first).timestamp() == pytest.approx(newest_file(), abs=1e-3)
    time.sleep(0.01)
    second = client.post("/api/benchmark/reports/run-rewritten/regenerate").json()["modified"]
    assert datetime.fromisoformat(second) > datetime.fromisoformat(first)  # rewritten files, same folder
    assert datetime.fromisoformat(second).timestamp() == pytest.approx(newest_file(), abs=1e-3)


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/api/benchmark/results/nonexistent0000/samples/1", 404,
         {"error": "not found", "reason": "run 'nonexistent0000' has no result 1", "field": "result_id"}),
        ("/api/benchmark/reports/nosuchrun/report.html", 404,
         {"error": "not found", "reason": "no report 'report.html' for run 'nosuchrun'", "field": "run_id"}),
        ("/api/benchmark/reports/nosuchrun/notes.txt", 404,
         {"error": "not found", "field": "file_name",
          "reason": "no report 'notes.txt' for run 'nosuchrun'; a run's reports are report.html, report.md, results.json"}),
        (f"/api/benchmark/reports/{'a' * 65}/report.html", 400,
         {"error": "invalid request", "reason": "must be at most 64 characters long", "field": "run_id"}),
        ("/api/benchmark/no-such-route", 404, {"error": "not found", "reason": "Not Found"}),
    ],
)
def test_what_is_not_there_is_a_404_naming_the_parameter(client, path, status, body):
    reply = client.get(path)
    assert (reply.status_code, reply.json()) == (status, body)


def test_comparing_a_run_with_itself_is_refused_naming_the_contender(client):
    save_run(client.app.state.services.db, stored_run("stored-self"))
    reply = client.get("/api/benchmark/compare?baseline=stored-self&contender=stored-self")
    assert reply.status_code == 400
    assert reply.json()["field"] == "contender" and reply.json()["reason"].startswith("is the baseline itself")


@pytest.mark.parametrize(
    ("url", "field", "takes"),
    [
        ("/api/benchmark/query?modle=bert", "modle", "batch_size, family, hardware, limit, model, precision"),
        ("/api/benchmark/runs?limit=5&stauts=failed", "stauts", "limit, offset, status"),
        ("/api/benchmark/export?fromat=json", "fromat",
         "batch_size, family, format, hardware, model, precision, run_id"),
        ("/api/benchmark/compare?baseline=a&contendr=b", "contendr",
         "baseline, contender, history, lookback, threshold, threshold_for"),
        ("/api/benchmark/models?family=bert", "family", None),
        ("/api/benchmark/status/nope?verbose=1", "verbose", None),
        ("/api/benchmark/results/nope/samples/1?all=1", "all", None),
    ],
)
def test_an_unknown_query_parameter_is_400_naming_it_and_what_the_route_takes(client, url, field, takes):
    # Not silently ignored: ?modle=bert would otherwise answer every result, unfiltered.
    reply = client.get(url)
    assert reply.status_code == 400
    reason = (f"unknown query parameter; this route takes: {takes}" if takes
              else "unknown query parameter; this route takes no query parameters")
    assert reply.json() == {"error": "invalid request", "reason": reason, "field": field}


def test_an_unknown_query_parameter_on_a_post_is_400_too(client):
    reply = client.post("/api/benchmark/sql?dry_run=1", json={"sql": "SELECT 1"})
    assert reply.status_code == 400 and reply.json()["field"] == "dry_run"


@pytest.mark.parametrize(
    ("url", "field"),
    [("/api/benchmark/query?model=bert-tiny&model=gpt2", "model"), ("/api/benchmark/runs?limit=1&limit=500", "limit"),
     ("/api/benchmark/export?format=csv&format=json", "format")],
)
def test_a_single_valued_query_parameter_given_twice_is_400_naming_it(client, url, field):
    # Not the last value silently kept.
    reply = client.get(url)
    assert reply.status_code == 400
    assert reply.json() == {"error": "invalid request", "reason": "given 2 times; this parameter takes one value",
                            "field": field}


def test_a_list_query_parameter_may_repeat_and_known_ones_still_pass(client):
    save_run(client.app.state.services.db, stored_run("stored-repeat"))
    reply = client.get("/api/benchmark/compare?history=stored-repeat&threshold_for=bert-*=10%25&threshold_for=gpt2=2%25")
    assert reply.status_code == 200, reply.text
    assert client.get("/api/benchmark/query?model=bert-tiny&limit=5").status_code == 200


def test_pages_and_the_run_websocket_are_not_held_to_the_apis_query_parameters(client):
    # Pages read their own extra parameters (custom tabs' inputs) and htmx sends its own.
    assert client.get("/?utm_source=x", headers={"HX-Request": "true"}).status_code == 200
    with client.websocket_connect("/api/benchmark/ws/any?token=t") as socket:
        assert socket.receive_json() == {"error": "no run with id 'any'"}


def test_the_query_parameter_check_comes_after_the_token(guarded):
    # Without the token, a caller learns nothing about a route's parameters.
    assert guarded.get("/api/benchmark/query?modle=x").status_code == 401
    reply = guarded.get("/api/benchmark/query?modle=x", headers={"Authorization": "Bearer s3cret"})
    assert reply.status_code == 400 and reply.json()["field"] == "modle"
