import math
import random
from statistics import fmean

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.stats import median_ci, percentile, summarize

latencies = st.lists(
    st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=300
)


def test_summary_of_one_to_ten_matches_hand_computed_values():
    stats = summarize([float(x) for x in range(10, 0, -1)], total_seconds=1.5, ci_target=0.5)

    assert stats.n_samples == 10
    assert stats.average_latency_ms == 5.5
    assert stats.std_latency_ms == pytest.approx(math.sqrt(55 / 6))  # sample std, ddof=1
    assert (stats.min_latency_ms, stats.max_latency_ms) == (1.0, 10.0)
    assert stats.p50_latency_ms == 5.5
    assert stats.p90_latency_ms == pytest.approx(9.1)
    assert stats.p95_latency_ms == pytest.approx(9.55)
    assert stats.p99_latency_ms == pytest.approx(9.91)
    assert stats.total_timed_seconds == 1.5


def test_percentiles_agree_with_numpy_linear_method():
    numpy = pytest.importorskip("numpy")
    rng = random.Random(7)
    samples = sorted(rng.lognormvariate(0, 1) for _ in range(257))
    for q in (0, 1, 50, 90, 95, 99, 100):
        assert percentile(samples, q) == pytest.approx(float(numpy.percentile(samples, q)), rel=1e-12)


@pytest.mark.parametrize(
    ("n", "low_rank", "high_rank"),
    # 1-based ranks of the 95% CI of the median from published binomial tables.
    [(6, 1, 6), (10, 2, 9), (20, 6, 15), (50, 18, 33), (100, 40, 61)],
)
def test_median_ci_uses_binomial_order_statistics(n, low_rank, high_rank):
    samples = [float(i) for i in range(1, n + 1)]
    random.Random(n).shuffle(samples)
    assert median_ci(samples) == (float(low_rank), float(high_rank))


def test_median_ci_of_too_few_samples_is_the_range_and_never_met():
    assert median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)
    assert summarize([5.0, 5.0, 5.0], total_seconds=0.1, ci_target=0.02).ci_met is False


def test_median_ci_covers_the_true_median_about_95_percent_of_the_time():
    rng = random.Random(1)
    trials = 2000
    covered = 0
    for _ in range(trials):
        # Exponential latencies (median ln 2): skewed, like real tails.
        low, high = median_ci([rng.expovariate(1.0) for _ in range(40)])
        covered += low <= math.log(2) <= high
    assert 0.94 <= covered / trials <= 0.995


def test_ci_met_compares_relative_half_width_with_target():
    tight = [100.0 + 0.1 * (i % 7) for i in range(200)]
    wide = [100.0 * (1 + i % 10) for i in range(200)]
    assert summarize(tight, 1.0, ci_target=0.02).ci_met is True
    assert summarize(wide, 1.0, ci_target=0.02).ci_met is False


def test_summarize_refuses_empty_input():
    with pytest.raises(ValueError, match="zero samples"):
        summarize([], 0.0, 0.02)


# No per-example deadline: a loaded CI machine can stall any example past hypothesis' 200 ms.
@settings(deadline=None)
@given(latencies)
def test_percentiles_are_ordered_and_bounded(samples):
    stats = summarize(samples, 1.0, 0.02)
    assert (
        stats.min_latency_ms <= stats.p50_latency_ms <= stats.p90_latency_ms
        <= stats.p95_latency_ms <= stats.p99_latency_ms <= stats.max_latency_ms
    )
    assert stats.min_latency_ms <= stats.average_latency_ms * (1 + 1e-12)
    assert stats.average_latency_ms <= stats.max_latency_ms * (1 + 1e-12)


@settings(deadline=None)
@given(latencies)
def test_median_ci_brackets_the_median(samples):
    low, high = median_ci(samples)
    median = percentile(sorted(samples), 50)
    assert min(samples) <= low <= median <= high <= max(samples)


# Tail percentiles' bounds: one-sided 95% order statistics from Binomial(n, q) (issue 10).


def test_p99_upper_bound_needs_299_samples_and_is_the_maximum_there():
    below = summarize([float(i) for i in range(1, 299)], total_seconds=1.0, ci_target=0.02)
    at = summarize([float(i) for i in range(1, 300)], total_seconds=1.0, ci_target=0.02)
    assert below.p99_ci_high_ms is None  # 0.99**298 > 0.05: even the maximum is no 95% bound
    assert at.p99_ci_high_ms == 299.0  # 0.99**299 <= 0.05: the maximum is
    assert below.p99_ci_low_ms is not None and below.p99_ci_low_ms <= below.p99_latency_ms
    # Ten samples: the old p99 was just the maximum, and nothing says how far it can be trusted.
    ten = summarize([float(i) for i in range(1, 11)], total_seconds=1.0, ci_target=0.02)
    assert ten.p99_ci_high_ms is None and ten.p90_ci_high_ms is None


@pytest.mark.parametrize(("n", "q", "lower_rank", "upper_rank"), [
    # Ranks (1-based) as scipy.stats.binom gives them: the upper bound is the smallest k with
    # binom.cdf(k - 1, n, q) >= 0.95, the lower the largest j with binom.sf(j - 1, n, q) >= 0.95.
    (100, 0.90, 85, 96), (1000, 0.90, 884, 916), (1000, 0.99, 985, 996), (299, 0.99, 293, 299),
])
def test_tail_bounds_are_the_binomial_order_statistics(n, q, lower_rank, upper_rank):
    from engine.stats import quantile_bounds

    samples = [float(i) for i in range(1, n + 1)]
    assert quantile_bounds(samples, q) == (float(lower_rank), float(upper_rank))


@pytest.mark.parametrize(("n", "q"), [(100, 0.90), (1000, 0.90), (1000, 0.99), (299, 0.99), (50_000, 0.99)])
def test_tail_bound_ranks_agree_with_scipy(n, q):
    import numpy as np

    binom = pytest.importorskip("scipy.stats").binom
    from engine.stats import quantile_bounds

    lower, upper = quantile_bounds([float(i) for i in range(1, n + 1)], q)
    ranks = np.arange(1, n + 1)  # scipy evaluates every rank at once
    upper_rank = int(ranks[binom.cdf(ranks - 1, n, q) >= 0.95][0])
    lower_rank = int(ranks[binom.sf(ranks - 1, n, q) >= 0.95][-1])
    assert (lower, upper) == (float(lower_rank), float(upper_rank))


def test_p90_bounds_each_hold_about_95_percent_of_the_time():
    rng = random.Random(3)
    trials, n = 2000, 60
    true_p90 = -math.log(0.1)  # exponential(1)
    under_upper = over_lower = 0
    for _ in range(trials):
        stats = summarize([rng.expovariate(1.0) for _ in range(n)], total_seconds=1.0, ci_target=0.02)
        under_upper += true_p90 <= stats.p90_ci_high_ms
        over_lower += stats.p90_ci_low_ms <= true_p90
    # Each bound is conservative (discrete ranks): at least 95%, with sampling slack.
    assert under_upper / trials >= 0.94 and over_lower / trials >= 0.94


# The throughput's CI: from the mean latency's, since throughput is items over the timed seconds.


def test_t_quantiles_agree_with_scipy():
    t = pytest.importorskip("scipy.stats").t
    from engine.stats import t_quantile

    for degrees_of_freedom in (*range(1, 61), 100, 299, 1000, 100_000):
        assert t_quantile(degrees_of_freedom) == pytest.approx(float(t.ppf(0.975, degrees_of_freedom)), rel=1e-7)


def test_throughput_ci_contains_the_throughput_and_is_wide_when_spikes_move_the_mean():
    from engine.stats import throughput_ci

    # vit-tiny bs1 as QA saw it: a 0.7 ms median, and 5% of calls stalled 130 ms, which lift
    # the mean tenfold. The median's CI is zero-wide; the throughput is not known to 3%.
    samples = [0.7] * 95 + [130.0] * 5
    stats = summarize(samples, total_seconds=sum(samples) / 1000, ci_target=0.02)
    throughput = len(samples) / stats.total_timed_seconds  # batch 1: items over the timed seconds
    assert stats.ci_low_ms == stats.ci_high_ms == 0.7
    low, high = throughput_ci(throughput, samples)
    assert low < throughput < high
    assert low < 0.6 * throughput and high > 2 * throughput
    # Nowhere near the median's rate: 1000 / 0.7 ms would be 1,429/s.
    assert high < 1000 / 0.7


def test_throughput_ci_of_steady_samples_is_narrow_and_the_throughput_keeps_its_overhead():
    from engine.stats import mean_ci, throughput_ci

    rng = random.Random(11)
    samples = [rng.gauss(2.0, 0.02) for _ in range(400)]
    # 10% of the wall went to the loop itself: the shown rate is below 1000 / mean, and stays inside.
    throughput = 8 * len(samples) / (sum(samples) / 1000 * 1.1)
    low, high = throughput_ci(throughput, samples)
    assert low <= throughput <= high and (high - low) / throughput < 0.01
    mean_low, mean_high = mean_ci(samples)
    assert low == pytest.approx(throughput * fmean(samples) / mean_high)
    assert high == pytest.approx(throughput * fmean(samples) / mean_low)


def test_throughput_ci_covers_the_true_rate_about_95_percent_of_the_time():
    from engine.stats import throughput_ci

    rng = random.Random(2)
    trials, n, covered = 2000, 200, 0
    for _ in range(trials):
        samples = [rng.expovariate(1.0) for _ in range(n)]  # mean 1 ms: the true rate is 1000/s
        low, high = throughput_ci(1000 / fmean(samples), samples)
        covered += low <= 1000 <= high
    assert 0.93 <= covered / trials <= 0.975


def test_throughput_ci_needs_two_samples_and_a_throughput_and_no_finite_rate_is_ruled_out_at_zero():
    from engine.stats import mean_ci, throughput_ci

    assert throughput_ci(500.0, [2.0]) == (None, None)
    assert throughput_ci(None, [2.0, 2.1, 1.9]) == (None, None)
    assert throughput_ci(500.0, [2.0] * 10) == (500.0, 500.0)
    # A timer too coarse to see the work: the mean may be zero, so the rate has no upper bound.
    low, high = throughput_ci(500.0, [0.0] * 9 + [1.0])
    assert low < 500.0 and high is None
    assert throughput_ci(500.0, [0.0] * 10) == (None, None)
    # Spikes cannot pull the mean's lower end below the fastest sample.
    assert mean_ci([1.0] * 19 + [1000.0])[0] == 1.0


@settings(deadline=None)
@given(latencies.filter(lambda samples: len(samples) >= 2), st.floats(min_value=1e-3, max_value=1e9))
def test_throughput_ci_always_brackets_the_throughput(samples, throughput):
    from engine.stats import throughput_ci

    low, high = throughput_ci(throughput, samples)
    if low is not None:
        assert low <= throughput
        assert high is None or throughput <= high
