"""Confidence intervals used by the report, in one place so every table states the same method.

The methods follow SeBS (spcl/serverless-benchmarks, ``sebs/statistics.py``): a Student-t interval for the mean
and a non-parametric interval for the median from binomial order statistics (Le Boudec, *Performance Evaluation of
Computer and Communication Systems*, 2010, Thm. 2.1 and Table A.1). SeBS uses the normal approximation of the
order-statistic ranks; we compute the ranks exactly from the binomial distribution, which gives Le Boudec's table
for n <= 70 and his approximation's values beyond it.

The overhead of the function over the container is a ratio and a difference of means, whose sampling
distributions are not t-shaped with few repetitions, so it gets a percentile bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as st

DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its interval; ``level`` is the coverage actually achieved (see ``median_ci``)."""

    estimate: float
    low: float
    high: float
    level: float
    n: int


def _clean(values: np.ndarray | list[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return arr[~np.isnan(arr)]


def mean_ci(values: np.ndarray | list[float], level: float = DEFAULT_LEVEL) -> Interval:
    """Student-t interval for the mean; NaN bounds when fewer than two values (no spread to estimate)."""
    x = _clean(values)
    n = len(x)
    if n == 0:
        return Interval(np.nan, np.nan, np.nan, level, 0)
    mean = float(np.mean(x))
    if n < 2:
        return Interval(mean, np.nan, np.nan, level, n)
    sem = float(np.std(x, ddof=1)) / np.sqrt(n)
    if sem == 0.0:
        return Interval(mean, mean, mean, level, n)
    half = float(st.t.ppf(0.5 + level / 2, n - 1)) * sem
    return Interval(mean, mean - half, mean + half, level, n)


def median_ranks(n: int, level: float = DEFAULT_LEVEL) -> tuple[int, int, float]:
    """1-based ranks (j, k) of the order statistics bounding the median, and the coverage they achieve.

    Picks the narrowest symmetric pair (j, n + 1 - j) whose coverage P(j <= B <= n - j), B ~ Binomial(n, 1/2),
    reaches ``level``. Below n = 6 no pair reaches 95 %: we then return the widest pair (1, n) with its true,
    lower coverage, so a table can say "93.8 %" instead of pretending.
    """
    if n < 1:
        raise ValueError("median_ranks needs at least one value")
    best = (1, n, _coverage(n, 1))
    for j in range(2, n // 2 + 1):
        cov = _coverage(n, j)
        if cov < level:
            break
        best = (j, n + 1 - j, cov)
    return best


def _coverage(n: int, j: int) -> float:
    # P(X_(j) <= median <= X_(n+1-j)) = P(j <= B <= n - j) for B ~ Binomial(n, 1/2)
    return float(st.binom.cdf(n - j, n, 0.5) - st.binom.cdf(j - 1, n, 0.5))


def median_ci(values: np.ndarray | list[float], level: float = DEFAULT_LEVEL) -> Interval:
    """Median with its order-statistic interval; ``Interval.level`` is the achieved coverage (< level if n < 6)."""
    x = np.sort(_clean(values))
    n = len(x)
    if n == 0:
        return Interval(np.nan, np.nan, np.nan, level, 0)
    j, k, cov = median_ranks(n, level)
    return Interval(float(np.median(x)), float(x[j - 1]), float(x[k - 1]), cov, n)


@dataclass(frozen=True)
class Overhead:
    """How much slower the function is than the container: ``diff`` in the samples' unit, ``pct`` in % of the
    container (the usual definition) and ``pct_of_function`` in % of the function (how the paper got its 35 %)."""

    diff: Interval
    pct: Interval
    pct_of_function: Interval


def bootstrap_overhead(
    function: np.ndarray | list[float],
    container: np.ndarray | list[float],
    *,
    paired: bool,
    level: float = DEFAULT_LEVEL,
    resamples: int = 10_000,
    seed: int = 0,
) -> Overhead:
    """Percentile-bootstrap intervals for mean(function) - mean(container) and the two relative overheads.

    ``paired`` resamples index positions jointly, for samples that belong together (repetition r of both platforms
    ran back to back, so drift hits both alike); otherwise each sample is resampled on its own.
    """
    f = _clean(function)
    c = _clean(container)
    nan = Interval(np.nan, np.nan, np.nan, level, 0)
    if len(f) == 0 or len(c) == 0:
        return Overhead(nan, nan, nan)
    if paired and len(f) != len(c):
        raise ValueError(f"paired bootstrap needs samples of equal size, got {len(f)} and {len(c)}")
    rng = np.random.default_rng(seed)
    if paired:
        idx = rng.integers(0, len(f), size=(resamples, len(f)))
        fm = f[idx].mean(axis=1)
        cm = c[idx].mean(axis=1)
    else:
        fm = f[rng.integers(0, len(f), size=(resamples, len(f)))].mean(axis=1)
        cm = c[rng.integers(0, len(c), size=(resamples, len(c)))].mean(axis=1)
    f0, c0 = float(f.mean()), float(c.mean())
    lo_q, hi_q = 50 * (1 - level), 50 * (1 + level)
    n = min(len(f), len(c))

    def interval(point: float, boot: np.ndarray) -> Interval:
        lo, hi = np.percentile(boot, [lo_q, hi_q])
        return Interval(point, float(lo), float(hi), level, n)

    with np.errstate(divide="ignore", invalid="ignore"):
        return Overhead(
            diff=interval(f0 - c0, fm - cm),
            pct=interval(100 * (f0 / c0 - 1), 100 * (fm / cm - 1)),
            pct_of_function=interval(100 * (1 - c0 / f0), 100 * (1 - cm / fm)),
        )


def quantile_ranks(n: int, q: float, level: float = DEFAULT_LEVEL) -> tuple[int, int, float]:
    """1-based ranks (j, k) of the order statistics that bound the q-quantile (0 < q < 1) of n samples, and the
    coverage they achieve: P(X_(j) <= x_q <= X_(k)) = P(j <= B <= k - 1) for B ~ Binomial(n, q), the same
    distribution-free argument as ``median_ranks`` (Le Boudec, Thm. 2.1), with equal tails of at most
    (1 - level) / 2. Near the extremes a tail cannot be that small (k would exceed n): the bound is then the
    largest (or smallest) sample and the achieved coverage says how much less than ``level`` it is."""
    if n < 1 or not 0 < q < 1:
        raise ValueError(f"quantile_ranks needs n >= 1 and 0 < q < 1, got n={n}, q={q}")
    tail = (1 - level) / 2
    m = int(st.binom.ppf(tail, n, q))  # smallest m with F(m) >= tail
    if st.binom.cdf(m, n, q) > tail:
        m -= 1
    j = max(m + 1, 1)  # largest j with P(B <= j - 1) <= tail
    k = min(int(st.binom.ppf(1 - tail, n, q)) + 1, n)  # smallest k with P(B <= k - 1) >= 1 - tail
    cov = float(st.binom.cdf(k - 1, n, q) - st.binom.cdf(j - 1, n, q))
    return j, k, cov


def quantile_ci(values: np.ndarray | list[float], q: float, level: float = DEFAULT_LEVEL) -> Interval:
    """The q-quantile of pooled samples (numpy's linear interpolation) with its order-statistic interval.

    The samples are requests, which are not independent inside one ab run (they share a queue), so the
    interval is narrower than a repetition-level one would be: it says how well the pooled tail is pinned
    down, not how far another run's tail may fall."""
    x = np.sort(_clean(values))
    n = len(x)
    if n == 0:
        return Interval(np.nan, np.nan, np.nan, level, 0)
    j, k, cov = quantile_ranks(n, q, level)
    return Interval(float(np.quantile(x, q)), float(x[j - 1]), float(x[k - 1]), cov, n)
