"""client.calls describes each request once: path, query and body, leaving server defaults alone."""

import pytest

from benchboard_client import calls
from benchboard_client.errors import InvalidRequest


def test_arguments_left_at_none_are_not_sent_so_the_servers_defaults_apply():
    call = calls.start_benchmark(models=["bert-tiny"], batch_sizes=[1], progressive_mode=False)
    assert call.method == "POST" and call.path == "/api/benchmark/run"
    assert call.json == {"models": ["bert-tiny"], "batch_sizes": [1], "progressive_mode": False}


def test_query_filters_go_in_the_query_string():
    call = calls.query_results(model="bert-tiny", batch_size=8, limit=5)
    assert call.params == {"model": "bert-tiny", "batch_size": 8, "limit": 5}


def test_export_sends_the_format_as_the_format_parameter():
    assert calls.export("parquet", run_id="r1").params == {"format": "parquet", "run_id": "r1"}


@pytest.mark.parametrize("run_id", ["../hardware", "a/b", "a?b=1", "a#b"])
def test_a_run_id_cannot_change_the_route(run_id):
    path = calls.get_status(run_id).path
    assert path.startswith("/api/benchmark/status/")
    assert "/" not in path.removeprefix("/api/benchmark/status/")
    assert "?" not in path and "#" not in path


@pytest.mark.parametrize("run_id", ["", "   ", None])
def test_an_empty_run_id_is_refused_before_sending(run_id):
    with pytest.raises(InvalidRequest, match="run_id") as caught:
        calls.get_results(run_id)
    assert caught.value.field == "run_id"
