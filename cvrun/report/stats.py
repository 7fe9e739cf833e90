"""The statistics of `cvrun compare`: a setting's mean and 95% interval over its seeds, the difference of two
settings with its interval and p-value, Holm's correction, and how many seeds would resolve a difference.

Intervals and tests are Student's t (scipy.stats). A paired t over seeds, not a bootstrap: with the 3 to 10
seeds a comparison has, the bootstrap's percentile interval is too narrow (it cannot see beyond the few
differences it resamples), while t's interval is exact for normal differences and close for the mildly skewed
ones seeds give. Pairing by seed removes what two runs of one seed share (the same initial weights, batch
order and data split), which is most of the seed-to-seed spread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
POWER = 0.8  # the usual target for "would resolve": an 80% chance of a significant result
MAX_SEEDS = 10_000  # seeds_to_resolve looks no further


@dataclass
class Spread:
    """A setting's values: count, mean, sample standard deviation and the mean's 95% t interval
    (sd and interval are None for a single value)."""

    n: int
    mean: float
    sd: float | None
    low: float | None
    high: float | None


def describe(values: list[float]) -> Spread:
    data = np.asarray(values, dtype=float)
    if len(data) < 2:
        return Spread(len(data), float(data.mean()), None, None, None)
    mean, sd = float(data.mean()), float(data.std(ddof=1))
    if sd == 0:
        return Spread(len(data), mean, 0.0, mean, mean)
    low, high = stats.t.interval(CONFIDENCE, len(data) - 1, loc=mean, scale=sd / math.sqrt(len(data)))
    return Spread(len(data), mean, sd, float(low), float(high))


@dataclass
class Difference:
    """setting - baseline: the mean difference, its 95% interval, the test's p-value, the sd the interval
    came from (of the paired differences, or the two settings' for Welch) and the sample sizes."""

    test: str  # "paired t" or "Welch"
    n: int  # pairs (paired) or the smaller setting's runs (Welch)
    mean: float
    low: float
    high: float
    p: float
    spread: float  # paired: the sd of the differences; Welch: the root mean square of the two sds


def paired_difference(values: list[float], baseline: list[float]) -> Difference:
    """Paired t-test (scipy.stats.ttest_rel) of values[i] - baseline[i], the pairs sharing a seed."""
    differences = np.asarray(values, dtype=float) - np.asarray(baseline, dtype=float)
    sd = float(differences.std(ddof=1))
    mean = float(differences.mean())
    # Every pair differs by the same amount (to rounding): the t statistic is undefined, the answer is not.
    if np.allclose(differences, mean, rtol=0, atol=1e-9):
        return Difference("paired t", len(differences), mean, mean, mean, 1.0 if abs(mean) < 1e-9 else 0.0, 0.0)
    result = stats.ttest_rel(values, baseline)
    interval = result.confidence_interval(CONFIDENCE)
    return Difference("paired t", len(differences), mean, float(interval.low), float(interval.high),
                      float(result.pvalue), sd)


def welch_difference(values: list[float], baseline: list[float]) -> Difference:
    """Welch's t-test (scipy.stats.ttest_ind, equal_var=False) of mean(values) - mean(baseline): settings that
    share no seeds, so nothing pairs their runs, and their spreads need not be equal."""
    spread = math.sqrt((np.var(values, ddof=1) + np.var(baseline, ddof=1)) / 2)
    mean = float(np.mean(values) - np.mean(baseline))
    n = min(len(values), len(baseline))
    if spread < 1e-9:  # both settings without spread: as for paired differences all alike
        return Difference("Welch", n, mean, mean, mean, 1.0 if abs(mean) < 1e-9 else 0.0, 0.0)
    result = stats.ttest_ind(values, baseline, equal_var=False)
    interval = result.confidence_interval(CONFIDENCE)
    return Difference("Welch", n, mean, float(interval.low), float(interval.high), float(result.pvalue), spread)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment for several settings tested against one baseline: the i-th smallest p-value
    is multiplied by (m - i), each kept at least as large as the one before it and at most 1. It controls the
    chance of any false "better" or "worse" among the m, like Bonferroni, but rejects more. (statsmodels'
    multipletests has it; scipy has only Benjamini-Hochberg, which controls another error rate.)"""
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


def seeds_to_resolve(spread: float, delta: float, paired: bool, alpha: float = ALPHA) -> int | None:
    """The fewest seeds (pairs, or runs per setting for Welch) giving an 80% chance that a true difference of
    `delta` comes out significant at `alpha` (two-sided), at the observed spread: the power of the t-test from
    the noncentral t distribution. None when even MAX_SEEDS would not do; 2 when the spread is 0."""
    if spread == 0:
        return 2
    # The normal approximation's n is a lower bound (t's tails are heavier); the answer lies a few above it.
    normal = ((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(POWER)) * spread / delta) ** 2 * (1 if paired else 2)
    start = max(2, int(normal))
    while start <= MAX_SEEDS:
        n = np.arange(start, min(start + 64, MAX_SEEDS + 1))
        if paired:
            df, noncentrality = n - 1, delta * np.sqrt(n) / spread
        else:  # equal group sizes; Welch's degrees of freedom are then close to the pooled test's 2n - 2
            df, noncentrality = 2 * n - 2, delta * np.sqrt(n / 2) / spread
        critical = stats.t.ppf(1 - alpha / 2, df)
        power = stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality)
        enough = np.nonzero(power >= POWER)[0]
        if len(enough):
            return int(n[enough[0]])
        start += 64
    return None
