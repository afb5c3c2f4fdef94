"""The interval and test code on cases with known answers."""
import math

import pytest

from selfalign.eval import stats


def test_a_constant_score_has_a_point_interval():
    assert stats.bootstrap_ci([0.7] * 50, seed=1, n_boot=1000) == pytest.approx((0.7, 0.7))
    diff, ci = stats.paired_bootstrap([1, 0, 1, 1], [1, 0, 1, 1], seed=1, n_boot=1000)
    assert diff == 0 and ci == (0.0, 0.0)


def test_bootstrap_interval_of_a_coin_matches_the_binomial_interval():
    # 50 of 100: the normal-approximation interval is 0.5 +- 1.96 * 0.05 = [0.402, 0.598].
    lo, hi = stats.bootstrap_ci([1] * 50 + [0] * 50, seed=0, n_boot=10_000)
    assert lo == pytest.approx(0.402, abs=0.015) and hi == pytest.approx(0.598, abs=0.015)
    # and the Wilson interval of the same count (a textbook value).
    w = stats.wilson_ci(50, 100)
    assert w == pytest.approx((0.4038, 0.5962), abs=1e-4)


def test_bootstrap_is_seeded_and_keyed():
    xs = [i ** 1.5 / 7 for i in range(30)]
    ci = stats.bootstrap_ci(xs, seed=3, key="a", n_boot=1000)
    assert ci == stats.bootstrap_ci(xs, seed=3, key="a", n_boot=1000)
    assert ci != stats.bootstrap_ci(xs, seed=3, key="b", n_boot=1000)


def test_wilson_at_the_ends():
    lo, hi = stats.wilson_ci(0, 200)
    assert lo == 0.0 and hi == pytest.approx(1.96 ** 2 / (200 + 1.96 ** 2), abs=1e-4)  # 0.0189
    assert stats.wilson_ci(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        stats.wilson_ci(3, 0)


def test_mcnemar_exact_p_values():
    assert stats.mcnemar_exact(0, 6) == pytest.approx(2 / 2 ** 6)  # 0.03125
    assert stats.mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)  # 0.0215
    assert stats.mcnemar_exact(3, 3) == 1.0 and stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(2, 5) == stats.mcnemar_exact(5, 2) == pytest.approx(2 * 29 / 128)


def test_paired_test_counts_discordant_items_and_uses_mcnemar_for_accuracies():
    base = [1, 1, 0, 0, 0, 0, 0, 0, 1, 1]
    new = [1, 1, 1, 1, 1, 1, 1, 1, 0, 1]  # 6 gained, 1 lost
    c = stats.paired_test(base, new, seed=0, key="x", n_boot=1000)
    assert c["test"] == "mcnemar_exact" and (c["gained"], c["lost"]) == (6, 1)
    assert c["diff"] == pytest.approx(0.5) and c["p"] == pytest.approx(2 * 8 / 128, abs=1e-4)
    assert c["lo"] <= 0.5 <= c["hi"] and c["n"] == 10


def test_sign_flip_is_exact_for_few_items():
    # Four items, all differences +1: of the 16 sign patterns, 2 reach |sum| = 4.
    assert stats.sign_flip_p([1, 1, 1, 1], seed=0, n_perm=100) == pytest.approx(2 / 16)
    assert stats.sign_flip_p([0, 0], seed=0, n_perm=100) == 1.0
    c = stats.paired_test([0.2, 0.4, 0.5], [0.3, 0.5, 0.6], seed=0, n_boot=1000)
    assert c["test"] == "sign_flip" and c["p"] == pytest.approx(2 / 8) and c["diff"] == pytest.approx(0.1)


def test_within_noise():
    assert stats.within_noise({"lo": -0.02, "hi": 0.05}) and not stats.within_noise({"lo": 0.01, "hi": 0.05})
    # The exact test decides: 5 of 5 discordant items one way exclude 0 from the bootstrap interval, but p = 2/32.
    c = stats.paired_test([1] * 5 + [0] * 7, [0] * 12, seed=0, n_boot=1000)
    assert c["hi"] < 0 and c["p"] == 0.0625 and stats.within_noise(c)


def test_mcnemar_matches_the_binomial_sum_by_integer_arithmetic():
    # scipy's two-sided binomial test must be the doubled smaller tail (capped at 1) on every table here.
    for b in range(25):
        for c in range(25):
            k, n = min(b, c), b + c
            want = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
            assert math.isclose(stats.mcnemar_exact(b, c), want, rel_tol=1e-12), (b, c)


def test_sign_flip_monte_carlo_is_seeded_and_never_zero():
    # 40 items all +1: the exact p is 2 / 2**40, so the 999 random patterns all fall short: (0 + 1) / (999 + 1).
    assert stats.sign_flip_p([1.0] * 40, seed=0, key="k", n_perm=999) == pytest.approx(1 / 1000)
    d = [(-1) ** i * (i % 7) / 3 + 0.05 for i in range(40)]
    p = stats.sign_flip_p(d, seed=0, key="k", n_perm=2000)
    assert 0 < p < 1 and p == stats.sign_flip_p(d, seed=0, key="k", n_perm=2000)
