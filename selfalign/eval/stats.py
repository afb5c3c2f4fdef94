"""Uncertainty of evaluation metrics: intervals over items and paired tests between checkpoints.

Pure functions over per-item scores (numpy only), seeded, so every figure in metrics/eval.json is
reproducible:

- `bootstrap_ci`: the percentile bootstrap interval of a mean over items (resampling items with
  replacement). Used for every accuracy and for MC2.
- `wilson_ci`: the Wilson score interval of a proportion. Used for refusal and answer rates, which can
  sit at or near 0 or 1, where a bootstrap interval collapses to a point (0 refusals of 200 gives the
  bootstrap interval [0, 0]; Wilson gives [0, 0.019]).
- `paired_bootstrap`: the interval of the mean difference between two checkpoints on the same items,
  resampling items (the pairs) together.
- `mcnemar_exact`: the exact two-sided McNemar test for paired 0/1 scores (a binomial test on the
  discordant items); `sign_flip_p`: a paired randomization test for continuous scores (MC2).
- `compare`: the difference, its paired interval and a p-value (McNemar for 0/1 scores, sign flips
  otherwise) in one record.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from selfalign.core.hashing import fingerprint

LEVEL = 0.95
Z95 = 1.959963984540054  # the standard normal's 97.5th percentile


def rng(seed: int, key: str = "") -> np.random.Generator:
    """A generator seeded from the pipeline seed and a key (the metric's name), so that each interval
    is reproducible on its own, whatever else is computed before it."""
    return np.random.default_rng(int(fingerprint([seed, key])[:16], 16))


def _array(values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise ValueError("need a non-empty 1-D sequence of scores")
    if not np.all(np.isfinite(a)):
        raise ValueError("scores must be finite")
    return a


def _boot_means(a: np.ndarray, n_boot: int, gen: np.random.Generator) -> np.ndarray:
    """Means of `n_boot` resamples of `a` (items drawn with replacement), in chunks to bound memory."""
    out = np.empty(n_boot)
    chunk = max(1, 2_000_000 // a.size)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = gen.integers(0, a.size, size=(stop - start, a.size))
        out[start:stop] = a[idx].mean(axis=1)
    return out


def _percentiles(boot: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return float(lo), float(hi)


def bootstrap_ci(values: Sequence[float], *, seed: int, key: str = "", n_boot: int = 10_000,
                 level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (one score per item)."""
    a = _array(values)
    return _percentiles(_boot_means(a, n_boot, rng(seed, key)), level)


def wilson_ci(successes: int, n: int, *, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion successes / n (95% with the default z)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Exact at the ends (the formula gives them up to rounding).
    return (0.0 if successes == 0 else max(0.0, centre - half)), (1.0 if successes == n else min(1.0, centre + half))


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, seed: int, key: str = "", n_boot: int = 10_000,
                     level: float = LEVEL) -> tuple[float, tuple[float, float]]:
    """Mean of b - a over paired items and its percentile bootstrap interval (items resampled as pairs)."""
    x, y = _array(a), _array(b)
    if x.size != y.size:
        raise ValueError(f"paired scores need the same items: {x.size} against {y.size}")
    d = y - x
    return float(d.mean()), _percentiles(_boot_means(d, n_boot, rng(seed, key)), level)


def binom_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (integer arithmetic, then one division)."""
    return sum(math.comb(n, i) for i in range(0, k + 1)) / 2 ** n


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: `b` items right only under the first checkpoint, `c` right only
    under the second. Under no difference each discordant item goes either way with probability 1/2."""
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be >= 0")
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2 * binom_cdf(min(b, c), n))


def sign_flip_p(diffs: Sequence[float], *, seed: int, key: str = "", n_perm: int = 10_000) -> float:
    """Two-sided paired randomization test of mean(diffs) = 0: flip each item's sign at random.

    Exact (every sign pattern) for up to 16 items with a non-zero difference, else Monte Carlo with the
    add-one correction, so a p-value is never 0."""
    d = _array(diffs)
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    observed = abs(d.sum())
    tol = 1e-12 * max(1.0, observed)
    if d.size <= 16:
        signs = ((np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1) * 2 - 1
        sums = np.abs(signs @ d)
        return float(np.mean(sums >= observed - tol))
    gen = rng(seed, key)
    hits = 0
    chunk = max(1, 2_000_000 // d.size)
    for start in range(0, n_perm, chunk):
        m = min(chunk, n_perm - start)
        signs = gen.integers(0, 2, size=(m, d.size)) * 2 - 1
        hits += int(np.sum(np.abs(signs @ d) >= observed - tol))
    return (hits + 1) / (n_perm + 1)


def is_binary(values: Sequence[float]) -> bool:
    return all(v in (0, 1) for v in values)


def compare(a: Sequence[float], b: Sequence[float], *, seed: int, key: str = "", n_boot: int = 10_000,
            level: float = LEVEL) -> dict:
    """b against a on the same items: the mean difference `diff`, its paired bootstrap interval (`lo`, `hi`)
    and a p-value `p`.

    For 0/1 scores the p-value is McNemar's exact test, with the discordant counts reported (`gained`:
    items right under b only, `lost`: right under a only); otherwise a paired sign-flip randomization test."""
    diff, (lo, hi) = paired_bootstrap(a, b, seed=seed, key=key, n_boot=n_boot, level=level)
    out = {"diff": round(diff, 4), "lo": round(lo, 4), "hi": round(hi, 4)}
    if is_binary(a) and is_binary(b):
        gained = sum(1 for x, y in zip(a, b) if y > x)
        lost = sum(1 for x, y in zip(a, b) if x > y)
        out.update(p=round(mcnemar_exact(lost, gained), 4), test="mcnemar_exact", gained=gained, lost=lost)
    else:
        out.update(p=round(sign_flip_p(np.asarray(b, float) - np.asarray(a, float), seed=seed, key=key,
                                       n_perm=n_boot), 4), test="sign_flip")
    out["n"] = len(a)
    return out


ALPHA = 0.05


def within_noise(cmp: dict) -> bool:
    """The data cannot tell the two checkpoints apart: the paired test's p-value is at least 0.05 (or, for a
    record without one, the interval of the difference covers 0). The exact test decides where the two
    disagree: with few discordant items the percentile interval can exclude 0 while McNemar's p is large."""
    if cmp.get("p") is not None:
        return cmp["p"] >= ALPHA
    return cmp["lo"] <= 0 <= cmp["hi"]
