"""Latency statistics: pure functions over a list of samples in milliseconds.

Percentiles interpolate linearly between order statistics (numpy's default
"linear" method). The 95% confidence interval of the median is distribution
free: it is a pair of order statistics whose ranks come from the
Binomial(n, 1/2) distribution, so it holds for skewed latency distributions
where a mean +/- t*sd interval would not.

The tail percentiles get the same treatment with Binomial(n, q): p90 and p99
each carry a lower and an upper distribution-free 95% confidence bound, each
bound one-sided (the population quantile lies above the lower one with at
least 95% probability, and below the upper one with at least 95%). A bound
that no order statistic reaches is None: the upper bound of p99 needs at
least 299 samples (0.99**n <= 0.05), since below that even the maximum sits
under the true p99 more than 5% of the time.

Throughput is a mean-based figure (items over timed seconds, i.e. the batch over the mean
call), so its CI comes from the mean's, not the median's: a Student t interval of the mean
over the samples (each the mean call of its block), its lower end kept at or above the
fastest sample. A few spikes that move the mean move this interval with it, where the
median's CI would not see them at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from engine.result import Statistics

CONFIDENCE = 0.95

# Below this many samples even the widest interval [min, max] covers the median
# with less than 95% probability (1 - 2 * 0.5**n < 0.95 for n < 6).
MIN_SAMPLES_FOR_CI = 6
# The tail quantiles that get confidence bounds, as fractions.
TAIL_QUANTILES = (0.90, 0.99)
# Student's t two-sided 95% quantiles for 1..30 degrees of freedom (scipy.stats.t.ppf(0.975, df);
# tests/unit/engine/test_stats.py checks them). Beyond 30 the Cornish-Fisher expansion in
# _t_quantile is within 2e-8 of them, and scipy costs a second to import in every worker.
_T_975 = (
    12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836, 2.446911851, 2.364624252,
    2.306004135, 2.262157163, 2.228138852, 2.200985160, 2.178812830, 2.160368656, 2.144786688,
    2.131449546, 2.119905299, 2.109815578, 2.100922040, 2.093024054, 2.085963447, 2.079613845,
    2.073873068, 2.068657610, 2.063898562, 2.059538553, 2.055529439, 2.051830516, 2.048407142,
    2.045229642, 2.042272456,
)
Z_975 = 1.959963984540054  # the normal's two-sided 95% quantile, scipy.stats.norm.ppf(0.975)


def percentile(sorted_samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted samples, linearly interpolated."""
    if not sorted_samples:
        raise ValueError("percentile of no samples")
    position = (len(sorted_samples) - 1) * q / 100.0
    below = math.floor(position)
    above = min(below + 1, len(sorted_samples) - 1)
    low, high = sorted_samples[below], sorted_samples[above]
    value = low + (high - low) * (position - below)
    # Rounding can push the interpolated value an ulp outside [low, high];
    # clamping keeps percentiles monotone in q.
    return min(max(value, low), high)


def _lower_rank(n: int) -> int:
    """Largest 0-based rank j with P(B <= j) <= 2.5%, for B ~ Binomial(n, 1/2) and n >= 6.

    Then [x_(j), x_(n-1-j)] covers the population median with probability
    1 - 2 P(B <= j) >= 95%. The binomial tail is summed in log space from ten
    standard deviations below the centre (the skipped mass is far below double
    precision), so the cost is O(sqrt(n)) for any n.
    """
    alpha_tail = (1.0 - CONFIDENCE) / 2.0
    log_norm = math.lgamma(n + 1) - n * math.log(2.0)
    k = max(0, math.floor(n / 2 - 5 * math.sqrt(n)))
    cumulative = 0.0  # P(B <= k - 1)
    # P(B <= n/2) >= 1/2, so the loop ends before k passes the centre.
    while True:
        cumulative += math.exp(log_norm - math.lgamma(k + 1) - math.lgamma(n - k + 1))
        if cumulative > alpha_tail:
            return k - 1
        k += 1


def _binomial_cdf(n: int, q: float):
    """P(B <= k) for B ~ Binomial(n, q), as a function of k, summed in log space from
    ten standard deviations below the mean (the skipped mass is far below double
    precision), so the cost per call is O(sqrt(n)) once cached."""
    log_q, log_p = math.log(q), math.log1p(-q)
    log_n_factorial = math.lgamma(n + 1)
    start = max(0, math.floor(n * q - 10 * math.sqrt(n * q * (1 - q)) - 1))
    cumulative: dict[int, float] = {}
    total = 0.0
    for k in range(start, n + 1):
        total += math.exp(
            log_n_factorial - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_q + (n - k) * log_p
        )
        cumulative[k] = min(total, 1.0)
        if total >= 1.0 - 1e-15:
            break

    def cdf(k: int) -> float:
        if k < start:
            return 0.0
        return cumulative.get(k, 1.0)

    return cdf, start


def quantile_bounds(sorted_samples: Sequence[float], q: float) -> tuple[float | None, float | None]:
    """Distribution-free one-sided 95% confidence bounds of the population q-quantile (0 < q < 1),
    as (lower, upper) order statistics of already sorted samples; None where none reaches 95%.

    With B ~ Binomial(n, q) the number of samples below the quantile, the k-th smallest
    sample (1-based) lies at or above it with probability P(B <= k - 1): the upper bound is
    the smallest such k with probability >= 95%, the lower bound the largest j with
    P(B >= j) >= 95%.
    """
    n = len(sorted_samples)
    if n == 0:
        return None, None
    cdf, start = _binomial_cdf(n, q)
    upper = None
    for k in range(max(1, start), n + 1):
        if cdf(k - 1) >= CONFIDENCE:
            upper = sorted_samples[k - 1]
            break
    lower = None
    j = max(1, start)
    # P(B >= j) = 1 - cdf(j - 1) falls as j grows; the largest j still at 95% is the bound.
    while j <= n and 1.0 - cdf(j - 1) >= CONFIDENCE:
        lower = sorted_samples[j - 1]
        j += 1
    return lower, upper


def median_ci(samples: Sequence[float]) -> tuple[float, float]:
    """Distribution-free 95% confidence interval of the median, as (low, high).

    With fewer than ``MIN_SAMPLES_FOR_CI`` samples no pair of order statistics
    reaches 95% coverage; the interval is then (min, max), and it never counts
    as met.
    """
    if not samples:
        raise ValueError("median_ci of no samples")
    return _median_ci_of_sorted(sorted(samples))


def ci_met(samples: Sequence[float], ci_target: float) -> bool:
    """Whether the median's CI half-width, relative to the median, is within ``ci_target``."""
    return _ci_met_of_sorted(sorted(samples), ci_target)


def t_quantile(degrees_of_freedom: int) -> float:
    """Student's t two-sided 95% quantile (the 97.5th percentile) for ``degrees_of_freedom`` >= 1."""
    if degrees_of_freedom < 1:
        raise ValueError("t_quantile needs at least one degree of freedom")
    if degrees_of_freedom <= len(_T_975):
        return _T_975[degrees_of_freedom - 1]
    # Abramowitz & Stegun 26.7.5.
    z, v = Z_975, float(degrees_of_freedom)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / v + g2 / v**2 + g3 / v**3 + g4 / v**4


def mean_ci(samples: Sequence[float]) -> tuple[float, float] | None:
    """95% confidence interval of the mean latency, as (low, high); None for fewer than two samples.

    Student's t interval, mean +/- t * sd / sqrt(n), with its lower end raised to the fastest
    sample where it falls below: spikes can pull it under zero, where no latency lies, and for
    right-skewed latencies the mean sits above the median, which the fastest of n >= 6 samples
    undercuts with probability at least 1 - 0.5**n.
    """
    n = len(samples)
    if n < 2:
        return None
    mean = math.fsum(samples) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in samples) / (n - 1))
    half_width = t_quantile(n - 1) * std / math.sqrt(n)
    # min(mean, ...): rounding must not lift the lower end above the mean it brackets.
    return min(mean, max(mean - half_width, min(samples))), mean + half_width


def throughput_ci(items_per_second: float | None, samples_ms: Sequence[float]) -> tuple[float | None, float | None]:
    """95% confidence interval of a measured throughput, from the mean latency's (``mean_ci``).

    Throughput is items over the timed loop's wall seconds: the batch over the mean call,
    times the share of the wall the calls took. That share is taken as fixed, so the interval
    is the throughput scaled by mean / mean_high and mean / mean_low, and always contains it.
    The upper end is None where the mean's lower end is zero (a timer too coarse to see the
    work): no finite rate is ruled out then. (None, None) without a throughput, or with fewer
    than two samples.
    """
    interval = mean_ci(samples_ms) if items_per_second is not None else None
    if interval is None:
        return None, None
    low_ms, high_ms = interval
    mean = math.fsum(samples_ms) / len(samples_ms)
    if high_ms <= 0:
        return None, None  # every sample read zero: the rate comes from the wall seconds alone
    low = items_per_second * mean / high_ms
    high = items_per_second * mean / low_ms if low_ms > 0 else None
    # Rounding must not put the throughput itself outside its interval.
    return min(low, items_per_second), (max(high, items_per_second) if high is not None else None)


def summarize(samples_ms: Sequence[float], total_seconds: float, ci_target: float) -> Statistics:
    """Summary statistics of timed iterations; ``ci_met`` says whether the median's CI is within target."""
    if not samples_ms:
        raise ValueError("cannot summarize zero samples")
    ordered = sorted(samples_ms)
    n = len(ordered)
    mean = math.fsum(ordered) / n
    variance = math.fsum((x - mean) ** 2 for x in ordered) / (n - 1) if n > 1 else 0.0
    ci_low, ci_high = _median_ci_of_sorted(ordered)
    p90_low, p90_high = quantile_bounds(ordered, 0.90)
    p99_low, p99_high = quantile_bounds(ordered, 0.99)
    return Statistics(
        n_samples=n,
        average_latency_ms=mean,
        std_latency_ms=math.sqrt(variance),
        min_latency_ms=ordered[0],
        p50_latency_ms=percentile(ordered, 50),
        p90_latency_ms=percentile(ordered, 90),
        p95_latency_ms=percentile(ordered, 95),
        p99_latency_ms=percentile(ordered, 99),
        max_latency_ms=ordered[-1],
        ci_low_ms=ci_low,
        ci_high_ms=ci_high,
        ci_met=_ci_met_of_sorted(ordered, ci_target),
        p90_ci_low_ms=p90_low,
        p90_ci_high_ms=p90_high,
        p99_ci_low_ms=p99_low,
        p99_ci_high_ms=p99_high,
        total_timed_seconds=total_seconds,
    )


def _median_ci_of_sorted(ordered: Sequence[float]) -> tuple[float, float]:
    n = len(ordered)
    if n < MIN_SAMPLES_FOR_CI:
        return ordered[0], ordered[-1]
    j = _lower_rank(n)
    return ordered[j], ordered[n - 1 - j]


def _ci_met_of_sorted(ordered: Sequence[float], ci_target: float) -> bool:
    if len(ordered) < MIN_SAMPLES_FOR_CI:
        return False
    low, high = _median_ci_of_sorted(ordered)
    median = percentile(ordered, 50)
    half_width = (high - low) / 2.0
    if median == 0:
        # Only a timer too coarse to see the work reads zero; then a zero-width CI is met.
        return half_width == 0
    return half_width / median <= ci_target
