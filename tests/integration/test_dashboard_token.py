"""With --token, the dashboard's state-changing forms need it too (through /login's cookie)."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from webapp.app import create_app
from webapp.wiring.settings import Settings

FORM_WITH_AN_ERROR = {"priority": "high", "hardware": "cpu", "batch_sizes": "0", "precision": "fp32"}


@pytest.fixture
def client(tmp_path):
    settings = Settings(db_path=str(tmp_path / "b.duckdb"), results_dir=str(tmp_path / "results"),
                        log_dir=str(tmp_path / "logs"), token="s3cret", prestart_workers=False,
                        allowed_hosts=["testserver.local"])  # the Host that Litestar's TestClient sends
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def post_run_form(client):
    client.get("/runs")
    return client.post("/runs", data=FORM_WITH_AN_ERROR | {"_csrf_token": client.cookies["csrftoken"]})


def test_run_form_without_the_token_is_refused_with_a_page_saying_how(client):
    refused = post_run_form(client)
    assert refused.status_code == 401
    assert "text/html" in refused.headers["content-type"]
    assert "/login?token=" in refused.text


def test_login_with_the_wrong_token_is_refused(client):
    assert client.get("/login?token=nope", follow_redirects=False).status_code == 401


def test_after_login_the_form_reaches_its_own_validation(client):
    login = client.get("/login?token=s3cret", follow_redirects=False)
    assert login.status_code in (301, 302, 303, 307) and login.headers["location"] == "/runs"
    assert "httponly" in login.headers["set-cookie"].lower() and "samesite=strict" in login.headers["set-cookie"].lower()
    answered = post_run_form(client)
    assert answered.status_code == 422  # past the token guard, to the form's own batch-size error
    assert "run-form-errors" in answered.text
