"""Statistics for honest comparisons: plain functions on plain arrays, no training and no files.

Which difference between two models is real and which is noise: a Wilson interval for one
accuracy, McNemar's exact test and the interval that inverts it for two models on the same test images, and
t-intervals over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95  # confidence level of every interval cnnbench reports


def wilson_interval(correct: int, total: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion (accuracy ``correct / total``); better than the normal
    approximation near 0 and 1, where good classifiers live (Wilson, 1927)."""
    if total <= 0:
        raise ValueError("wilson_interval needs at least one observation")
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    # exact bounds at the ends (rounding would leave 0.9999999999999999 for a perfect score)
    return (0.0 if correct == 0 else centre - half), (1.0 if correct == total else centre + half)


@dataclass(frozen=True)
class McNemar:
    b: int  # examples model A gets right and model B wrong
    c: int  # examples model B gets right and model A wrong
    p: float  # two-sided exact p-value


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """McNemar's exact test on paired per-example correctness: under "same accuracy" each discordant
    example is a fair coin, so b ~ Binomial(b + c, 1/2). No discordant examples: p = 1."""
    a, b_ = _paired_bools(correct_a, correct_b)
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    p = 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)
    return McNemar(b, c, min(p, 1.0))


def mcnemar_interval(b: int, c: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """An interval for accuracy(A) - accuracy(B) on ``n`` paired test examples that agrees with McNemar's exact test
    by construction: it excludes 0 exactly when that test's p is below 1 - level.

    The exact test conditions on the m = b + c discordant examples, where b ~ Binomial(m, pi) and the null is
    pi = 1/2. Clopper-Pearson's interval for pi inverts that same binomial test (each tail at (1 - level) / 2;
    for pi = 1/2 the binomial is symmetric, so scipy's two-sided p is twice the smaller tail), and the difference is
    (b - c) / n = (2 pi - 1) m / n, so the interval for pi maps to one for the difference, taking the share of
    discordant examples m / n as observed (the conditional interval, Breslow & Day 1980, section 4.3)."""
    m = b + c
    if m == 0:
        return 0.0, 0.0
    ci = stats.binomtest(b, m, 0.5).proportion_ci(confidence_level=level, method="exact")
    return (2 * ci.low - 1) * m / n, (2 * ci.high - 1) * m / n


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float] | None:
    """Mean of ``values`` and the t-interval of the mean; None with fewer than two values."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return None
    mean, sd = float(v.mean()), float(v.std(ddof=1))
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * sd / math.sqrt(len(v))
    return mean, mean - half, mean + half


def t_test_p(differences: Sequence[float]) -> float | None:
    """Two-sided p-value of a one-sample t-test of mean zero (paired t-test on per-seed differences)."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return None
    sd = d.std(ddof=1)
    if sd == 0:
        return 1.0 if d.mean() == 0 else 0.0
    t = d.mean() / (sd / math.sqrt(len(d)))
    return float(2 * stats.t.sf(abs(t), len(d) - 1))


def seeds_needed(mean_difference: float, sd_difference: float, level: float = LEVEL, most: int = 1000) -> int | None:
    """Fewest seeds n whose t-interval of the mean difference, at the observed spread, excludes zero:
    t(n-1) * sd / sqrt(n) < |mean|. None when the difference is zero or more than ``most`` seeds are needed."""
    if mean_difference == 0:
        return None
    if sd_difference == 0:
        return 2
    for n in range(2, most + 1):
        if stats.t.ppf(0.5 + level / 2, n - 1) * sd_difference / math.sqrt(n) < abs(mean_difference):
            return n
    return None


def _paired_bools(correct_a, correct_b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(
            f"paired correctness needs two 1-D arrays of the same non-zero length (got {a.shape} and {b.shape})"
        )
    return a, b
