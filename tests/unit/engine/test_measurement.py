import time

import msgspec
import pytest
import torch

from engine import measurement
from engine.config import BenchmarkConfig, Job, MeasurementSettings
from engine.hardware import HardwareInfo
from engine.measurement import DEFAULT_THREADS, error_type, measure, prepare_inputs, prepare_model
from engine.memory import peak_memory_tracker
from engine.models.registry import ModelRegistry
from engine.result import FAILED, INCOMPATIBLE, OK
from engine.timing import choose_timer, kept_samples, time_callable

FAST = MeasurementSettings(
    warmup_iterations=2, warmup_seconds=0.01, min_iterations=10, min_seconds=0.05, max_seconds=0.5, threads=1
)


@pytest.fixture(scope="module")
def registry():
    return ModelRegistry()


def run(registry, model="bert-tiny", batch_size=1, precision="fp32", settings=FAST, sequence_length=32):
    config = BenchmarkConfig(
        model_name=model, hardware="cpu", batch_size=batch_size, precision=precision,
        sequence_length=sequence_length,
    )
    return measure(Job(config=config, settings=settings), registry)


def test_bert_tiny_fp32_reports_consistent_statistics_and_throughput(registry):
    result = run(registry, batch_size=1)

    assert result.status == OK, result.error_message
    assert (
        result.min_latency_ms <= result.p50_latency_ms <= result.p90_latency_ms
        <= result.p95_latency_ms <= result.p99_latency_ms <= result.max_latency_ms
    )
    assert result.ci_low_ms <= result.p50_latency_ms <= result.ci_high_ms
    assert result.n_samples >= FAST.min_iterations
    assert result.throughput_items_per_second == pytest.approx(1 / (result.p50_latency_ms / 1000), rel=0.01)
    # bert-tiny's tokens per item are its sequence length.
    assert result.throughput_tokens_per_second == pytest.approx(result.throughput_items_per_second * 32)
    assert len(result.samples_ms) == result.n_samples
    assert sorted(result.samples_ms)[0] == result.min_latency_ms
    assert result.load_time_ms > 0 and result.cold_latency_ms > 0
    assert result.memory_peak_mb > 0
    assert result.threads == 1
    assert result.torch_version == torch.__version__
    assert result.weights == "random" and result.parameters_million > 0
    assert result.device_name and result.wall_seconds >= result.total_timed_seconds


def test_timing_stops_once_the_median_is_precise_after_minimum_time(registry):
    settings = MeasurementSettings(
        min_iterations=10, min_seconds=0.1, max_seconds=5.0, ci_target=0.5, threads=1
    )
    result = run(registry, settings=settings)

    assert result.ci_met
    assert settings.min_seconds <= result.total_timed_seconds < 1.0


def test_samples_kept_are_capped_but_statistics_use_them_all(registry):
    result = run(registry, settings=msgspec.structs.replace(FAST, keep_samples=5))

    assert len(result.samples_ms) == 5
    assert result.n_samples > 5


def test_kept_samples_are_spread_over_the_whole_run():
    assert kept_samples([float(i) for i in range(100)], 4) == [0.0, 25.0, 50.0, 75.0]
    assert kept_samples([1.0, 2.0], 10) == [1.0, 2.0]


def test_int8_dynamic_quantization_runs_on_cpu(registry):
    quantized = prepare_model(registry.get("bert-tiny").build(), "int8", torch.device("cpu"))
    module_types = {type(m) for m in quantized.modules()}
    assert torch.ao.nn.quantized.dynamic.Linear in module_types
    assert torch.nn.Linear not in module_types

    result = run(registry, precision="int8")
    assert result.status == OK, result.error_message
    assert result.p50_latency_ms > 0


def test_bf16_casts_the_model_and_float_inputs_but_keeps_token_ids_integer(registry):
    inputs = prepare_inputs(
        {"input_ids": torch.ones(1, 4, dtype=torch.long), "pixel_values": torch.zeros(1, 3)},
        torch.device("cpu"),
        torch.bfloat16,
    )
    assert inputs["input_ids"].dtype == torch.long
    assert inputs["pixel_values"].dtype == torch.bfloat16

    result = run(registry, model="gpt2-tiny", batch_size=4, precision="bf16")
    assert result.status == OK, result.error_message


def test_precision_the_precision_module_refuses_is_incompatible_not_a_crash(registry):
    result = run(registry, precision="fp8")

    assert result.status == INCOMPATIBLE
    assert "unknown precision 'fp8'" in result.error_message


def test_int8_on_a_gpu_is_incompatible_before_anything_touches_the_gpu(registry, monkeypatch):
    # No GPU exists here: hardware lookup is replaced by a described CUDA device.
    # The precision check must answer before any CUDA call, which would fail.
    gpu = HardwareInfo(name="cuda:0", type="cuda", device="NVIDIA A100", memory_gb=40.0,
                       compute_capability="8.0", torch_device="cuda:0")  # fmt: skip
    monkeypatch.setattr(measurement, "get_hardware", lambda name: gpu)
    config = BenchmarkConfig(model_name="bert-tiny", hardware="cuda:0", batch_size=1, precision="int8")

    result = measure(Job(config=config, settings=FAST), registry)

    assert result.status == INCOMPATIBLE
    assert result.error_message == "int8 dynamic quantization runs on cpu only"


def test_unknown_model_is_a_failed_result_naming_it(registry):
    result = run(registry, model="no-such-model")

    assert result.status == FAILED
    assert result.error_type == "UnknownModelError"
    assert "no-such-model" in result.error_message


def test_sequence_longer_than_the_model_allows_fails_with_the_reason(registry):
    result = run(registry, sequence_length=100_000)

    assert result.status == FAILED
    assert "sequence_length 100000" in result.error_message


def test_out_of_memory_errors_are_classified_as_oom():
    assert error_type(torch.OutOfMemoryError("CUDA out of memory")) == "oom"
    assert error_type(MemoryError()) == "oom"
    assert error_type(ValueError("x")) == "ValueError"


def test_a_jobs_thread_count_does_not_leak_into_the_next(registry):
    assert run(registry, settings=FAST).threads == 1
    unset = msgspec.structs.replace(FAST, threads=None)
    assert run(registry, settings=unset).threads == DEFAULT_THREADS


def busy(microseconds: float):
    end = time.perf_counter_ns() + microseconds * 1000
    while time.perf_counter_ns() < end:
        pass


def test_loop_gives_up_at_max_seconds_when_the_ci_is_never_met():
    calls = iter(range(10**9))

    def bimodal():  # half the calls 0.2 ms, half 2 ms: the median's CI spans both
        busy(200 if next(calls) % 2 else 2000)

    settings = MeasurementSettings(min_iterations=10, min_seconds=0.05, max_seconds=0.3, ci_target=0.02)
    samples_ms, total_seconds = time_callable(bimodal, settings)

    assert 0.3 <= total_seconds < 0.4
    assert len(samples_ms) > settings.min_iterations


def test_loop_honours_min_iterations_and_max_iterations():
    assert len(time_callable(lambda: None, MeasurementSettings(min_iterations=50, min_seconds=0))[0]) >= 50
    capped = MeasurementSettings(min_iterations=10, min_seconds=5.0, max_seconds=5.0, max_iterations=37)
    assert len(time_callable(lambda: None, capped)[0]) == 37


def test_loop_measures_what_the_function_takes_and_syncs_every_iteration():
    syncs = []
    samples_ms, _ = time_callable(lambda: busy(1000), FAST, sync=lambda: syncs.append(1))

    assert len(syncs) == len(samples_ms)
    assert 1.0 <= sorted(samples_ms)[len(samples_ms) // 2] < 1.5


def test_cpu_timer_is_the_host_clock():
    timer = choose_timer("cpu")
    assert 2_000_000 <= timer(lambda: time.sleep(0.002)) < 20_000_000


def test_cuda_timer_reads_cuda_events_recorded_around_the_call(monkeypatch):
    # No GPU exists here, so torch.cuda.Event is replaced by a recorder; what is
    # checked is the choice of timer and the order of event calls.
    calls = []

    class FakeEvent:
        def __init__(self, enable_timing):
            assert enable_timing
            self.name = "start" if not any(c[0] == "new" for c in calls) else "end"
            calls.append(("new", self.name))

        def record(self):
            calls.append(("record", self.name))

        def synchronize(self):
            calls.append(("synchronize", self.name))

        def elapsed_time(self, end):
            calls.append(("elapsed_time", self.name, end.name))
            return 2.5  # milliseconds, as CUDA reports

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    timer = choose_timer("cuda")

    elapsed_ns = timer(lambda: calls.append(("call",)))

    assert elapsed_ns == 2_500_000
    assert calls[2:] == [
        ("record", "start"),
        ("call",),
        ("record", "end"),
        ("synchronize", "end"),
        ("elapsed_time", "start", "end"),
    ]


def test_cpu_peak_memory_sees_a_transient_allocation():
    tracker = peak_memory_tracker("cpu", torch.device("cpu"))
    block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, touched, then freed before the reading
    del block

    assert tracker.peak_increase_mb() >= 60


def test_int8_gpt2_quantizes_its_conv1d_projections_too():
    import torch

    from engine.measurement import linearize_conv1d, prepare_model
    from engine.models.registry import ModelRegistry

    spec = ModelRegistry().get("gpt2-tiny")
    inputs = spec.make_inputs(2, 16, 224)
    reference = spec.build().eval()
    with torch.inference_mode():
        expected = reference(**inputs).logits
        converted = linearize_conv1d(reference)
        assert not any(type(m).__name__ == "Conv1D" for m in converted.modules())
        torch.testing.assert_close(converted(**inputs).logits, expected, rtol=1e-4, atol=1e-5)

    quantized = prepare_model(spec.build(), "int8", torch.device("cpu"))
    dynamic = [m for m in quantized.modules() if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")]
    assert len(dynamic) >= 8  # every attention and MLP projection, plus the LM head


def test_garbage_collection_is_paused_only_while_timing():
    import gc

    from engine.config import MeasurementSettings
    from engine.timing import time_callable

    seen = []
    samples, _ = time_callable(lambda: seen.append(gc.isenabled()),
                               MeasurementSettings(min_iterations=5, min_seconds=0.0, max_seconds=0.05))
    assert samples and not any(seen)
    assert gc.isenabled()
