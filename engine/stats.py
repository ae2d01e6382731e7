"""Latency statistics: pure functions over a list of samples in milliseconds.

Percentiles interpolate linearly between order statistics (numpy's default
"linear" method). The 95% confidence interval of the median is distribution
free: it is a pair of order statistics whose ranks come from the
Binomial(n, 1/2) distribution, so it holds for skewed latency distributions
where a mean +/- t*sd interval would not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from engine.result import Statistics

CONFIDENCE = 0.95

# Below this many samples even the widest interval [min, max] covers the median
# with less than 95% probability (1 - 2 * 0.5**n < 0.95 for n < 6).
MIN_SAMPLES_FOR_CI = 6


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


def summarize(samples_ms: Sequence[float], total_seconds: float, ci_target: float) -> Statistics:
    """Summary statistics of timed iterations; ``ci_met`` says whether the median's CI is within target."""
    if not samples_ms:
        raise ValueError("cannot summarize zero samples")
    ordered = sorted(samples_ms)
    n = len(ordered)
    mean = math.fsum(ordered) / n
    variance = math.fsum((x - mean) ** 2 for x in ordered) / (n - 1) if n > 1 else 0.0
    ci_low, ci_high = _median_ci_of_sorted(ordered)
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
