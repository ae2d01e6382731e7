"""A run's report files over HTTP, through the real app (create_app): HEAD answers as GET does
without the body, and /favicon.ico, which a browser asks for by itself beside report.md, is served."""

from datetime import datetime, timezone

import pytest
from litestar.testing import TestClient

from descriptions import stored_run
from engine.runs import RunRequest
from storage.runs import save_run
from webapp.app import create_app
from webapp.reporting.reports import write_reports
from webapp.wiring.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reports-http")
    settings = Settings(
        db_path=str(folder / "reports.duckdb"), results_dir=str(folder / "results"), log_dir=str(folder / "logs"),
        resume=False, allowed_hosts=["testserver.local"], prestart_workers=False,
    )
    with TestClient(create_app(settings)) as test_client:
        services = test_client.app.state.services
        save_run(services.db, stored_run(
            "run-a", request=RunRequest(models=["bert-tiny"], hardware=["cpu"], batch_sizes=[1]),
            start_time=datetime(2026, 12, 6, 20, 53, 58, 265853, tzinfo=timezone.utc),
            completion_time=datetime(2026, 12, 6, 20, 54, 3, 1, tzinfo=timezone.utc),
        ))
        write_reports(services.db, services.settings.results_path, "run-a")
        yield test_client


@pytest.mark.parametrize("name", ["report.html", "report.md", "results.json"])
def test_head_on_a_report_file_answers_as_get_does_without_the_body(client, name):
    url = f"/api/benchmark/reports/run-a/{name}"
    got, headed = client.get(url), client.head(url)
    assert (got.status_code, headed.status_code) == (200, 200)
    assert headed.content == b""
    for header in ("content-type", "content-length", "content-disposition", "etag", "last-modified"):
        assert headed.headers[header] == got.headers[header], header
    assert int(headed.headers["content-length"]) == len(got.content)


def test_head_on_a_missing_report_is_a_404_as_get_is(client):
    assert client.head("/api/benchmark/reports/run-b/report.html").status_code == 404
    assert client.head("/api/benchmark/reports/run-a/secret.txt").status_code == 404


def test_the_favicon_is_served_and_pages_and_reports_name_it(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/vnd.microsoft.icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file's header
    assert '<link rel="icon" href="/favicon.ico">' in client.get("/reports").text
    # report.html opens from disk as well, with no server: the same icon, inlined.
    assert '<link rel="icon" href="data:image/vnd.microsoft.icon;base64,' in client.get(
        "/api/benchmark/reports/run-a/report.html").text


@pytest.mark.parametrize("name", ["report.html", "report.md"])
def test_report_times_read_as_the_dashboard_writes_them(client, name):
    report = client.get(f"/api/benchmark/reports/run-a/{name}").text
    assert "2026-12-06 20:53:58 UTC" in report and "2026-12-06 20:54:03 UTC" in report
    assert "20:53:58.265853" not in report and "+00:00" not in report
