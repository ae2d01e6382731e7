"""engine.compare: the verdict rules, on synthetic samples with known distributions."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from engine.compare import (
    BOOTSTRAP_SEED,
    FASTER,
    INCOMPARABLE,
    NOISY,
    P_THRESHOLD,
    SLOWER,
    UNCHANGED,
    ComparedResult,
    ConfigIdentity,
    RunComparison,
    Thresholds,
    bootstrap_medians,
    compare_history,
    compare_pair,
    compare_runs,
    config_label,
    parse_threshold,
    parse_threshold_override,
    ratio_ci,
    thresholds_from,
)
from engine.errors import InvalidRequestError

_ids = iter(range(1, 1_000_000))


def row(samples, *, model="m", batch_size=1, fingerprint="env-a", run_id="r", result_id=None, **fields):
    return ComparedResult(
        model_name=model, hardware="cpu", batch_size=batch_size, samples_ms=[float(x) for x in samples],
        fingerprint=fingerprint, run_id=run_id, result_id=result_id or next(_ids), **fields,
    )


def normal(median, relative_sd, n=400, seed=0):
    return np.random.default_rng(seed).normal(median, median * relative_sd, n)


# ---- two results ------------------------------------------------------------------------


def test_identical_distributions_are_not_slower():
    same = normal(10.0, 0.02, seed=1)
    pair = compare_pair(row(same), row(same))
    assert pair.verdict == UNCHANGED
    assert pair.ratio == pytest.approx(1.0)
    assert pair.p_value == pytest.approx(1.0)


def test_two_draws_of_one_distribution_are_unchanged_not_slower():
    for seed in range(10):
        pair = compare_pair(row(normal(10.0, 0.02, seed=seed)), row(normal(10.0, 0.02, seed=seed + 100)))
        assert pair.verdict == UNCHANGED, pair.reason
        assert pair.ratio_ci_low <= 1.0 <= pair.ratio_ci_high or abs(pair.ratio - 1) < 0.01


def test_ten_percent_slower_with_tight_cis_is_slower_with_ratio_near_1_10():
    pair = compare_pair(row(normal(10.0, 0.02, seed=1)), row(normal(11.0, 0.02, seed=2)))
    assert pair.verdict == SLOWER, pair.reason
    assert pair.ratio == pytest.approx(1.10, abs=0.01)
    assert pair.ratio_ci_low < pair.ratio < pair.ratio_ci_high
    assert pair.ratio_ci_low > 1.05
    assert pair.p_value < P_THRESHOLD
    assert pair.contender.ci_low_ms > pair.baseline.ci_high_ms


def test_ten_percent_faster_is_faster():
    pair = compare_pair(row(normal(11.0, 0.02, seed=1)), row(normal(10.0, 0.02, seed=2)))
    assert pair.verdict == FASTER
    assert pair.ratio == pytest.approx(1 / 1.1, abs=0.01)


def test_wide_cis_are_noisy_even_when_the_medians_differ_by_more_than_the_threshold():
    rng = np.random.default_rng(3)
    baseline = rng.lognormal(np.log(10.0), 0.8, 15)
    contender = rng.lognormal(np.log(10.8), 0.8, 15)
    pair = compare_pair(row(baseline), row(contender))
    assert pair.verdict == NOISY, pair.reason
    assert pair.ratio_ci_high - pair.ratio_ci_low > 0.2


def test_a_change_below_the_threshold_is_unchanged_even_when_significant():
    pair = compare_pair(row(normal(10.0, 0.005, n=2000, seed=1)), row(normal(10.2, 0.005, n=2000, seed=2)))
    assert pair.p_value < P_THRESHOLD  # a real 2% shift...
    assert pair.verdict == UNCHANGED  # ...within the 5% threshold


def test_slower_needs_the_p_value_too():
    # Six samples each: the CIs are [min, max]-ish and p cannot get below 0.002.
    pair = compare_pair(row([10, 10.1, 10.2, 10.3, 10.4, 10.5]), row([11.5, 11.6, 11.7, 11.8, 11.9, 12.0]))
    assert pair.ratio > 1.1
    assert pair.p_value >= P_THRESHOLD
    assert pair.verdict == NOISY
    assert "p =" in pair.reason


def test_too_few_samples_are_noisy():
    pair = compare_pair(row([10, 11]), row([12, 13]))
    assert pair.verdict == NOISY
    assert "too few" in pair.reason


def test_different_fingerprints_are_incomparable_whatever_the_numbers():
    pair = compare_pair(row(normal(10.0, 0.02, seed=1), fingerprint="env-a"),
                        row(normal(13.0, 0.02, seed=2), fingerprint="env-b"))
    assert pair.verdict == INCOMPARABLE
    assert "env-a" in pair.reason and "env-b" in pair.reason
    assert pair.ratio == pytest.approx(1.3, abs=0.02)  # still reported


def test_the_threshold_decides_and_can_be_set_per_config():
    baseline, contender = normal(10.0, 0.01, seed=1), normal(10.8, 0.01, seed=2)
    assert compare_pair(row(baseline), row(contender), 0.05).verdict == SLOWER
    assert compare_pair(row(baseline), row(contender), 0.10).verdict == UNCHANGED
    thresholds = Thresholds(default=0.05, overrides={"slow-*": 0.10})
    assert thresholds.for_config("slow-model|cpu|bs1", "slow-model") == 0.10
    assert thresholds.for_config("other|cpu|bs1", "other") == 0.05
    assert thresholds.for_config("other|cpu|bs8|fp32", "other") == 0.05
    assert Thresholds(overrides={"*|bs8|*": 0.2}).for_config("other|cpu|bs8|fp32", "other") == 0.2


def test_between_process_spread_widens_the_cis_so_a_shift_it_explains_is_not_slower():
    baseline, contender = normal(10.0, 0.01, seed=1), normal(10.7, 0.01, seed=2)
    assert compare_pair(row(baseline), row(contender)).verdict == SLOWER
    spread = {"repeats": 3, "between_process_cv": 0.08}
    pair = compare_pair(row(baseline, **spread), row(contender, **spread))
    assert pair.verdict == NOISY
    assert pair.ratio_ci_high - pair.ratio_ci_low > 0.1


def test_the_ratio_ci_is_reproducible_and_covers_the_true_ratio():
    baseline, contender = normal(10.0, 0.05, seed=4), normal(11.0, 0.05, seed=5)
    first, again = ratio_ci(baseline, contender), ratio_ci(baseline, contender)
    assert first == again
    assert first[0] < 1.10 < first[1]


def test_the_exact_median_bootstrap_matches_resampling():
    rng = np.random.default_rng(7)
    for n in (31, 40):
        data = np.sort(rng.lognormal(0, 0.4, n))
        exact = bootstrap_medians(data, np.random.default_rng(BOOTSTRAP_SEED), 40_000)
        brute = np.median(rng.choice(data, (40_000, n)), axis=1)
        for q in (5, 25, 50, 75, 95):
            assert np.percentile(exact, q) == pytest.approx(np.percentile(brute, q), rel=0.03)


# ---- two runs -----------------------------------------------------------------------------


def test_runs_are_matched_by_config_key_and_the_rest_listed_as_added_or_removed():
    baseline = [row(normal(10, 0.02, seed=1), batch_size=1, run_id="a"),
                row(normal(20, 0.02, seed=2), batch_size=4, run_id="a")]
    contender = [row(normal(11, 0.02, seed=3), batch_size=1, run_id="b"),
                 row(normal(30, 0.02, seed=4), batch_size=8, run_id="b")]
    result = compare_runs(baseline, contender, baseline_run_id="a", contender_run_id="b")
    assert [c.batch_size for c in result.configs] == [1]
    assert result.configs[0].verdict == SLOWER
    assert [c.batch_size for c in result.added] == [8]
    assert [c.batch_size for c in result.removed] == [4]
    assert result.has_regression
    assert result.counts == {SLOWER: 1, FASTER: 0, UNCHANGED: 0, NOISY: 0, INCOMPARABLE: 0}


def test_configs_are_sorted_by_ratio_the_most_slowed_first():
    baseline = [row(normal(10, 0.02, seed=s), batch_size=b) for s, b in ((1, 1), (2, 2), (3, 4))]
    contender = [row(normal(m, 0.02, seed=s + 10), batch_size=b) for s, b, m in ((1, 1, 9), (2, 2, 12), (3, 4, 10))]
    result = compare_runs(baseline, contender, baseline_run_id="a", contender_run_id="b")
    assert [c.batch_size for c in result.configs] == [2, 4, 1]
    assert [c.verdict for c in result.configs] == [SLOWER, UNCHANGED, FASTER]


def test_a_comparison_survives_json_unchanged():
    result = compare_runs([row(normal(10, 0.02, seed=1))], [row(normal(11, 0.02, seed=2))],
                          baseline_run_id="a", contender_run_id="b")
    again = msgspec.json.decode(msgspec.json.encode(result), type=RunComparison)
    assert again == result
    assert len(again.configs[0].baseline.quantiles_ms) == 21


# ---- history ------------------------------------------------------------------------------


def history(medians, *, fingerprint="env-a", noise=0.02):
    return [row(normal(m, noise, seed=i), run_id=f"h{i}", fingerprint=fingerprint) for i, m in enumerate(medians)]


def test_history_unchanged_run_is_unchanged():
    earlier = history([10.0, 10.1, 9.9, 10.05, 9.95, 10.0, 10.1, 9.9, 10.0, 10.02])
    now = row(normal(10.03, 0.02, seed=99), run_id="now")
    result = compare_history([now], earlier, run_id="now")
    (config,) = result.configs
    assert config.verdict == UNCHANGED, config.reason
    assert config.baseline.n_results == 10
    assert abs(config.z_score) < 5


def test_history_catches_a_slow_run_by_z_score_and_ratio():
    earlier = history([10.0, 10.1, 9.9, 10.05, 9.95, 10.0, 10.1, 9.9, 10.0, 10.02])
    now = row(normal(11.0, 0.02, seed=99), run_id="now")
    (config,) = compare_history([now], earlier, run_id="now").configs
    assert config.verdict == SLOWER, config.reason
    assert config.z_score > 5
    assert config.ratio == pytest.approx(1.10, abs=0.01)


def test_history_with_a_wide_spread_is_noisy_not_slower():
    earlier = history([8.0, 12.0, 9.0, 11.5, 8.5, 12.5, 10.0, 9.5, 11.0, 10.5])
    now = row(normal(11.0, 0.02, seed=99), run_id="now")
    (config,) = compare_history([now], earlier, run_id="now").configs
    assert config.verdict == NOISY
    assert config.z_score < 5


def test_history_uses_only_the_last_k_earlier_results_with_the_same_fingerprint():
    old = history([20.0] * 5)  # slow long ago
    recent = history([11.0, 11.1, 10.9, 11.0, 11.05])
    other_env = history([5.0, 5.0, 5.0], fingerprint="env-b")
    now = row(normal(11.0, 0.02, seed=99), run_id="now")
    (config,) = compare_history([now], old + recent + other_env, run_id="now", lookback=5).configs
    assert config.baseline.n_results == 5
    assert config.baseline.median_ms == pytest.approx(11.0, abs=0.1)
    assert config.verdict == UNCHANGED


def test_history_of_another_environment_only_is_incomparable_and_none_is_added():
    now = [row(normal(10, 0.02), run_id="now", batch_size=1), row(normal(10, 0.02), run_id="now", batch_size=2)]
    result = compare_history(now, [], run_id="now", other_environments={now[0].key: 4})
    assert [c.verdict for c in result.configs] == [INCOMPARABLE]
    assert "4 under other fingerprints" in result.configs[0].reason
    assert [c.batch_size for c in result.added] == [2]


def test_short_history_is_compared_with_the_latest_as_two_runs():
    earlier = history([10.0, 10.0])
    now = row(normal(11.0, 0.02, seed=99), run_id="now")
    (config,) = compare_history([now], earlier, run_id="now").configs
    assert config.verdict == SLOWER
    assert config.z_score is None
    assert "too few for a z-score" in config.reason


# ---- user input ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [("5%", 0.05), ("0.05", 0.05), (" 12.5 % ", 0.125), (0.1, 0.1)])
def test_thresholds_parse_as_a_percentage_or_a_fraction(text, value):
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["5", "abc", "0", "-5%", "150%", "nan", ""])
def test_bad_thresholds_are_refused_naming_the_field(text):
    with pytest.raises(InvalidRequestError) as refused:
        parse_threshold(text)
    assert refused.value.field == "threshold"


def test_per_config_thresholds_parse_as_pattern_equals_threshold():
    assert parse_threshold_override("bert-*=10%") == ("bert-*", 0.10)
    assert thresholds_from("3%", ["gpt2*=0.2"]) == Thresholds(default=0.03, overrides={"gpt2*": 0.2})
    with pytest.raises(InvalidRequestError) as refused:
        parse_threshold_override("no-equals-sign")
    assert refused.value.field == "threshold_for"


def test_on_a_contended_host_a_change_must_move_the_fast_samples_too():
    rng = np.random.default_rng(5)
    baseline = normal(10.0, 0.01, n=400, seed=1)
    # Contention inflated 60% of the contender's samples: its median moved, its fast samples did not.
    inflated = normal(10.0, 0.01, n=400, seed=2)
    inflated[rng.random(400) < 0.6] += 4.0
    pair = compare_pair(row(baseline), row(inflated, contended=True))
    assert pair.ratio > 1.2
    assert pair.verdict == NOISY
    assert "contended" in pair.reason and "fastest samples moved" in pair.reason
    # Uncontended, the same numbers are a slowdown.
    assert compare_pair(row(baseline), row(inflated)).verdict == SLOWER
    # A real 10% slowdown moves every sample, the fastest too: slower even when contended.
    slower = normal(11.0, 0.01, n=400, seed=3)
    slower[rng.random(400) < 0.3] += 4.0
    pair = compare_pair(row(baseline, contended=True), row(slower, contended=True))
    assert pair.verdict == SLOWER, pair.reason
    assert "contended" in pair.reason
    assert compare_pair(row(baseline, contended=True), row(baseline)).verdict == UNCHANGED


def test_every_number_of_a_comparison_encodes_as_json():
    spread = {"repeats": 3, "between_process_cv": 0.01}
    pair = compare_pair(row(normal(10, 0.02, seed=1), **spread), row(normal(10, 0.02, seed=2), **spread))
    msgspec.json.encode(pair)
    earlier = history([10.0, 10.1, 9.9])
    (config,) = compare_history([row(normal(10, 0.02, seed=9), run_id="now")], earlier, run_id="now").configs
    msgspec.json.encode(config)


def test_the_written_out_normal_quantile_is_scipys():
    # engine.compare imports scipy on first use only (issue 16), so its z is engine.stats' constant.
    from scipy import stats

    from engine import compare

    assert compare.Z_975 == float(stats.norm.ppf(0.5 + compare.CONFIDENCE / 2))


# ---- labels -----------------------------------------------------------------------------


def _fields(config) -> dict:
    """A config's fields as a stored row carries them (what ``row`` does not set itself)."""
    fields = msgspec.structs.asdict(config)
    return {name: value for name, value in fields.items() if name not in ("model_name", "hardware", "batch_size")} | {
        "model": config.model_name, "batch_size": config.batch_size}


def _label_of(config) -> str:
    # The identity a comparison builds from a stored row: the config's fields, and a key the
    # label must not read (an opaque one here, so a label that parsed it would show it).
    fields = msgspec.structs.asdict(config)
    return ConfigIdentity(config_key="opaque-key", **fields).label


def test_a_label_shows_the_fields_of_the_config_that_are_not_the_default():
    from engine.config import BenchmarkConfig

    plain = BenchmarkConfig(model_name="bert-tiny", hardware="cpu", batch_size=1, attn_implementation="sdpa")
    assert _label_of(plain) == "bert-tiny · cpu · bs1 · fp32"
    changed = msgspec.structs.replace(plain, sequence_length=16, attn_implementation="eager")
    assert _label_of(changed) == "bert-tiny · cpu · bs1 · fp32 · seq16 · attn eager"
    # A batch is timed for throughput unless asked otherwise; latency is then the odd one out.
    batch = BenchmarkConfig(model_name="vit-base", hardware="cpu", batch_size=8, image_size=384, timing="latency")
    assert _label_of(batch) == "vit-base · cpu · bs8 · fp32 · img384 · latency"
    generate = BenchmarkConfig(model_name="gpt2-tiny", hardware="cpu", batch_size=1, scenario="generate",
                               new_tokens=32, attn_implementation="sdpa")
    assert _label_of(generate) == "gpt2-tiny · cpu · bs1 · fp32 · generate 32 tokens"
    # A BenchmarkConfig labels the same as the identity of its stored result.
    for config in (plain, changed, batch, generate):
        assert config_label(config) == _label_of(config)


def test_two_configs_that_differ_never_read_the_same():
    from engine.config import BenchmarkConfig

    base = BenchmarkConfig(model_name="m|folder", hardware="cpu", batch_size=1, attn_implementation="sdpa")
    variants = [base] + [msgspec.structs.replace(base, **change) for change in (
        {"sequence_length": 16}, {"sequence_length": 512}, {"image_size": 224}, {"image_size": 384},
        {"timing": "throughput"}, {"attn_implementation": "eager"}, {"attn_implementation": "flash_attention_2"},
        {"scenario": "generate", "new_tokens": 32}, {"scenario": "generate", "new_tokens": 8},
        {"scenario": "generate", "new_tokens": 8, "sequence_length": 16}, {"batch_size": 8, "timing": "latency"},
        {"batch_size": 8, "timing": "throughput"}, {"precision": "fp16"}, {"hardware": "cuda:0"},
    )]
    # image_size 224 is what a vision model takes by default, so it reads like no image size: a model
    # takes an image or not, never both.
    without_image = [config for config in variants if config.image_size != 224]
    labels = [_label_of(config) for config in without_image]
    assert len(set(labels)) == len(labels), labels


def test_added_and_removed_configs_of_a_comparison_carry_those_labels():
    from engine.config import BenchmarkConfig

    short = BenchmarkConfig(model_name="m", hardware="cpu", batch_size=1, sequence_length=16, attn_implementation="sdpa")
    eager = BenchmarkConfig(model_name="m", hardware="cpu", batch_size=1, attn_implementation="eager")
    comparison = compare_runs([row(normal(10, 0.02, seed=1), config_key=eager.key(), run_id="a",
                                   **_fields(eager))],
                              [row(normal(10, 0.02, seed=2), config_key=short.key(), run_id="b",
                                   **_fields(short))],
                              baseline_run_id="a", contender_run_id="b")
    assert [config.label for config in comparison.added] == ["m · cpu · bs1 · fp32 · seq16"]
    assert [config.label for config in comparison.removed] == ["m · cpu · bs1 · fp32 · attn eager"]


def test_a_label_is_read_from_the_configs_fields_whatever_the_key_says(monkeypatch):
    # The key is for matching only. Were its format to change (here: another separator and
    # order), labels must not change with it: the old label parsed the key, and showed such a
    # key whole, or misread its parts.
    from engine.config import BenchmarkConfig

    monkeypatch.setattr(BenchmarkConfig, "key", lambda self: "/".join(
        str(value) for value in reversed(msgspec.structs.astuple(self))))
    configs = [
        BenchmarkConfig(model_name="m", hardware="cpu", batch_size=1, sequence_length=16, attn_implementation="eager"),
        BenchmarkConfig(model_name="m", hardware="cpu", batch_size=8, timing="latency", image_size=384),
        BenchmarkConfig(model_name="m", hardware="cpu", batch_size=1, scenario="generate", new_tokens=8),
    ]
    before = [row(normal(10, 0.02, seed=1), config_key=configs[0].key(), run_id="a", **_fields(configs[0]))]
    after = [row(normal(10, 0.02, seed=index), config_key=config.key(), run_id="b", **_fields(config))
             for index, config in enumerate(configs)]
    comparison = compare_runs(before, after, baseline_run_id="a", contender_run_id="b")
    assert [config.label for config in comparison.configs] == ["m · cpu · bs1 · fp32 · seq16 · attn eager"]
    assert sorted(config.label for config in comparison.added) == [
        "m · cpu · bs1 · fp32 · generate 8 tokens", "m · cpu · bs8 · fp32 · img384 · latency"]
    earlier = [row(normal(10, 0.02, seed=5), config_key=configs[2].key(), run_id="a", result_id=1,
                   **_fields(configs[2]))]
    history = compare_history(after[2:], earlier, run_id="b")
    assert [config.label for config in history.configs] == ["m · cpu · bs1 · fp32 · generate 8 tokens"]


def test_a_comparison_carries_the_configs_own_fields():
    from engine.config import BenchmarkConfig

    config = BenchmarkConfig(model_name="m", hardware="cpu", batch_size=2, sequence_length=64, timing="latency",
                             attn_implementation="eager", scenario="generate", new_tokens=16)
    pair = compare_pair(row(normal(10, 0.02, seed=1), **_fields(config)), row(normal(10, 0.02, seed=2), **_fields(config)))
    identity = {name: getattr(pair, name) for name in msgspec.structs.asdict(config)}
    assert identity == msgspec.structs.asdict(config)
    assert pair.config_key == config.key()
    encoded = msgspec.json.decode(msgspec.json.encode(pair))
    assert (encoded["timing"], encoded["attn_implementation"], encoded["scenario"], encoded["new_tokens"]) == (
        "latency", "eager", "generate", 16)


def test_a_result_stored_before_a_column_existed_still_gets_a_sensible_label():
    # NULL columns (results from before timing modes, attention or scenarios were stored) read
    # as what such a config ran with, whatever shape the key of that time had.
    old = ConfigIdentity(config_key="m|cpu|bs8|fp32|seq128|img-", model_name="m", hardware="cpu", batch_size=8,
                         precision="fp32")
    assert old.label == "m · cpu · bs8 · fp32"
    short = ConfigIdentity(config_key="m|cpu|bs1|fp32|seq16|img-", model_name="m", hardware="cpu", batch_size=1,
                           precision="fp32", sequence_length=16, timing=None, attn_implementation=None, scenario=None)
    assert short.label == "m · cpu · bs1 · fp32 · seq16"
    # A generate config whose token count is unknown still says it generates.
    tokens_unknown = ConfigIdentity(config_key="k", model_name="g", hardware="cpu", batch_size=1, precision="fp32",
                                    scenario="generate")
    assert tokens_unknown.label == "g · cpu · bs1 · fp32 · generate"
    # Through a comparison: a row with those columns NULL.
    pair = compare_pair(row(normal(10, 0.02, seed=1), batch_size=8, sequence_length=None, scenario=None),
                        row(normal(10, 0.02, seed=2), batch_size=8, sequence_length=None, scenario=None))
    assert pair.label == "m · cpu · bs8 · fp32"


# ---- reused results (incremental mode) ------------------------------------------------------


def test_a_result_the_contender_reused_from_the_baseline_is_one_measurement_not_removed_nor_compared():
    measured = row(normal(10, 0.02, seed=1), batch_size=1, run_id="a")
    baseline = [measured, row(normal(20, 0.02, seed=2), batch_size=2, run_id="a")]
    # The contender measured bs4 and reused the baseline's bs1 (the row keeps its measuring run).
    contender = [row(normal(30, 0.02, seed=3), batch_size=4, run_id="b"), measured]
    result = compare_runs(baseline, contender, baseline_run_id="a", contender_run_id="b")
    assert result.configs == []
    assert [(c.batch_size, c.run_id, c.result_id) for c in result.reused] == [(1, "a", measured.result_id)]
    assert [c.batch_size for c in result.removed] == [2]
    assert [c.batch_size for c in result.added] == [4]
    assert sum(result.counts.values()) == 0 and not result.has_regression


def test_a_result_reused_from_a_third_run_is_compared_and_says_where_it_came_from():
    baseline = [row(normal(10, 0.02, seed=1), run_id="a")]
    contender = [row(normal(11, 0.02, seed=2), run_id="third")]  # run b reused run third's result
    result = compare_runs(baseline, contender, baseline_run_id="a", contender_run_id="b")
    (config,) = result.configs
    assert result.reused == []
    assert config.verdict == SLOWER and result.has_regression  # a measurement the baseline does not hold
    assert config.reused_from == "third"
    assert config.reason.startswith("the contender reused run third's result; ")


def test_history_compares_a_reused_result_with_the_results_before_it_but_counts_it_as_the_measurers():
    earlier = history([10.0, 10.1, 9.9, 10.05, 9.95])
    reused = row(normal(11.0, 0.02, seed=99), run_id="measurer")  # newer than the history
    result = compare_history([reused], earlier, run_id="now")
    (config,) = result.configs
    assert config.verdict == SLOWER, config.reason
    assert config.contender.run_id == config.reused_from == "measurer"
    assert config.baseline.n_results == 5
    assert config.reason.startswith("the run reused run measurer's result: that run's comparison with its history, "
                                    "not counted here; ")
    # The measurer's own comparison says slower; "now" measured nothing, so nothing of it regressed.
    assert sum(result.counts.values()) == 0 and not result.has_regression
    assert compare_history([reused], earlier, run_id="measurer").has_regression


# ---- confidence intervals stay above 0 -------------------------------------------------------


def test_a_wide_between_process_spread_widens_a_ci_by_a_factor_and_never_below_zero():
    # Two processes whose medians differ by a third (cv 0.25): the QA case of ci_low_ms -157.86 at
    # a median of 163.9. On log latencies the CI is median / f .. median * f, f = exp(t(1) * cv / sqrt(2)).
    samples = normal(163.9, 0.02, seed=3)
    pair = compare_pair(row(samples, repeats=2, between_process_cv=0.25), row(samples, repeats=2, between_process_cv=0.25))
    side = pair.contender
    factor = np.exp(12.706204736 * 0.25 / np.sqrt(2))
    assert side.ci_low_ms == pytest.approx(side.median_ms / factor, rel=1e-6)
    assert side.ci_high_ms == pytest.approx(side.median_ms * factor, rel=1e-6)
    assert 0 < side.ci_low_ms < side.median_ms < side.ci_high_ms
    assert pair.verdict == NOISY


def test_a_small_between_process_spread_still_widens_the_cis_about_as_before():
    samples = normal(10.0, 0.01, seed=4)
    side = compare_pair(row(samples), row(samples, repeats=3, between_process_cv=0.02)).contender
    half = 4.302652730 * 0.02 * side.median_ms / np.sqrt(3)  # the additive half-width it replaces
    assert side.ci_low_ms == pytest.approx(side.median_ms - half, rel=0.003)
    assert side.ci_high_ms == pytest.approx(side.median_ms + half, rel=0.003)


def test_a_history_mean_of_scattered_medians_has_a_ci_that_stops_at_zero():
    earlier = history([10.0, 300.0, 12.0])  # a t-interval of mean 107 +- 415
    now = row(normal(11.0, 0.02, seed=99), run_id="now")
    (config,) = compare_history([now], earlier, run_id="now").configs
    assert config.baseline.ci_low_ms == 0.0
    assert config.baseline.ci_high_ms > config.baseline.median_ms
    assert config.ratio_ci_high is None  # open above: nothing bounds how much faster the history was
    assert config.verdict == NOISY
