"""client.calls describes each request once: path, query and body, leaving server defaults alone."""

import inspect

import pytest

from benchboard_client import AsyncBenchmarkAPIClient, BenchmarkAPIClient, calls
from benchboard_client.errors import InvalidRequest


def test_arguments_left_at_none_are_not_sent_so_the_servers_defaults_apply():
    call = calls.start_benchmark(models=["bert-tiny"], batch_sizes=[1], progressive_mode=False)
    assert call.method == "POST" and call.path == "/api/benchmark/run"
    assert call.json == {"models": ["bert-tiny"], "batch_sizes": [1], "progressive_mode": False}


def test_start_benchmark_sends_every_field_of_a_run_request_it_is_given():
    call = calls.start_benchmark(timing="throughput", attn_implementation="eager", image_size=64, threads=2,
                                 repeats=3, scenario="generate", new_tokens=8, sequence_length=16)
    assert call.json == {"timing": "throughput", "attn_implementation": "eager", "image_size": 64, "threads": 2,
                         "repeats": 3, "scenario": "generate", "new_tokens": 8, "sequence_length": 16}


@pytest.mark.parametrize("client_class", [BenchmarkAPIClient, AsyncBenchmarkAPIClient])
def test_both_clients_start_benchmark_take_what_the_call_sends(client_class):
    # The methods pass their arguments on one by one; a field added to one list alone is a TypeError.
    takes = list(inspect.signature(client_class.start_benchmark).parameters)[1:]  # without self
    assert takes == list(inspect.signature(calls.start_benchmark).parameters)


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
