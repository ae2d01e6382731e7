"""The generate scenario's timing (engine.generation) and its planning: what a generation's
figures are made of, that every token is timestamped after a device sync, that a real tiny
model's generation is timed token by token, and which models and settings are refused."""

from __future__ import annotations

import inspect
import sys

import pytest
import torch
import transformers

from engine import generation
from engine.config import BenchmarkConfig, Job, MeasurementSettings
from engine.errors import InvalidRequestError, UnsupportedConfigError
from engine.generation import (
    GenerationSession,
    TokenClock,
    check_positions,
    generation_figures,
    generation_inputs,
    prompt_tokens,
)
from engine.measurement import measure
from engine.models.registry import ModelRegistry
from engine.planning import plan_run
from engine.runs import RunRequest
from engine.stats import median_ci

# Enough to time a few tiny generations; the loop's stopping rule is not under test here.
# The iteration bounds decide how many generations run, not the clock: a loaded CI box must not
# cut a 3-sample measurement to one by max_seconds, so the time budget is far above what 4 take.
QUICK = MeasurementSettings(warmup_iterations=1, warmup_seconds=0.0, min_iterations=3, min_seconds=0.0,
                            max_seconds=120.0, max_iterations=4)


@pytest.fixture(scope="module")
def registry():
    return ModelRegistry()


# ---- the figures (pure) ----------------------------------------------------------------------


def test_figures_take_medians_over_samples_and_tail_percentiles_over_every_gap():
    ttft = [5.0, 6.0, 7.0, 5.5, 6.5, 6.0]
    tpot = [2.0, 2.2, 2.1, 2.3, 2.0, 2.2]  # one per sample: its mean gap
    gaps = [2.0] * 90 + [9.0] * 10  # one slow token in ten, averaged away in every sample's mean
    figures = generation_figures(ttft, tpot, gaps, e2e_median_ms=40.0, batch_size=4, new_tokens=16,
                                 prompt_tokens=64, keep_samples=50)
    assert figures["ttft_ms"] == 6.0
    assert (figures["ttft_ci_low_ms"], figures["ttft_ci_high_ms"]) == median_ci(ttft)
    assert figures["tpot_ms"] == pytest.approx(2.15)
    assert (figures["tpot_ci_low_ms"], figures["tpot_ci_high_ms"]) == median_ci(tpot)
    assert figures["tpot_p90_ms"] > 2.0 and figures["tpot_p99_ms"] == 9.0  # the slow tokens show in the tail
    assert figures["e2e_ms"] == 40.0
    # decode: batch * (N - 1) tokens over the median decode time, TPOT * (N - 1)
    decode_seconds = 2.15 * 15 / 1e3
    assert figures["decode_tokens_per_second"] == pytest.approx(4 * 15 / decode_seconds)
    assert figures["prefill_tokens_per_second"] == pytest.approx(4 * 64 / 6e-3)
    assert len(figures["tpot_samples_ms"]) == 50  # the per-token gaps, capped at keep_samples
    assert figures["ttft_samples_ms"] == ttft  # in time order


def test_a_prompt_without_tokens_has_no_prefill_rate():
    figures = generation_figures([1.0], [1.0], [1.0], e2e_median_ms=3.0, batch_size=1, new_tokens=2,
                                 prompt_tokens=None, keep_samples=10)
    assert figures["prefill_tokens_per_second"] is None


def test_generation_inputs_drop_the_decoder_tokens_and_count_the_prompt():
    ids = torch.zeros((2, 64), dtype=torch.long)
    inputs = {"input_ids": ids, "attention_mask": ids, "decoder_input_ids": ids}
    assert set(generation_inputs(inputs)) == {"input_ids", "attention_mask"}
    assert prompt_tokens(inputs) == 64
    # Whisper: the encoder's positions, half the log-mel frames
    assert prompt_tokens({"input_features": torch.zeros((1, 80, 128))}) == 64


# ---- the clock -------------------------------------------------------------------------------


def test_every_token_stamp_comes_after_a_device_sync():
    # A GPU cannot exist here: the sync is a recorder, which is what a CUDA sync is to the clock.
    events = []
    clock = TokenClock(lambda: events.append("sync"))
    real_clock = generation.time.perf_counter_ns
    generation.time.perf_counter_ns = lambda: events.append("stamp") or len(events)
    try:
        scores = torch.ones(1, 4)
        for _ in range(3):
            assert clock(None, scores) is scores  # the scores pass unchanged
    finally:
        generation.time.perf_counter_ns = real_clock
    assert events == ["sync", "stamp"] * 3
    assert len(clock.stamps_ns) == 3


def _python_calls(fn) -> int:
    calls = []
    sys.setprofile(lambda frame, event, arg: calls.append(event) if event in ("call", "c_call") else None)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return len(calls)


def test_the_clock_is_cheap_for_the_logits_processor_list_to_inspect():
    # transformers' LogitsProcessorList asks inspect.signature(processor.__call__) of every processor
    # at every token; the clock answers with a signature made once, so its per-token cost (which
    # lands in every gap, and which plain generate() does not pay) is a few Python calls, not the
    # ~75 a bound method's signature costs. Counted calls, not time: the same on a loaded machine.
    class PlainMethodClock(transformers.LogitsProcessor):
        def __call__(self, input_ids, scores):
            return scores

    clock = TokenClock(None)
    assert inspect.signature(clock.__call__) is clock.__call__.__signature__
    assert list(inspect.signature(clock.__call__).parameters) == ["input_ids", "scores"]
    ids, scores = torch.zeros((1, 3), dtype=torch.long), torch.ones(1, 4)
    with_clock = transformers.LogitsProcessorList([clock])
    assert with_clock(ids, scores) is scores and len(clock.stamps_ns) == 1  # called through the list: one stamp
    plain = transformers.LogitsProcessorList([PlainMethodClock()])
    empty = transformers.LogitsProcessorList()
    ours = _python_calls(lambda: with_clock(ids, scores)) - _python_calls(lambda: empty(ids, scores))
    theirs = _python_calls(lambda: plain(ids, scores)) - _python_calls(lambda: empty(ids, scores))
    assert ours * 2 < theirs, (ours, theirs)


def test_a_gpu_session_syncs_at_every_token_and_at_the_end(registry, monkeypatch):
    # No GPU here: the session asks engine.timing for the cuda synchronizer; a counter stands in.
    syncs = []
    monkeypatch.setattr(generation, "device_synchronizer", lambda device_type: (lambda: syncs.append(device_type)))
    spec = registry.get("gpt2-tiny")
    model = spec.build(attn_implementation="sdpa")
    session = GenerationSession(model, spec.name, spec.make_inputs(1, 8, None), 5, "cuda")
    with torch.inference_mode():
        session.timer(session.generate)
    assert syncs == ["cuda"] * (5 + 1)  # one before each token's stamp, one before the end reading


# ---- real generations ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpt2-tiny", "t5-tiny"])
def test_a_timed_generation_has_one_stamp_per_token_inside_its_end_to_end_time(registry, name):
    spec = registry.get(name)
    model = spec.build(attn_implementation="sdpa")
    session = GenerationSession(model, spec.name, spec.make_inputs(2, 16, None), 6, "cpu")
    with torch.inference_mode():
        e2e_ns = session.timer(session.generate)
    (ttft_ns,) = session.ttft_ns
    assert len(session.gaps_ns) == 5 and all(gap > 0 for gap in session.gaps_ns)
    assert 0 < ttft_ns and ttft_ns + sum(session.gaps_ns) <= e2e_ns
    assert session.tpot_ns == [sum(session.gaps_ns) / 5]


def test_a_generate_that_skips_the_logits_processors_fails_rather_than_being_misread():
    class NoProcessors(torch.nn.Module):
        config = None

        def generate(self, **kwargs):
            return None

    session = GenerationSession(NoProcessors(), "odd", {"input_ids": torch.zeros((1, 4), dtype=torch.long)}, 4, "cpu")
    with pytest.raises(RuntimeError, match="not one per each of the 4 tokens"):
        session.timer(session.generate)


def test_a_prompt_and_new_tokens_beyond_the_position_embeddings_are_refused(registry):
    spec = registry.get("gpt2-tiny")  # 512 positions
    model = spec.build(attn_implementation="sdpa")
    with pytest.raises(UnsupportedConfigError, match="sequence_length 500 \\+ new_tokens 32 is 532"):
        check_positions(model, spec.name, {"input_ids": torch.zeros((1, 500), dtype=torch.long)}, 32)


def test_measure_reports_a_generation_with_exact_token_counts(registry):
    config = BenchmarkConfig(model_name="gpt2-tiny", hardware="cpu", batch_size=2, sequence_length=16,
                             scenario="generate", new_tokens=8, attn_implementation="sdpa")
    result = measure(Job(config=config, settings=QUICK), registry)
    assert result.ok, result.error_message
    n = result.n_samples
    assert 3 <= n <= 4 and len(result.samples_ms) == n and len(result.ttft_samples_ms) == n
    assert len(result.tpot_samples_ms) == n * 7  # every gap after the first token
    assert 0 < result.ttft_ms <= result.e2e_ms == result.p50_latency_ms
    assert result.tpot_ms > 0 and result.tpot_p99_ms >= result.tpot_p90_ms
    assert result.decode_tokens_per_second == pytest.approx(2 * 7 / (result.tpot_ms * 7 / 1e3))
    assert result.prefill_tokens_per_second == pytest.approx(2 * 16 / (result.ttft_ms / 1e3))
    assert result.throughput_tokens_per_second == pytest.approx(result.throughput_items_per_second * 8)
    assert (result.scenario, result.new_tokens, result.timing) == ("generate", 8, "latency")
    assert result.memory_peak_mb is not None


# ---- planning ----------------------------------------------------------------------------------


def _plan(registry, **fields):
    return plan_run(RunRequest(hardware=["cpu"], **fields), registry=registry,
                    resolve_hardware=lambda names: names, environment=lambda device: {"device": device})


def test_generate_plans_latency_configs_whose_key_names_the_scenario(registry):
    run = _plan(registry, models=["t5-tiny", "whisper-tiny-random"], batch_sizes=[1, 4], scenario="generate",
                new_tokens=16)
    assert {(c.scenario, c.new_tokens, c.timing) for c in run.configs} == {("generate", 16, "latency")}
    assert all(c.key().endswith("|generate-new16") for c in run.configs)
    forward = _plan(registry, models=["t5-tiny"], batch_sizes=[4])
    assert (forward.configs[0].scenario, forward.configs[0].new_tokens) == ("forward", None)
    assert "generate" not in forward.configs[0].key()


def test_generate_on_an_encoder_is_refused_naming_the_field(registry):
    with pytest.raises(InvalidRequestError) as refused:
        _plan(registry, models=["gpt2-tiny", "bert-tiny"], scenario="generate")
    assert refused.value.field == "scenario"
    assert "bert-tiny (encoder) cannot generate" in refused.value.reason


@pytest.mark.parametrize(("fields", "field"), [
    ({"timing": "throughput"}, "timing"),
    ({"repeats": 2}, "repeats"),
    ({"new_tokens": 1}, "new_tokens"),
])
def test_generate_settings_it_cannot_honour_are_refused(registry, fields, field):
    with pytest.raises(InvalidRequestError) as refused:
        _plan(registry, models=["gpt2-tiny"], scenario="generate", **fields)
    assert refused.value.field == field


def test_repeats_are_refused_with_the_reason_tpot_cannot_be_pooled(registry):
    with pytest.raises(InvalidRequestError) as refused:
        _plan(registry, models=["gpt2-tiny"], scenario="generate", repeats=3)
    assert refused.value.field == "repeats"
    assert "TPOT" in refused.value.reason and "leave repeats at 1" in refused.value.reason
    # forward configs still take repeats
    assert _plan(registry, models=["gpt2-tiny"], repeats=3).configs


# ---- custom workloads --------------------------------------------------------------------------

CUSTOM_GENERATOR = '''
import torch
import transformers
import transformers

from engine.models.spec import GENERATE_SCENARIOS, ModelSpec

CONFIG = dict(vocab_size=128, n_embd=32, n_layer=1, n_head=2, n_positions=64, pad_token_id=0, eos_token_id=2)


def build():
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**CONFIG)).eval()


def make_inputs(batch_size, sequence_length, image_size):
    ids = torch.randint(0, 128, (batch_size, sequence_length))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def spec(name, scenarios):
    return ModelSpec(name=name, family="tiny-lm", architecture="custom", modality="text", parameters_million=0.03,
                     build=build, make_inputs=make_inputs, scenarios=scenarios)
'''


def _custom_registry(tmp_path, monkeypatch, declares: bool, via: str):
    scenarios = "GENERATE_SCENARIOS" if declares else "('forward',)"
    if via == "custom_file":
        (tmp_path / "lm.py").write_text(CUSTOM_GENERATOR + f"\n\nMODELS = [spec('custom-lm', {scenarios})]\n")
        return ModelRegistry(custom_benchmarks_dir=tmp_path)
    (tmp_path / "benchboard_lm_plugin.py").write_text(
        CUSTOM_GENERATOR + f"\n\ndef models():\n    return [spec('custom-lm', {scenarios})]\n"
    )
    dist_info = tmp_path / "benchboard_lm_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: benchboard-lm-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[benchboard.models]\nlm = benchboard_lm_plugin:models\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "benchboard_lm_plugin", raising=False)
    return ModelRegistry()


@pytest.mark.parametrize("via", ["custom_file", "entry_point"])
def test_a_custom_workload_that_declares_generate_is_planned_for_it(
    tmp_path, monkeypatch, via
):
    declared = _custom_registry(tmp_path, monkeypatch, True, via)
    assert declared.get("custom-lm").scenarios == ("forward", "generate")
    assert declared.get("custom-lm").describe().scenarios == ["forward", "generate"]
    run = _plan(declared, models=["custom-lm"], scenario="generate", sequence_length=8, new_tokens=4)
    assert [c.scenario for c in run.configs] == ["generate", "generate"]


def test_a_custom_workload_that_does_not_declare_generate_is_refused(tmp_path, monkeypatch):
    undeclared = _custom_registry(tmp_path, monkeypatch, False, "custom_file")
    with pytest.raises(InvalidRequestError) as refused:
        _plan(undeclared, models=["custom-lm"], scenario="generate")
    assert refused.value.field == "scenario" and "custom-lm (custom) cannot generate" in refused.value.reason


def test_a_custom_workload_that_declares_generate_is_measured_generating(tmp_path, monkeypatch):
    registry = _custom_registry(tmp_path, monkeypatch, True, "custom_file")
    config = BenchmarkConfig(model_name="custom-lm", hardware="cpu", batch_size=1, sequence_length=8,
                             scenario="generate", new_tokens=4)
    result = measure(Job(config=config, settings=QUICK), registry)
    assert result.ok, result.error_message
    assert result.ttft_ms > 0 and result.tpot_ms > 0 and len(result.tpot_samples_ms) == result.n_samples * 3


def test_a_checkpoint_generates_when_saved_with_a_generation_head(tmp_path, registry):
    import transformers

    from engine.models.checkpoints import local_checkpoint_spec

    config = transformers.GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "lm")
    transformers.GPT2Model(config).save_pretrained(tmp_path / "bare")
    assert local_checkpoint_spec("lm", tmp_path / "lm").scenarios == ("forward", "generate")
    assert local_checkpoint_spec("bare", tmp_path / "bare").scenarios == ("forward",)


# ---- progressive mode --------------------------------------------------------------------------


def test_a_kv_cache_oom_stops_only_its_own_generate_escalation():
    from engine.result import FAILED, Measurement
    from engine.runs import RunState
    from engine.scheduler import Scheduler

    class Stops:
        def __init__(self):
            self.stops = []

        def record_progressive_stop(self, run_id, config, reason):
            self.stops.append(config)

    def config(batch_size, scenario="generate", new_tokens=32):
        return BenchmarkConfig(model_name="gpt2-tiny", hardware="cpu", batch_size=batch_size, scenario=scenario,
                               new_tokens=new_tokens if scenario == "generate" else None)

    generate = [config(bs) for bs in (1, 8, 64)]
    other_tokens = [config(bs, new_tokens=8) for bs in (8, 64)]
    forward = [config(bs, "forward") for bs in (8, 64)]
    run = RunState(request=RunRequest(models=["gpt2-tiny"]), configs=generate + other_tokens + forward)
    store = Stops()
    scheduler = Scheduler(store=store, sink=None, worker_factory=None, parameters_million=lambda name: 1.0,
                          free_memory_bytes=lambda device: 2**40)
    oom = Measurement.failure(generate[1], FAILED, "oom", "CUDA out of memory (KV cache)")
    reason = scheduler._escalation_stop(run, generate[1], oom)
    assert reason == "stopped after batch size 8: oom"
    scheduler._skip_rest_of_escalation(run, generate[1], reason)
    assert store.stops == [generate[2]]  # neither the forward escalation nor the one of another N


def test_generate_without_models_takes_the_tiers_generating_models(registry):
    run = _plan(registry, priority="critical", scenario="generate", batch_sizes=[1])
    assert [c.model_name for c in run.configs] == ["gpt2-tiny"]  # the critical tier less bert-tiny
