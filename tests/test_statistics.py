"""The statistics behind every verdict, checked against hand-computed cases (no training needed)."""

import math

import numpy as np
import pytest

from cnnbench.analysis.statistics import (
    mcnemar_exact,
    mcnemar_interval,
    seeds_needed,
    t_interval,
    t_test_p,
    wilson_interval,
)


def correctness(b: int, c: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-example correctness of two models with the given 2x2 table (b: only A right, c: only B right)."""
    a = np.array([1] * b + [0] * c + [1] * both + [0] * neither, dtype=bool)
    bb = np.array([0] * b + [1] * c + [1] * both + [0] * neither, dtype=bool)
    return a, bb


def test_mcnemar_exact_on_hand_made_tables():
    m = mcnemar_exact(*correctness(3, 7, 50, 5))
    # two-sided: 2 * P(X <= 3), X ~ Binomial(10, 1/2) = 2 * (1 + 10 + 45 + 120) / 1024
    assert (m.b, m.c) == (3, 7) and m.p == pytest.approx(2 * 176 / 1024)
    assert mcnemar_exact(*correctness(10, 0, 5, 5)).p == pytest.approx(2 / 1024)
    assert mcnemar_exact(*correctness(4, 4, 2, 0)).p == 1.0
    m = mcnemar_exact(*correctness(0, 0, 8, 2))  # no discordant examples: nothing to tell the models apart
    assert (m.b, m.c, m.p) == (0, 0, 1.0)


def test_wilson_interval_known_values():
    low, high = wilson_interval(50, 100)
    assert (low, high) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    low, high = wilson_interval(0, 10)  # upper bound z^2 / (n + z^2) when nothing is right
    assert low == 0 and high == pytest.approx(1.959964**2 / (10 + 1.959964**2), rel=1e-6)
    low, high = wilson_interval(10, 10)
    assert high == 1 and low == pytest.approx(10 / (10 + 1.959964**2), rel=1e-6)


def test_t_interval_and_t_test_by_hand():
    mean, low, high = t_interval([1.0, 2.0, 3.0])  # sd 1, t(0.975, 2) = 4.3027
    assert (
        mean == 2
        and high - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
        and mean - low == pytest.approx(high - mean)
    )
    assert t_interval([0.5]) is None
    assert t_test_p([0.01, 0.01, 0.01]) == 0.0 and t_test_p([0.0, 0.0]) == 1.0
    assert t_test_p([1.0, -1.0, 0.5, -0.5]) == pytest.approx(1.0)


def test_seeds_needed_resolves_the_difference_at_the_observed_spread():
    # t(9) * 0.40 / sqrt(10) = 0.286 < 0.29, but t(8) * 0.40 / 3 = 0.307 > 0.29
    assert seeds_needed(0.29, 0.40) == 10
    assert seeds_needed(-0.29, 0.40) == 10
    assert seeds_needed(1.0, 0.0) == 2 and seeds_needed(0.0, 0.1) is None
    assert seeds_needed(1e-4, 1.0) is None  # more than 1,000 seeds


def test_the_one_seed_interval_agrees_with_mcnemars_exact_test_in_every_case():
    """It excludes 0 exactly when the exact test's p is below 0.05: the interval beside a verdict can never
    contradict the test that decided it (a bootstrap interval did: 0.10 to 2.20 points beside p = 0.061)."""
    n = 1000
    for b in range(0, 41):
        for c in range(0, 41):
            low, high = mcnemar_interval(b, c, n)
            assert low <= (b - c) / n <= high
            p = mcnemar_exact(*correctness(b, c, 500, n - 500 - b - c)).p
            assert (low > 0 or high < 0) == (p < 0.05), (b, c, low, high, p)
    assert mcnemar_interval(0, 0, n) == (0.0, 0.0)


def test_the_one_seed_interval_covers_the_true_difference_at_least_at_the_nominal_rate():
    rng = np.random.default_rng(1)
    # Population: A right with p 0.80, B with 0.77, correlated through shared hard examples; true diff 0.03.
    covered = 0
    for _ in range(200):
        hard = rng.random(1000) < 0.15
        a = np.where(hard, rng.random(1000) < 0.35, rng.random(1000) < 0.8794)
        b = np.where(hard, rng.random(1000) < 0.30, rng.random(1000) < 0.8529)
        true = 0.15 * 0.35 + 0.85 * 0.8794 - (0.15 * 0.30 + 0.85 * 0.8529)
        m = mcnemar_exact(a, b)
        low, high = mcnemar_interval(m.b, m.c, 1000)
        covered += low <= true <= high
    assert 0.93 <= covered / 200 <= 1.0  # exact intervals err on the side of covering


def test_paired_inputs_must_match():
    with pytest.raises(ValueError):
        mcnemar_exact(np.ones(3, bool), np.ones(4, bool))
