"""Comparing results: two runs config by config, or a run against each config's history.

Pure functions over result rows (``ComparedResult``: a ResultRow with its config key,
fingerprint and raw samples). Nothing here reads storage; ``storage.comparisons`` reads
the rows and webapp hands them in.

Two runs (``compare_runs``). Configs are matched by config key. For each pair:

- the ratio of medians, contender over baseline (above 1: the contender is slower), with a
  95% CI from the bootstrap distribution of each median (``BOOTSTRAP_RESAMPLES`` draws, a
  fixed seed, so the same rows always give the same interval);
- the two-sided Mann-Whitney U p-value over the raw samples (scipy);
- each median's distribution-free 95% CI (``engine.stats.median_ci``), widened by the
  between-process spread when the result pooled several worker processes (``repeats``),
  on log latencies, so it stays above 0 (``_spread_factor``);
- a verdict:

  * ``incomparable``: the environment fingerprints differ;
  * ``slower``: the ratio is above 1 + threshold, p < ``P_THRESHOLD`` and the medians' CIs
    do not overlap, all three; ``faster`` the same below 1 - threshold;
  * ``unchanged``: the ratio's CI lies within [1 - threshold, 1 + threshold], so any change
    is smaller than the threshold;
  * ``noisy``: anything else: the CIs are too wide to tell (or there are too few samples).
    On a contended host (``contended``, either side) ``slower`` and ``faster`` also need the
    10th percentiles' ratio beyond the threshold: contention only adds time, and the fastest
    samples are those it spared, so a real change moves them too.

Configs in one run only are listed as ``added`` (contender only) or ``removed``. A run's results
are those it measured and those it reused (incremental mode: an earlier run's result of a config
with the same environment, not measured again); a result both sides hold (the same result id:
one run reused it from the other, or both from a third) is one measurement, listed as ``reused``
with no verdict, neither compared with itself nor counted as removed.

History (``compare_history``). Each config of a run against its last K results with the
same fingerprint (earlier runs only), as conbench's lookback z-score: the baseline is the
mean of those K medians, z = (contender median - mean) / their standard deviation.
``slower`` needs the ratio above 1 + threshold and z above ``Z_THRESHOLD``; ``faster`` the
mirror image; ``unchanged`` and ``noisy`` as for two runs, with the ratio's CI from the
contender's median CI over the history mean's t-interval. With fewer than ``MIN_HISTORY``
earlier results there is no spread to score against, so the pair is compared with the
latest of them by the two-run rules. A config with earlier results only under other
fingerprints is ``incomparable``; one with none at all is ``added``. A result the run reused is
compared with the results before it, as the run that measured it was; that is the measuring
run's comparison, not this run's, so it is shown (``reused_from``) but neither counted nor a
regression of this run.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, get_args

import msgspec

from engine.config import (
    DEFAULT_ATTN_IMPLEMENTATION,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_SCENARIO,
    DEFAULT_SEQUENCE_LENGTH,
    BenchmarkConfig,
    default_timing,
)
from engine.errors import InvalidRequestError
from engine.result import ResultRow
from engine.stats import CONFIDENCE, MIN_SAMPLES_FOR_CI, Z_975, median_ci, percentile, t_quantile

if TYPE_CHECKING:
    import numpy as np

Verdict = Literal["slower", "faster", "unchanged", "noisy", "incomparable"]
VERDICTS: tuple[str, ...] = get_args(Verdict)
SLOWER, FASTER, UNCHANGED, NOISY, INCOMPARABLE = VERDICTS
ComparisonMode = Literal["runs", "history"]

DEFAULT_THRESHOLD = 0.05
P_THRESHOLD = 0.002  # asv's default
DEFAULT_LOOKBACK = 10
MAX_LOOKBACK = 100
Z_THRESHOLD = 5.0  # conbench's default
MIN_HISTORY = 3  # fewer earlier results have no spread worth a z-score
BOOTSTRAP_RESAMPLES = 4000
BOOTSTRAP_SEED = 20240612
# Points of each side's distribution kept for charts: its 0th, 5th, ..., 100th percentiles.
QUANTILE_STEPS = 20
# On a contended host a change must also move this percentile (the fast samples contention spared).
FAST_PERCENTILE = 10


class ComparedResult(ResultRow, kw_only=True):
    """A stored result as a comparison reads it: the row (with its raw ``samples_ms``, whether
    the host was ``contended`` and, when it pooled several worker processes, ``repeats`` and
    ``between_process_cv``) plus its config key and fingerprint."""

    config_key: str | None = None
    fingerprint: str | None = None

    @property
    def key(self) -> str:
        return self.config_key or self.config.key()


class Thresholds(msgspec.Struct, kw_only=True):
    """The ratio threshold: ``default`` for every config, or the first of ``overrides`` whose
    pattern (shell-style, ``bert-*``) matches the config key or the model name."""

    default: float = DEFAULT_THRESHOLD
    overrides: dict[str, float] = msgspec.field(default_factory=dict)

    def for_config(self, config_key: str, model_name: str) -> float:
        for pattern, value in self.overrides.items():
            if fnmatch.fnmatchcase(config_key, pattern) or fnmatch.fnmatchcase(model_name, pattern):
                return value
        return self.default


def format_threshold(value: float) -> str:
    """0.05 as "5%", 0.025 as "2.5%"."""
    return f"{value * 100:.3g}%"


def parse_threshold(text: str | float, field: str = "threshold") -> float:
    """``"5%"`` or ``"0.05"`` (or 0.05) as the fraction 0.05; InvalidRequestError otherwise."""
    raw = str(text).strip()
    percent = raw.endswith("%")
    number = raw.removesuffix("%").strip()
    try:
        value = float(number)
    except ValueError:
        raise InvalidRequestError(field, f"{raw!r} is not a threshold; write it as 5% or 0.05") from None
    if percent:
        value /= 100.0
    elif value >= 1:
        raise InvalidRequestError(field, f"{raw!r} is ambiguous; write a percentage with % (5%) or a fraction (0.05)")
    if not math.isfinite(value) or not 0 < value < 1:
        raise InvalidRequestError(field, f"must be between 0% and 100% (exclusive), not {raw!r}")
    return value


def parse_threshold_override(text: str, field: str = "threshold_for") -> tuple[str, float]:
    """``"PATTERN=THRESHOLD"`` (``"bert-*=10%"``) as (pattern, fraction)."""
    pattern, equals, value = str(text).rpartition("=")
    if not equals or not pattern.strip():
        raise InvalidRequestError(field, f"{text!r} is not PATTERN=THRESHOLD (e.g. 'bert-*=10%')")
    return pattern.strip(), parse_threshold(value, field)


def thresholds_from(default: str | float | None, overrides: Iterable[str] = ()) -> Thresholds:
    """Thresholds from user input (the CLI's flags, the API's query parameters, the page's form)."""
    return Thresholds(
        default=DEFAULT_THRESHOLD if default in (None, "") else parse_threshold(default),
        overrides=dict(parse_threshold_override(item) for item in overrides),
    )


# ---- the result types -----------------------------------------------------------------


class ConfigIdentity(msgspec.Struct, kw_only=True):
    """Which config a line of a comparison is about: its key, which configs are matched by, and
    the config's own fields as stored, which its label is read from (never the key: the key's
    format is ``BenchmarkConfig.key``'s business alone). A field is None where the result was
    stored before its column existed, or where the config has no such part (``image_size`` of
    a model that takes no image, ``new_tokens`` of a forward config)."""

    config_key: str
    model_name: str
    hardware: str
    batch_size: int
    precision: str
    sequence_length: int | None = None
    image_size: int | None = None
    timing: str | None = None
    attn_implementation: str | None = None
    scenario: str | None = None
    new_tokens: int | None = None

    @property
    def label(self) -> str:
        return config_label(self)


def config_label(config: ConfigIdentity | BenchmarkConfig) -> str:
    """A config as a line of a comparison names it: model · hardware · bsN · precision, then every
    other field of it that is not the default (sequence length, image size, timing mode,
    attention, a generate scenario's N), so two configs that differ never read the same:

        bert-tiny · cpu · bs1 · fp32 · seq16 · attn eager
        gpt2-tiny · cpu · bs1 · fp32 · generate 32 tokens

    A field that is None (a result stored before its column existed) reads as what such a
    config ran with, so it adds nothing to the label.
    """
    return " · ".join([f"{config.model_name} · {config.hardware} · bs{config.batch_size} · {config.precision}",
                       *_non_default_parts(config)])


def _non_default_parts(config: ConfigIdentity | BenchmarkConfig) -> list[str]:
    shown = []
    if config.sequence_length is not None and config.sequence_length != DEFAULT_SEQUENCE_LENGTH:
        shown.append(f"seq{config.sequence_length}")
    if config.image_size is not None and config.image_size != DEFAULT_IMAGE_SIZE:
        shown.append(f"img{config.image_size}")
    if config.timing is not None and config.timing != default_timing(config.batch_size):
        shown.append(config.timing)
    # A model's own attention (None: custom workloads) and sdpa (what transformers models get
    # unasked) are what a request that names none runs with.
    if config.attn_implementation is not None and config.attn_implementation != DEFAULT_ATTN_IMPLEMENTATION:
        shown.append(f"attn {config.attn_implementation}")
    if config.scenario is not None and config.scenario != DEFAULT_SCENARIO:
        tokens = "" if config.new_tokens is None else f" {config.new_tokens} tokens"
        shown.append(f"{config.scenario}{tokens}")
    return shown


class Side(msgspec.Struct, kw_only=True):
    """One side of a pair: a result, or (history) the K earlier results behind a baseline.

    For a history baseline ``median_ms`` is the mean of the K medians and the CI is that
    mean's 95% t-interval; ``spread_ms`` is the standard deviation of the K medians.
    ``quantiles_ms`` are the 0th, 5th, ..., 100th percentiles of the raw samples (pooled,
    for a history baseline): what the pages chart."""

    run_id: str | None = None
    result_id: int | None = None
    run_ids: list[str] = msgspec.field(default_factory=list)
    fingerprint: str | None = None
    median_ms: float | None = None
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None
    n_samples: int = 0
    n_results: int = 1
    ci_met: bool | None = None
    repeats: int | None = None
    between_process_cv: float | None = None
    contended: bool | None = None
    spread_ms: float | None = None
    quantiles_ms: list[float] = msgspec.field(default_factory=list)


class ConfigComparison(ConfigIdentity, kw_only=True):
    """A matched config: both sides, the ratio of medians with its CI, p, z and the verdict."""

    baseline: Side
    contender: Side
    ratio: float | None = None
    ratio_ci_low: float | None = None
    ratio_ci_high: float | None = None
    p_value: float | None = None
    z_score: float | None = None
    fast_ratio: float | None = None  # of the 10th percentiles: what a contended host must move too
    threshold: float
    verdict: Verdict
    reason: str
    # The run that measured the contender's result, where the contender reused it (incremental
    # mode). Against a history such a line is that run's own comparison, so it is not counted.
    reused_from: str | None = None


class UnmatchedConfig(ConfigIdentity, kw_only=True):
    """A config with no verdict: measured on one side only (``added``, ``removed``), or one
    measurement on both sides (``reused``); ``run_id``: the run that measured it."""

    run_id: str | None = None
    result_id: int | None = None
    median_ms: float | None = None


class RunComparison(msgspec.Struct, kw_only=True):
    """Two runs (``mode="runs"``), or a run against its history (``mode="history"``).

    ``configs`` are sorted by ratio, the most slowed first; ``counts`` has every verdict (of the
    configs the run measured, against a history: see ``ConfigComparison.reused_from``)."""

    mode: ComparisonMode
    baseline_run_id: str | None
    contender_run_id: str
    threshold: float
    threshold_overrides: dict[str, float] = msgspec.field(default_factory=dict)
    p_threshold: float = P_THRESHOLD
    z_threshold: float | None = None
    lookback: int | None = None
    configs: list[ConfigComparison]
    added: list[UnmatchedConfig]
    removed: list[UnmatchedConfig]
    # Results both runs hold (one reused the other's, or both a third run's): one measurement.
    reused: list[UnmatchedConfig] = msgspec.field(default_factory=list)
    counts: dict[str, int]
    has_regression: bool

    def by_key(self) -> dict[str, ConfigComparison]:
        return {config.config_key: config for config in self.configs}


# ---- statistics -----------------------------------------------------------------------


def _samples(row: ComparedResult) -> list[float]:
    return sorted(x for x in (row.samples_ms or []) if x is not None and math.isfinite(x))


def _median(row: ComparedResult, ordered: Sequence[float]) -> float | None:
    if ordered:
        return percentile(ordered, 50)
    return row.p50_latency_ms


def _quantiles(ordered: Sequence[float]) -> list[float]:
    if not ordered:
        return []
    return [percentile(ordered, 100.0 * step / QUANTILE_STEPS) for step in range(QUANTILE_STEPS + 1)]


def _scipy_stats():
    """scipy.stats, imported on first use: it costs more than a second of CPU to import,
    and the CLI builds its parser from this module's names (issue 16)."""
    from scipy import stats

    return stats



def _spread_factor(cv: float | None, repeats: int | None) -> float:
    """The factor the between-process spread puts on either side of a pooled median: its 95% CI
    reaches at least from median / factor to median * factor.

    The interval is taken on log latencies: the processes' medians scatter by a proportion of
    the latency (``cv`` is relative), and ``cv`` is, to first order, the standard deviation of
    their logs, so the log of the median is known to within t(R-1) * cv / sqrt(R), as the
    ratio's CI takes it (``_log_cv_se``). Back on the millisecond scale the interval is
    asymmetric and stays above 0. The additive median +- t * cv * median / sqrt(R) it replaces
    went below 0 whenever t * cv / sqrt(R) > 1: with R = 2, t = 12.7, so from cv = 0.11 on."""
    if not cv or not repeats or repeats < 2:
        return 1.0
    return math.exp(t_quantile(repeats - 1) * cv / math.sqrt(repeats))


def _side(row: ComparedResult, ordered: Sequence[float]) -> Side:
    median = _median(row, ordered)
    if len(ordered) >= MIN_SAMPLES_FOR_CI:
        low, high = median_ci(ordered)
    else:
        low, high = row.ci_low_ms, row.ci_high_ms
    if median is not None and low is not None and high is not None:
        factor = _spread_factor(row.between_process_cv, row.repeats)
        low, high = min(low, median / factor), max(high, median * factor)
    return Side(
        run_id=row.run_id, result_id=row.result_id, run_ids=[row.run_id] if row.run_id else [],
        fingerprint=row.fingerprint, median_ms=median, ci_low_ms=low, ci_high_ms=high,
        n_samples=len(ordered), ci_met=row.ci_met, repeats=row.repeats, between_process_cv=row.between_process_cv,
        contended=row.contended, quantiles_ms=_quantiles(ordered),
    )


def bootstrap_medians(ordered: np.ndarray, rng: np.random.Generator, resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """Medians of ``resamples`` bootstrap resamples of the sorted ``ordered``, drawn exactly
    without building a single resample.

    A resample's j-th smallest value is ``ordered[ceil(n * U_(j)) - 1]`` where U_(j) is the
    j-th smallest of n uniforms, and U_(j) ~ Beta(j, n + 1 - j). For even n the next order
    statistic is the smallest of the other n - j uniforms above U_(j):
    U_(j) + (1 - U_(j)) * Beta(1, n - j). So each draw costs O(1) whatever n is.
    """
    import numpy as np  # on first use, as scipy (issue 16)

    n = len(ordered)
    if n == 1:
        return np.full(resamples, float(ordered[0]))
    rank = (n + 1) // 2
    lower_u = rng.beta(rank, n + 1 - rank, size=resamples)
    lower = ordered[np.clip(np.ceil(lower_u * n).astype(np.int64) - 1, 0, n - 1)]
    if n % 2:
        return lower
    upper_u = lower_u + (1.0 - lower_u) * rng.beta(1, n - rank, size=resamples)
    upper = ordered[np.clip(np.ceil(upper_u * n).astype(np.int64) - 1, 0, n - 1)]
    return (lower + upper) / 2.0


def ratio_ci(
    baseline: Sequence[float], contender: Sequence[float], *, extra_log_se: float = 0.0
) -> tuple[float, float] | None:
    """95% CI of median(contender) / median(baseline) from the bootstrap of both medians
    (fixed seed); ``extra_log_se`` widens it in log space (the between-process spread)."""
    if len(baseline) == 0 or len(contender) == 0:
        return None
    import numpy as np

    rng = np.random.default_rng(BOOTSTRAP_SEED)
    b = bootstrap_medians(np.asarray(sorted(baseline), dtype=float), rng)
    c = bootstrap_medians(np.asarray(sorted(contender), dtype=float), rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = c / b
    ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
    if ratios.size == 0:
        return None
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    if extra_log_se > 0:
        logs = np.log(ratios)
        centre = float(np.median(logs))
        boot_se = (math.log(high) - math.log(low)) / (2 * Z_975)
        half = Z_975 * math.hypot(boot_se, extra_log_se)
        low, high = math.exp(centre - half), math.exp(centre + half)
    return float(low), float(high)


def mann_whitney_p(baseline: Sequence[float], contender: Sequence[float]) -> float | None:
    """Two-sided Mann-Whitney U p-value; None without samples on both sides."""
    if len(baseline) < 2 or len(contender) < 2:
        return None
    if min(baseline) == max(baseline) == min(contender) == max(contender):
        return 1.0  # every sample equal: scipy would divide by a zero variance
    return float(_scipy_stats().mannwhitneyu(baseline, contender, alternative="two-sided").pvalue)


def _log_cv_se(side: ComparedResult) -> float:
    """The between-process spread of one side as a standard error in log space."""
    if not side.between_process_cv or not side.repeats or side.repeats < 2:
        return 0.0
    return side.between_process_cv / math.sqrt(side.repeats)


def _overlap(a: Side, b: Side) -> bool:
    if None in (a.ci_low_ms, a.ci_high_ms, b.ci_low_ms, b.ci_high_ms):
        return True
    return a.ci_low_ms <= b.ci_high_ms and b.ci_low_ms <= a.ci_high_ms


def _within(ratio_low: float | None, ratio_high: float | None, threshold: float) -> bool:
    return ratio_low is not None and ratio_high is not None and 1 - threshold <= ratio_low and ratio_high <= 1 + threshold


def _percent(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.1f}%"


def _identity(row: ComparedResult) -> dict:
    return {
        "config_key": row.key, "model_name": row.model_name, "hardware": row.hardware, "batch_size": row.batch_size,
        "precision": row.precision, "sequence_length": row.sequence_length, "image_size": row.image_size,
        "timing": row.timing, "attn_implementation": row.attn_implementation, "scenario": row.scenario,
        "new_tokens": row.new_tokens,
    }


def compare_pair(baseline: ComparedResult, contender: ComparedResult, threshold: float = DEFAULT_THRESHOLD) -> ConfigComparison:
    """One config measured twice, by the two-run rules in this module's docstring."""
    b_samples, c_samples = _samples(baseline), _samples(contender)
    b_side, c_side = _side(baseline, b_samples), _side(contender, c_samples)
    ratio = None
    if b_side.median_ms and c_side.median_ms is not None:
        ratio = c_side.median_ms / b_side.median_ms
    interval = ratio_ci(b_samples, c_samples, extra_log_se=math.hypot(_log_cv_se(baseline), _log_cv_se(contender)))
    ratio_low, ratio_high = interval if interval else (None, None)
    p_value = mann_whitney_p(b_samples, c_samples)
    verdict, reason = _contended(*_two_run_verdict(b_side, c_side, ratio, ratio_low, ratio_high, p_value, threshold),
                                 threshold, b_side, c_side)
    return ConfigComparison(
        **_identity(contender), baseline=b_side, contender=c_side, ratio=ratio, ratio_ci_low=ratio_low,
        ratio_ci_high=ratio_high, p_value=p_value, fast_ratio=fast_ratio(b_side, c_side), threshold=threshold,
        verdict=verdict, reason=reason,
    )


def fast_ratio(baseline: Side, contender: Side) -> float | None:
    """The ratio of the sides' ``FAST_PERCENTILE``-th percentiles (of their quantiles_ms)."""
    index = FAST_PERCENTILE * QUANTILE_STEPS // 100
    if len(baseline.quantiles_ms) != QUANTILE_STEPS + 1 or len(contender.quantiles_ms) != QUANTILE_STEPS + 1:
        return None
    low = baseline.quantiles_ms[index]
    return contender.quantiles_ms[index] / low if low > 0 else None


def _contended(verdict: str, reason: str, threshold: float, baseline: Side, contender: Side) -> tuple[str, str]:
    """A change timed while other processes competed for the CPU must show in the fast samples too.

    Contention only ever adds time, to some samples more than others, and how much differs from
    run to run; the fastest samples are the ones it spared. So on a contended host (either side)
    ``slower`` and ``faster`` also need the ratio of the 10th percentiles beyond the threshold,
    the same way; otherwise the verdict is ``noisy``."""
    if verdict not in (SLOWER, FASTER) or not (baseline.contended or contender.contended):
        return verdict, reason
    which = ("both sides were" if baseline.contended and contender.contended
             else ("the baseline was" if baseline.contended else "the contender was"))
    fast = fast_ratio(baseline, contender)
    if fast is not None and (fast > 1 + threshold if verdict == SLOWER else fast < 1 - threshold):
        return verdict, f"{reason}; {which} timed on a contended host, and the fastest samples moved too ({_percent(fast)})"
    moved = "no fast samples to check" if fast is None else f"the fastest samples moved {_percent(fast)}"
    return NOISY, f"{reason}; but {which} timed on a contended host and {moved}, so it is not called {verdict}"


def _two_run_verdict(
    b: Side, c: Side, ratio: float | None, low: float | None, high: float | None, p: float | None, threshold: float
) -> tuple[str, str]:
    if b.fingerprint and c.fingerprint and b.fingerprint != c.fingerprint:
        return INCOMPARABLE, f"different environments (fingerprint {b.fingerprint} vs {c.fingerprint})"
    if ratio is None:
        return NOISY, "no median on one side"
    if min(b.n_samples, c.n_samples) < MIN_SAMPLES_FOR_CI or p is None:
        return NOISY, f"too few raw samples to test ({b.n_samples} and {c.n_samples}; at least {MIN_SAMPLES_FOR_CI} each)"
    separate = not _overlap(b, c)
    significant = p < P_THRESHOLD and separate
    if ratio > 1 + threshold and significant:
        return SLOWER, f"{_percent(ratio)}, beyond ±{format_threshold(threshold)}; p = {p:.2g}; the medians' CIs do not overlap"
    if ratio < 1 - threshold and significant:
        return FASTER, f"{_percent(ratio)}, beyond ±{format_threshold(threshold)}; p = {p:.2g}; the medians' CIs do not overlap"
    if _within(low, high, threshold):
        return UNCHANGED, f"{_percent(ratio)}; the ratio's CI is within ±{format_threshold(threshold)}"
    why = []
    if abs(ratio - 1) > threshold:
        if p >= P_THRESHOLD:
            why.append(f"p = {p:.2g} is not below {P_THRESHOLD:g}")
        if not separate:
            why.append("the medians' CIs overlap")
    else:
        why.append(f"the ratio's CI reaches beyond ±{format_threshold(threshold)}")
    return NOISY, f"{_percent(ratio)}, but " + " and ".join(why)


def _latest_per_key(rows: Iterable[ComparedResult]) -> dict[str, ComparedResult]:
    latest: dict[str, ComparedResult] = {}
    for row in rows:
        key = row.key
        if key not in latest or (row.result_id or 0) > (latest[key].result_id or 0):
            latest[key] = row
    return latest


def _unmatched(row: ComparedResult) -> UnmatchedConfig:
    ordered = _samples(row)
    return UnmatchedConfig(**_identity(row), run_id=row.run_id, result_id=row.result_id, median_ms=_median(row, ordered))


def _sort_key(config: ConfigComparison):
    return (config.ratio is None, -(config.ratio or 0.0), config.config_key)


def _counts(configs: Sequence[ConfigComparison]) -> dict[str, int]:
    counts = dict.fromkeys(VERDICTS, 0)
    for config in configs:
        counts[config.verdict] += 1
    return counts


def compare_runs(
    baseline: Iterable[ComparedResult],
    contender: Iterable[ComparedResult],
    *,
    baseline_run_id: str,
    contender_run_id: str,
    thresholds: Thresholds | None = None,
) -> RunComparison:
    """Every config of two runs, matched by config key (a key measured twice in one run: its latest).

    Each side: the run's results, measured or reused (a reused row keeps the ``run_id`` of the run
    that measured it); a key whose two rows are one result is ``reused``, not compared."""
    thresholds = thresholds or Thresholds()
    before, after = _latest_per_key(baseline), _latest_per_key(contender)
    configs, reused = [], []
    for key, row in after.items():
        if key not in before:
            continue
        if row.result_id is not None and row.result_id == before[key].result_id:
            reused.append(_unmatched(row))
            continue
        pair = compare_pair(before[key], row, thresholds.for_config(key, row.model_name))
        pair.reason = _reuse_note(before[key], baseline_run_id, "baseline") + _reuse_note(row, contender_run_id, "contender") + pair.reason
        pair.reused_from = row.run_id if row.run_id and row.run_id != contender_run_id else None
        configs.append(pair)
    configs.sort(key=_sort_key)
    return RunComparison(
        mode="runs", baseline_run_id=baseline_run_id, contender_run_id=contender_run_id,
        threshold=thresholds.default, threshold_overrides=dict(thresholds.overrides), configs=configs,
        added=[_unmatched(row) for key, row in after.items() if key not in before],
        removed=[_unmatched(row) for key, row in before.items() if key not in after],
        reused=reused, counts=_counts(configs), has_regression=any(c.verdict == SLOWER for c in configs),
    )


def _reuse_note(row: ComparedResult, run_id: str, side: str) -> str:
    """What a reason says first when a side's result is one its run reused, not measured."""
    if not row.run_id or row.run_id == run_id:
        return ""
    return f"the {side} reused run {row.run_id}'s result; "


# ---- history --------------------------------------------------------------------------


def compare_to_history(
    contender: ComparedResult, history: Sequence[ComparedResult], threshold: float = DEFAULT_THRESHOLD
) -> ConfigComparison:
    """One result against its earlier results with the same fingerprint (newest first).

    ``history`` must not be empty. With fewer than MIN_HISTORY results the latest is the
    baseline, by the two-run rules."""
    if not history:
        raise ValueError("compare_to_history needs at least one earlier result")
    history = sorted(history, key=lambda row: row.result_id or 0, reverse=True)
    if len(history) < MIN_HISTORY:
        pair = compare_pair(history[0], contender, threshold)
        pair.reason = (f"only {len(history)} earlier result{'s' if len(history) > 1 else ''}, too few for a "
                       f"z-score: compared with the latest as two runs; {pair.reason}")
        return pair
    c_samples = _samples(contender)
    c_side = _side(contender, c_samples)
    medians = [m for m in (_median(row, _samples(row)) for row in history) if m is not None]
    pooled = sorted(x for row in history for x in _samples(row))
    k = len(medians)
    mean = math.fsum(medians) / k if k else None
    spread = math.sqrt(math.fsum((m - mean) ** 2 for m in medians) / (k - 1)) if k > 1 else None
    b_side = Side(
        run_ids=[row.run_id for row in history if row.run_id], fingerprint=history[0].fingerprint, median_ms=mean,
        n_samples=len(pooled), n_results=k, spread_ms=spread, quantiles_ms=_quantiles(pooled),
    )
    if mean is not None and spread is not None:
        half = t_quantile(k - 1) * spread / math.sqrt(k)
        # A latency's mean is above 0, so the t-interval's part below 0 holds no value it could
        # take: cut there, the interval covers the mean exactly as often (and a lower bound of 0
        # leaves the ratio's CI open above, as it should be with medians that scattered so far).
        b_side.ci_low_ms, b_side.ci_high_ms = max(0.0, mean - half), mean + half
    ratio = c_side.median_ms / mean if mean and c_side.median_ms is not None else None
    ratio_low = ratio_high = None
    if ratio is not None and c_side.ci_low_ms is not None and b_side.ci_high_ms:
        ratio_low = c_side.ci_low_ms / b_side.ci_high_ms
        ratio_high = c_side.ci_high_ms / b_side.ci_low_ms if b_side.ci_low_ms > 0 else math.inf
    z = None
    if ratio is not None and spread:
        z = (c_side.median_ms - mean) / spread
    p_value = mann_whitney_p(pooled, c_samples)
    verdict, reason = _contended(*_history_verdict(c_side, ratio, ratio_low, ratio_high, z, spread, k, threshold),
                                 threshold, b_side, c_side)
    return ConfigComparison(
        **_identity(contender), baseline=b_side, contender=c_side, ratio=ratio, ratio_ci_low=ratio_low,
        ratio_ci_high=None if ratio_high is None or not math.isfinite(ratio_high) else ratio_high,
        p_value=p_value, z_score=z, fast_ratio=fast_ratio(b_side, c_side), threshold=threshold, verdict=verdict,
        reason=reason,
    )


def _history_verdict(
    c: Side, ratio: float | None, low: float | None, high: float | None, z: float | None, spread: float | None,
    k: int, threshold: float,
) -> tuple[str, str]:
    if ratio is None:
        return NOISY, "no median on one side"
    if z is None:
        # Every earlier median identical (a coarse timer): any move is outside the history.
        z_beyond = ratio != 1
        z_text = "the earlier medians are all equal"
    else:
        z_beyond = abs(z) > Z_THRESHOLD
        z_text = f"z = {z:+.1f} over the last {k}"
    if ratio > 1 + threshold and z_beyond and (z is None or z > 0):
        return SLOWER, f"{_percent(ratio)} against the mean of the last {k}, beyond ±{format_threshold(threshold)}; {z_text}"
    if ratio < 1 - threshold and z_beyond and (z is None or z < 0):
        return FASTER, f"{_percent(ratio)} against the mean of the last {k}, beyond ±{format_threshold(threshold)}; {z_text}"
    if _within(low, high, threshold):
        return UNCHANGED, f"{_percent(ratio)} against the mean of the last {k}; the ratio's CI is within ±{format_threshold(threshold)}"
    if abs(ratio - 1) > threshold:
        return NOISY, f"{_percent(ratio)}, but {z_text}, not beyond {Z_THRESHOLD:g}"
    return NOISY, f"{_percent(ratio)}, but the ratio's CI reaches beyond ±{format_threshold(threshold)}"


def compare_history(
    contender: Iterable[ComparedResult],
    history: Iterable[ComparedResult],
    *,
    run_id: str,
    lookback: int = DEFAULT_LOOKBACK,
    thresholds: Thresholds | None = None,
    other_environments: Mapping[str, int] | None = None,
) -> RunComparison:
    """Each config of run ``run_id`` against its history.

    ``contender``: the run's results, measured or reused (a reused row keeps the ``run_id`` of the
    run that measured it, and is compared with the results before it). ``history``: earlier results of the run's configs with the same fingerprint as the run's
    result, any order (the newest ``lookback`` per config are used). ``other_environments``:
    per config key, how many earlier results it has under other fingerprints."""
    thresholds = thresholds or Thresholds()
    other_environments = other_environments or {}
    current = _latest_per_key(contender)
    earlier: dict[str, list[ComparedResult]] = {}
    for row in history:
        if row.run_id == run_id:
            continue
        earlier.setdefault(row.key, []).append(row)
    configs, added = [], []
    for key, row in current.items():
        mine = [h for h in earlier.get(key, []) if h.fingerprint == row.fingerprint and (h.result_id or 0) < (row.result_id or 0)]
        mine = sorted(mine, key=lambda h: h.result_id or 0, reverse=True)[:lookback]
        threshold = thresholds.for_config(key, row.model_name)
        if mine:
            pair = compare_to_history(row, mine, threshold)
            if row.run_id and row.run_id != run_id:
                pair.reused_from = row.run_id
                pair.reason = (f"the run reused run {row.run_id}'s result: that run's comparison with its history, "
                               f"not counted here; {pair.reason}")
            configs.append(pair)
        elif other_environments.get(key):
            c_samples = _samples(row)
            count = other_environments[key]
            configs.append(ConfigComparison(
                **_identity(row), baseline=Side(n_results=0), contender=_side(row, c_samples), threshold=threshold,
                verdict=INCOMPARABLE,
                reason=f"no earlier result with this environment ({count} under other fingerprints)",
            ))
        else:
            added.append(_unmatched(row))
    configs.sort(key=_sort_key)
    measured = [c for c in configs if c.reused_from is None]
    return RunComparison(
        mode="history", baseline_run_id=None, contender_run_id=run_id, threshold=thresholds.default,
        threshold_overrides=dict(thresholds.overrides), z_threshold=Z_THRESHOLD, lookback=lookback,
        configs=configs, added=added, removed=[], counts=_counts(measured),
        has_regression=any(c.verdict == SLOWER for c in measured),
    )


def format_ratio(config: ConfigComparison) -> str:
    """``1.103 [1.081, 1.126]``, or ``-`` without a ratio."""
    if config.ratio is None:
        return "-"
    if config.ratio_ci_low is None or config.ratio_ci_high is None:
        return f"{config.ratio:.3f}"
    return f"{config.ratio:.3f} [{config.ratio_ci_low:.3f}, {config.ratio_ci_high:.3f}]"

