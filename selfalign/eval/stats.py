"""Uncertainty of evaluation metrics: intervals over items and paired tests between checkpoints.

Pure functions over per-item scores (numpy, and scipy.stats for the tests and Wilson), seeded, so every figure in metrics/eval.json is
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
- `paired_test`: the difference, its paired interval and a p-value (McNemar for 0/1 scores, sign flips
  otherwise) in one record.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.stats

from selfalign.core.hashing import fingerprint

LEVEL = 0.95


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


def bootstrap_ci(values: Sequence[float], *, seed: int, key: str = "", n_boot: int,
                 level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (one score per item)."""
    a = _array(values)
    return _percentiles(_boot_means(a, n_boot, rng(seed, key)), level)


def wilson_ci(successes: int, n: int, *, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion successes / n."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    ci = scipy.stats.binomtest(successes, n).proportion_ci(confidence_level=level, method="wilson")
    # Exact at the ends (the formula gives them only up to rounding).
    return (0.0 if successes == 0 else float(ci.low)), (1.0 if successes == n else float(ci.high))


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, seed: int, key: str = "", n_boot: int,
                     level: float = LEVEL) -> tuple[float, tuple[float, float]]:
    """Mean of b - a over paired items and its percentile bootstrap interval (items resampled as pairs)."""
    x, y = _array(a), _array(b)
    if x.size != y.size:
        raise ValueError(f"paired scores need the same items: {x.size} against {y.size}")
    d = y - x
    return float(d.mean()), _percentiles(_boot_means(d, n_boot, rng(seed, key)), level)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: `b` items right only under the first checkpoint, `c` right only
    under the second. Under no difference each discordant item goes either way with probability 1/2."""
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be >= 0")
    if b + c == 0:
        return 1.0  # binomtest needs n >= 1; with no discordant item there is no evidence either way
    return float(scipy.stats.binomtest(min(b, c), b + c, 0.5).pvalue)


def _abs_sum(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.abs(x.sum(axis=axis))


def sign_flip_p(diffs: Sequence[float], *, seed: int, key: str = "", n_perm: int) -> float:
    """Two-sided paired randomization test of mean(diffs) = 0: flip each item's sign at random.

    Exact (every sign pattern) for up to 16 items with a non-zero difference, else `n_perm` random
    patterns with the add-one correction, so a p-value is never 0."""
    d = _array(diffs)
    d = d[d != 0]  # zeros flip to themselves; dropping them keeps more cases exact
    if d.size <= 1:
        return 1.0  # both patterns of one difference reach |sum| (and scipy needs two items)
    # |sum| with alternative="greater" is the two-sided test; scipy goes exact when n_resamples >= 2**n.
    res = scipy.stats.permutation_test((d,), _abs_sum, permutation_type="samples", vectorized=True,
                                       n_resamples=2 ** d.size if d.size <= 16 else n_perm,
                                       batch=max(1, 2_000_000 // d.size), alternative="greater",
                                       rng=rng(seed, key))
    return float(res.pvalue)


def is_binary(values: Sequence[float]) -> bool:
    return all(v in (0, 1) for v in values)


def paired_test(a: Sequence[float], b: Sequence[float], *, seed: int, key: str = "", n_boot: int,
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
