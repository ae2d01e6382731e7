"""Planning records everything that changes a number, so results measured otherwise never count as the same.

Issue 10: the job's own thread count, the measurement settings, the timing mode, the
attention implementation and the image size a vision model runs at.
"""

from __future__ import annotations

import msgspec
import pytest
import torch

from engine.config import BenchmarkConfig, MeasurementSettings
from engine.errors import InvalidRequestError
from engine.hardware import environment, resolve_hardware
from engine.models.registry import ModelRegistry
from engine.models.spec import ModelSpec
from engine.planning import plan_run
from engine.runs import RunRequest, field_and_reason, run_request

PROVENANCE = (
    "benchboard_version", "torch_version", "transformers_version", "float32_matmul_precision",
    "cuda_matmul_allow_tf32", "cudnn_allow_tf32", "cudnn_benchmark", "cpu_flags", "quantized_engine",
    "threads", "measurement", "parallel_devices",
)


@pytest.fixture(scope="module")
def registry():
    return ModelRegistry()


def plan(registry, settings=None, parallel_devices=False, **request):
    return plan_run(RunRequest(**request), registry=registry, resolve_hardware=resolve_hardware,
                    environment=environment, settings=settings, parallel_devices=parallel_devices)


def test_the_jobs_thread_count_is_in_the_fingerprint_not_the_servers(registry):
    one = plan(registry, models=["bert-tiny"], batch_sizes=[1], threads=1)
    two = plan(registry, models=["bert-tiny"], batch_sizes=[1], threads=2)
    assert (one.environments["cpu"]["threads"], two.environments["cpu"]["threads"]) == (1, 2)
    assert one.settings.threads == 1 and two.settings.threads == 2
    assert one.fingerprints["cpu"] != two.fingerprints["cpu"]
    # Unset: the server's setting, else torch's default in the worker, recorded as a number.
    server_default = plan(registry, settings=MeasurementSettings(threads=3), models=["bert-tiny"], batch_sizes=[1])
    assert server_default.environments["cpu"]["threads"] == 3
    torch_default = plan(registry, models=["bert-tiny"], batch_sizes=[1])
    assert torch_default.environments["cpu"]["threads"] == torch.get_num_threads()


def test_the_environment_carries_every_setting_that_changes_a_number(registry):
    run = plan(registry, settings=MeasurementSettings(max_seconds=4.0, ci_target=0.01), models=["bert-tiny"],
               batch_sizes=[1])
    env = run.environments["cpu"]
    assert set(PROVENANCE) <= set(env)
    assert env["measurement"] == {
        "warmup_iterations": 3, "warmup_seconds": 0.05, "min_iterations": 10, "min_seconds": 0.2,
        "max_seconds": 4.0, "max_iterations": 100_000, "ci_target": 0.01, "max_timer_share": 0.001,
        "gpu_block_seconds": 0.05, "timing": "auto",
    }
    assert env["parallel_devices"] is False
    json_safe = msgspec.json.decode(msgspec.json.encode(env))
    assert json_safe == env

    others = [
        plan(registry, settings=MeasurementSettings(max_seconds=5.0, ci_target=0.01), models=["bert-tiny"],
             batch_sizes=[1]),
        plan(registry, settings=MeasurementSettings(max_seconds=4.0, ci_target=0.01), parallel_devices=True,
             models=["bert-tiny"], batch_sizes=[1]),
        plan(registry, settings=MeasurementSettings(max_seconds=4.0, ci_target=0.01), timing="latency",
             models=["bert-tiny"], batch_sizes=[1]),
    ]
    assert len({run.fingerprints["cpu"], *(other.fingerprints["cpu"] for other in others)}) == 4


def test_timing_defaults_to_latency_at_batch_size_1_and_throughput_above(registry):
    auto = plan(registry, models=["bert-tiny"], batch_sizes=[1, 8])
    assert {c.batch_size: c.timing for c in auto.configs} == {1: "latency", 8: "throughput"}
    chosen = plan(registry, models=["bert-tiny"], batch_sizes=[1, 8], timing="latency")
    assert {c.timing for c in chosen.configs} == {"latency"}
    # Same point measured two ways: two identities, never skipped as the same.
    assert auto.configs[1].key() != chosen.configs[1].key()


def test_attention_defaults_to_sdpa_and_custom_workloads_keep_their_own(registry):
    custom = ModelSpec("custom-net", "test", "custom", "tabular", 0.1, lambda: torch.nn.Identity(),
                       lambda b, s, i: {"input": torch.zeros(b, 1)})

    class WithCustom:
        def resolve(self, names):
            return names

        def get(self, name):
            return custom if name == "custom-net" else registry.get(name)

    run = plan_run(RunRequest(models=["bert-tiny", "custom-net"], batch_sizes=[1]), registry=WithCustom(),
                   resolve_hardware=resolve_hardware, environment=environment)
    assert {c.model_name: c.attn_implementation for c in run.configs} == {"bert-tiny": "sdpa", "custom-net": None}
    eager = plan_run(RunRequest(models=["bert-tiny", "custom-net"], batch_sizes=[1], attn_implementation="eager"),
                     registry=WithCustom(), resolve_hardware=resolve_hardware, environment=environment)
    # Kept for the custom workload too: its worker refuses it with the reason.
    assert {c.attn_implementation for c in eager.configs} == {"eager"}


def test_vision_models_run_at_their_own_image_size_or_the_one_asked_and_others_at_none(registry):
    own = plan(registry, models=["vit-tiny", "bert-tiny"], batch_sizes=[1])
    assert {c.model_name: c.image_size for c in own.configs} == {"vit-tiny": 32, "bert-tiny": None}
    asked = plan(registry, models=["vit-tiny", "bert-tiny"], batch_sizes=[1], image_size=64)
    assert {c.model_name: c.image_size for c in asked.configs} == {"vit-tiny": 64, "bert-tiny": None}


@pytest.mark.parametrize(("fields", "field", "reason"), [
    ({"timing": "fast"}, "timing", "must be one of latency, throughput, not 'fast'"),
    ({"attn_implementation": "flash"}, "attn_implementation", "must be one of sdpa, eager, flash_attention_2"),
    ({"threads": 0}, "threads", "must be at least 1"),
    ({"image_size": 0}, "image_size", "must be at least 1"),
])
def test_bad_new_request_fields_are_refused_naming_the_field(fields, field, reason):
    with pytest.raises(InvalidRequestError) as refused:
        run_request(fields)
    assert refused.value.field == field and reason in refused.value.reason


@pytest.mark.parametrize(("message", "field", "reason"), [
    ("Expected `int` <= 4096 - at `$.batch_sizes[1]`", "batch_sizes", "must be at most 4096 (at batch_sizes[1])"),
    ("Expected `int` >= 1 - at `$.sequence_length`", "sequence_length", "must be at least 1"),
    ("Expected `float` > 0.0 - at `$.x`", "x", "must be above 0.0"),
    ("Expected `float` < 1.5 - at `$.x`", "x", "must be below 1.5"),
    ("Expected `array` of length >= 1 - at `$.models`", "models", "must have at least 1 item"),
    ("Expected `array` of length <= 64 - at `$.batch_sizes`", "batch_sizes", "must have at most 64 items"),
    ("Expected `str` of length <= 64 - at `$.hardware[0]`", "hardware", "must be at most 64 characters long (at hardware[0])"),
    ("Expected `str` of length >= 1 - at `$.name`", "name", "must be at least 1 character long"),
    ("Expected `object` of length <= 1 - at `$.params`", "params", "must have at most 1 entry"),
    ("Expected `int` that's a multiple of 8 - at `$.x`", "x", "must be a multiple of 8"),
    # Not a bound: as msgspec says it, with the element named.
    ("Expected `int`, got `str` - at `$.batch_sizes[0]`", "batch_sizes", "Expected `int`, got `str` (at batch_sizes[0])"),
])
def test_bounds_read_plainly_and_name_the_element(message, field, reason):
    assert field_and_reason(message) == (field, reason)


def test_a_request_stored_before_these_fields_still_decodes():
    old = {"priority": "high", "hardware": ["cpu"], "models": ["bert-tiny"], "batch_sizes": [1, 8],
           "precision": "fp32", "progressive_mode": True, "incremental": True, "sequence_length": 128, "force": False}
    request = msgspec.convert(old, RunRequest)
    assert (request.timing, request.attn_implementation, request.image_size, request.threads) == (None,) * 4


def test_the_config_key_names_timing_and_attention():
    config = BenchmarkConfig(model_name="m", hardware="cpu", batch_size=8, timing="throughput",
                             attn_implementation="eager")
    assert config.key() == "m|cpu|bs8|fp32|seq128|img-|throughput|attn-eager"


def test_the_run_records_its_devices_as_resolved_so_filters_on_them_find_its_results(registry):
    run = plan(registry, models=["bert-tiny"], hardware=["CPU", "cpu"], batch_sizes=[1])
    assert run.request.hardware == ["cpu"]
    assert {config.hardware for config in run.configs} == {"cpu"}
