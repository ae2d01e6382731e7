"""HTTP errors become BenchmarkAPIError subclasses that carry the server's own words."""

import json

import pytest

from benchboard_client.errors import (
    BenchmarkAPIError,
    InvalidRequest,
    NotFound,
    Unauthorized,
    error_from_response,
)

URL = "http://127.0.0.1:8000/api/benchmark/run"


@pytest.mark.parametrize(("status_code", "expected"), [
    (400, InvalidRequest), (422, InvalidRequest), (401, Unauthorized), (403, Unauthorized), (404, NotFound),
    (500, BenchmarkAPIError), (503, BenchmarkAPIError),
])
def test_each_status_code_maps_to_its_error_class(status_code, expected):
    error = error_from_response(status_code, json.dumps({"error": "x", "reason": "y"}), "POST", URL)
    assert type(error) is expected
    assert error.status_code == status_code


def test_the_servers_field_and_reason_make_the_message():
    body = {"error": "invalid request", "reason": "unknown model 'nope'", "field": "models"}
    error = error_from_response(400, json.dumps(body), "POST", URL)
    assert str(error).startswith("models: unknown model 'nope'")
    assert "POST" in str(error) and "400" in str(error)
    assert (error.field, error.reason, error.error) == ("models", "unknown model 'nope'", "invalid request")
    assert error.body == body


def test_a_body_without_a_field_is_its_reason():
    error = error_from_response(400, json.dumps({"error": "query refused", "reason": "DROP is not allowed"}),
                                "POST", URL)
    assert str(error).startswith("DROP is not allowed")


def test_a_body_that_is_not_json_is_quoted_as_text():
    error = error_from_response(502, "<html>Bad Gateway</html>", "GET", URL)
    assert "Bad Gateway" in str(error)
    assert error.field is None


def test_an_empty_body_still_names_the_request():
    error = error_from_response(404, "", "GET", URL)
    assert isinstance(error, NotFound)
    assert URL in str(error)
