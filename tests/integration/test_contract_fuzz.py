"""Contract fuzzing: schemathesis generates requests from /schema/openapi.json against a real
server on loopback. Whatever it sends, the server answers without a 5xx, and every answer
conforms to the schema the server publishes for it.

Bounded for CI: a fixed number of examples per operation and no shrinking past a deadline.
Run requests that the schema accepts are narrowed to one tiny model at batch size 1 and
cancelled at once, so fuzzing measures nothing big.
"""

from __future__ import annotations

import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.integration.server import start_server

EXAMPLES_PER_OPERATION = 40



# A workload whose build waits: the run holding the CPU's worker while the fuzzing goes on.
HOLDING_BENCHMARK = """
import time
import torch
from engine.models.spec import ModelSpec

def build():
    time.sleep(600)
    return torch.nn.Identity()

def inputs(batch_size, sequence_length, image_size):
    return {"input": torch.zeros(batch_size, 4)}

MODELS = [ModelSpec("holds-the-worker", "test", "custom", "tabular", 0.0, build, inputs)]
"""


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory):
    """The fuzzed runs queue behind one run that holds the CPU's worker in its build, so that
    cancelling each of them ends no worker: otherwise every accepted run started a worker (its
    torch import) that its cancel then killed, about 15 of them per mode."""
    custom = tmp_path_factory.mktemp("fuzz-custom")
    (custom / "holding.py").write_text(HOLDING_BENCHMARK)
    with start_server(tmp_path_factory.mktemp("fuzz"), max_seconds=0.1, prestart_workers=False,
                      custom_benchmarks_dir=custom) as server:
        holding = httpx.post(f"{server.url}/api/benchmark/run", timeout=30, json={
            "models": ["holds-the-worker"], "hardware": ["cpu"], "batch_sizes": [1], "force": True})
        assert holding.status_code == 202, holding.text
        # Running from the moment the scheduler takes it, its worker's start included: every run
        # accepted from now on queues behind it, while that worker's imports overlap the fuzzing.
        status_url = f"{server.url}/api/benchmark/status/{holding.json()['run_id']}"
        deadline = time.monotonic() + 60
        while httpx.get(status_url, timeout=30).json()["status"] != "running":
            assert time.monotonic() < deadline, "the holding run never started"
            time.sleep(0.05)
        yield server
        httpx.post(f"{server.url}/api/benchmark/cancel/{holding.json()['run_id']}", timeout=30)


def api_operations(server) -> list:
    schema = schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def narrowed_to_a_tiny_run(case) -> None:
    """A /run body the schema accepts would queue real work: keep it to bert-tiny at batch 1."""
    if case.path.endswith("/run") and isinstance(case.body, dict):
        case.body = {**case.body, "models": ["bert-tiny"], "hardware": ["cpu"], "batch_sizes": [1]}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_gets_a_server_error_and_every_answer_matches_its_schema(fuzzed_server, mode):
    # schemathesis' pytest plugin does not run under pytest 9, so its strategies drive Hypothesis here.
    operations = api_operations(fuzzed_server)
    assert len(operations) >= 12
    answered: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure reports the request as found
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def answers_within_contract(case):
            narrowed_to_a_tiny_run(case)
            response = case.call_and_validate(
                base_url=fuzzed_server.url, checks=[not_a_server_error, response_schema_conformance], timeout=30
            )
            answered.append(response.status_code)
            if case.path.endswith("/run") and response.status_code == 202:
                httpx.post(f"{fuzzed_server.url}/api/benchmark/cancel/{response.json()['run_id']}", timeout=30)

        try:
            answers_within_contract()
        except Unsatisfiable:
            # An operation with no parameters and no body has no input that breaks its schema.
            assert mode is GenerationMode.NEGATIVE, operation.label
    assert len(answered) >= 2 * len(operations)  # every operation was really called, more than once
