"""Near-duplicate filtering of synthetic prompts (SELF-ALIGN stage 1, the Self-Instruct/Alpaca rule).

A prompt is dropped when its ROUGE-L F-measure against an already-kept prompt, or against a
reference prompt (e.g. a seed prompt), is above the threshold (0.7). The rule is applied greedily
in input order, so a prompt is only ever compared with prompts that were themselves kept.

`pairwise_near_duplicates` applies the rule pairwise, O(n^2), as Self-Instruct does. `near_duplicates`
applies the same rule but only to candidate pairs found by MinHash LSH, then verifies each candidate
with exact ROUGE-L: its drops are always genuine (precision is exact), and only a missed candidate
pair can make it keep a prompt that the pairwise method drops (recall).

Equivalence notes:
- ROUGE-L here is rouge_score's `RougeScorer(["rougeL"], use_stemmer=False)` F-measure, bit for bit
  (same tokenizer, same float formula); the LCS length is computed with a bit-parallel algorithm.
- Shingles are tokens with their occurrence number ("the", "the#2", ...), so the set Jaccard is the
  multiset Jaccard of the token bags. ROUGE-L F > t implies multiset Jaccard >= t / (2 - t)
  (0.538 at t = 0.7), which is what the LSH settings are tuned against.
- Signatures equal datasketch's `MinHash` (scheme "affine32", sha1_hash32, same seed) but are
  computed for all texts at once with numpy (4x faster than MinHash.bulk: 0.15 s vs 0.67 s per 10k);
  they go into a datasketch `MinHashLSH` whose (bands, rows) come from its own parameter search.
- Bucket mates are filtered by their exact multiset token overlap (vectorised) before any LCS:
  the overlap bounds the LCS, so this filter never drops a pair above the threshold.
"""
from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

__all__ = ["Duplicate", "best_reference_match", "pairwise_near_duplicates", "near_duplicates", "rouge_l"]

# LSH Jaccard threshold (at ROUGE-L threshold 0.7) and the (false positive, false negative) weights
# handed to datasketch's parameter search. Pairs with ROUGE-L just above 0.7 have multiset Jaccard
# down to 0.538, so the S-curve must already be near 1 there. With 128 permutations this gives 32
# bands of 4 rows: P(candidate) = 0.94 at J = 0.54, 0.99 at J = 0.6, 0.23 at J = 0.3 and 0.05 at
# J = 0.2. Rows of 3 (LSH_JACCARD = 0.3, P = 0.999 at J = 0.54) caught 0.4% more drops on 100k
# synthetic prompts (bench/dedup.py) but ran 3.5x slower: same-template prompts at J = 0.2-0.4 flood
# the buckets. For other ROUGE-L thresholds the Jaccard is scaled with the bound t / (2 - t).
LSH_JACCARD = 0.4
LSH_WEIGHTS = (0.5, 0.5)

# rouge_score's tokenizer: lowercase, every non-[a-z0-9] run is a separator.
_NON_ALNUM = re.compile(r"[^a-z0-9]+")

# Elements per numpy block when computing signatures (16 MiB of uint32).
_SIG_BLOCK = 1 << 22


def _tokens(text: str) -> tuple[str, ...]:
    # Same steps as rouge_score.tokenize.tokenize without a stemmer: lower() first (it can turn
    # non-ASCII letters such as the Kelvin sign into ASCII), then split on non-alphanumerics.
    return tuple(_NON_ALNUM.sub(" ", text.lower()).split())


@functools.lru_cache(maxsize=1 << 16)
def _cached_tokens(text: str) -> tuple[str, ...]:
    return _tokens(text)


def _masks(tokens: Sequence[str]) -> dict[str, int]:
    """Bit i of masks[w] is set where tokens[i] == w (the match vectors of the bit-parallel LCS)."""
    masks: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    return masks


def _lcs(masks: dict[str, int], n: int, other: Iterable[str]) -> int:
    """LCS length of the n tokens behind `masks` and `other` (Hyyro's bit-vector recurrence)."""
    full = (1 << n) - 1
    v = full
    get = masks.get
    for tok in other:
        m = get(tok)
        if m:
            u = v & m
            v = (v + u) | (v - u)
    # Zeros among the low n bits of v count the LCS; bits carried above n are irrelevant.
    return n - (v & full).bit_count()


def _fmeasure(lcs: int, n_target: int, n_pred: int) -> float:
    # Exactly rouge_score's arithmetic (_score_lcs + scoring.fmeasure), so thresholds compare
    # identically even at values like 0.7 that are not representable.
    if not n_target or not n_pred:
        return 0.0
    precision = lcs / n_pred
    recall = lcs / n_target
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F-measure of `b` against `a`, equal to rouge_score's rougeL fmeasure (no stemmer)."""
    ta, tb = _cached_tokens(a), _cached_tokens(b)
    if not ta or not tb:
        return 0.0
    return _fmeasure(_lcs(_masks(ta), len(ta), tb), len(ta), len(tb))


@dataclass(frozen=True)
class Duplicate:
    """A dropped text: `match` is "text:<j>" (a kept text) or "reference:<k>"; `score` its ROUGE-L.

    Token-less texts (empty, whitespace or punctuation only) are duplicates of each other with
    score 1.0, although rouge_score itself scores empty inputs 0.
    """

    index: int
    match: str
    score: float


class _Pool:
    """References and texts under one id space (references first), with per-id LCS caches.

    Ids order the candidates for tie-breaking: among equal best scores the reference with the
    lowest index wins, then the kept text with the lowest index, in both methods alike.
    """

    def __init__(self, texts: Sequence[str], reference: Sequence[str]):
        self.n_ref = len(reference)
        self.tokens = [_tokens(t) for t in reference] + [_tokens(t) for t in texts]
        self._masks: dict[int, dict[str, int]] = {}

    def name(self, gid: int) -> str:
        if gid < self.n_ref:
            return f"reference:{gid}"
        return f"text:{gid - self.n_ref}"

    def masks(self, gid: int) -> dict[str, int]:
        m = self._masks.get(gid)
        if m is None:
            m = self._masks[gid] = _masks(self.tokens[gid])
        return m

    def best_match(self, gid: int, candidates: Iterable[int], threshold: float) -> tuple[float, int]:
        """Highest ROUGE-L of `gid` over `candidates` among those that may exceed `threshold`.

        Returns (score, candidate id), lowest id on ties, or (-1.0, -1) when none can exceed it.
        """
        toks = self.tokens[gid]
        n = len(toks)
        best, best_id = -1.0, -1
        for c in candidates:
            m = len(self.tokens[c])
            # LCS <= min(n, m) bounds F by 2 min / (n + m): skip pairs that cannot pass. The slack
            # keeps pairs whose float F could round to just above the threshold.
            if 2 * min(n, m) < threshold * (n + m) * (1 - 1e-9):
                continue
            score = _fmeasure(_lcs(self.masks(c), m, toks), m, n)
            if score > best or (score == best and c < best_id):
                best, best_id = score, c
        return best, best_id


def _greedy(
    pool: _Pool,
    n_texts: int,
    threshold: float,
    candidates: Callable[[int], Iterable[int]],
    on_keep: Callable[[int], None],
) -> tuple[list[int], list[Duplicate]]:
    """The greedy rule shared by both methods; they differ only in `candidates`."""
    exact: dict[tuple[str, ...], int] = {}
    for gid in range(pool.n_ref):
        exact.setdefault(pool.tokens[gid], gid)
        on_keep(gid)
    kept: list[int] = []
    dropped: list[Duplicate] = []
    for i in range(n_texts):
        gid = pool.n_ref + i
        toks = pool.tokens[gid]
        # Identical token sequences (so any case/whitespace/punctuation variant, and token-less
        # texts among themselves) are caught here, independently of the LSH.
        hit = exact.get(toks)
        if hit is not None:
            dropped.append(Duplicate(i, pool.name(hit), 1.0))
            continue
        if toks:
            score, match = pool.best_match(gid, candidates(gid), threshold)
            if score > threshold:
                dropped.append(Duplicate(i, pool.name(match), score))
                continue
        kept.append(i)
        exact[toks] = gid
        on_keep(gid)
    return kept, dropped


def pairwise_near_duplicates(
    texts: Sequence[str], threshold: float = 0.7, reference: Sequence[str] = ()
) -> tuple[list[int], list[Duplicate]]:
    """Pairwise O(n^2) reference method: (kept indices, dropped texts) by the greedy ROUGE-L rule."""
    texts, reference = list(texts), list(reference)
    pool = _Pool(texts, reference)
    kept_ids: list[int] = []  # ids of references and kept texts, ascending
    return _greedy(pool, len(texts), threshold, lambda gid: kept_ids, kept_ids.append)


def _jaccard_floor(threshold: float) -> float:
    """Least multiset Jaccard of two token lists whose ROUGE-L F exceeds `threshold`.

    overlap >= LCS and F = 2 LCS / (n + m) > t give J = overlap / (n + m - overlap) > t / (2 - t).
    """
    t = min(max(threshold, 0.0), 1.0)
    return t / (2 - t)


@functools.lru_cache(maxsize=16)
def _lsh_params(num_perm: int, threshold: float = 0.7) -> tuple[int, int]:
    """(bands, rows) from datasketch's MinHashLSH parameter search."""
    jaccard = LSH_JACCARD * _jaccard_floor(threshold) / _jaccard_floor(0.7)
    lsh = MinHashLSH(threshold=min(max(jaccard, 0.05), 0.95), num_perm=num_perm, weights=LSH_WEIGHTS)
    return lsh.b, lsh.r


@functools.lru_cache(maxsize=8)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
    return np.asarray(a, dtype=np.uint32), np.asarray(b, dtype=np.uint32)


def _shingles_of(tokens: Sequence[str]) -> list[str]:
    # Repeated tokens are numbered ("the", "the#2", ...) so the set Jaccard is the multiset Jaccard
    # of the token bags: ROUGE-L counts every occurrence, plain sets would under-weight repeats.
    seen: dict[str, int] = {}
    out = []
    for tok in tokens:
        k = seen.get(tok, 0) + 1
        seen[tok] = k
        out.append(tok if k == 1 else f"{tok}#{k}")
    return out


def _shingle_ids(token_lists: Sequence[Sequence[str]]) -> tuple[list[list[int]], list[int]]:
    """Per text, ids of its shingles; and per id, datasketch's sha1_hash32 of the shingle's utf-8."""
    ids: dict[str, int] = {}
    hashes: list[int] = []
    rows: list[list[int]] = []
    for toks in token_lists:
        row = []
        for sh in _shingles_of(toks):
            i = ids.get(sh)
            if i is None:
                # Hash each distinct shingle once; most tokens recur across prompts.
                i = ids[sh] = len(hashes)
                hashes.append(int.from_bytes(hashlib.sha1(sh.encode("utf-8")).digest()[:4], "little"))
            row.append(i)
        rows.append(row)
    return rows, hashes


def _fmix32(h: np.ndarray) -> np.ndarray:
    # datasketch's affine32 pre-mix (MurmurHash3 finalizer); uint32 arithmetic wraps as intended.
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _signatures(rows: list[list[int]], hashes: list[int], num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures (len(rows) x num_perm uint32) of `_shingle_ids` output, equal to datasketch
    MinHash(num_perm, seed) updated with the utf-8 shingles; empty rows keep the empty value."""
    a, b = _permutations(num_perm, seed)
    hv = _fmix32(np.asarray(hashes, dtype=np.uint32))
    lens = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    sig = np.full((len(rows), num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    if not len(rows):
        return sig
    # Texts of equal shingle count form (texts x shingles) index matrices, so the permutation and
    # the min run as whole-array numpy operations; blocks bound the (texts x shingles x perms) cube.
    order = np.argsort(lens, kind="stable")
    sorted_lens = lens[order]
    bounds = np.flatnonzero(np.r_[True, sorted_lens[1:] != sorted_lens[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        width = int(sorted_lens[lo])
        if width == 0:
            continue
        step = max(1, _SIG_BLOCK // (width * num_perm))
        for start in range(lo, hi, step):
            idx = order[start : min(start + step, hi)]
            h = hv[np.array([rows[k] for k in idx], dtype=np.int64)]
            sig[idx] = (h[:, :, None] * a + b).min(axis=1)
    return sig


def near_duplicates(
    texts: Sequence[str],
    threshold: float = 0.7,
    reference: Sequence[str] = (),
    *,
    num_perm: int = 128,
    seed: int = 1,
) -> tuple[list[int], list[Duplicate]]:
    """(kept indices, dropped texts) by the greedy ROUGE-L rule, checking only MinHash LSH candidates."""
    texts, reference = list(texts), list(reference)
    pool = _Pool(texts, reference)
    lsh = MinHashLSH(num_perm=num_perm, params=_lsh_params(num_perm, threshold))
    shingles, hashes = _shingle_ids(pool.tokens)
    sig = _signatures(shingles, hashes, num_perm, seed)
    # Shingle ids of every text as one flat array (CSR), for the vectorised overlap filter below.
    lens = np.fromiter((len(r) for r in shingles), dtype=np.int64, count=len(shingles))
    starts = np.zeros(len(shingles) + 1, dtype=np.int64)
    np.cumsum(lens, out=starts[1:])
    flat = np.fromiter((i for r in shingles for i in r), dtype=np.int32, count=int(starts[-1]))
    member = np.zeros(len(hashes), dtype=np.int32)  # 1 on the current query's shingle ids

    def sketch(gid: int) -> LeanMinHash:
        return LeanMinHash(seed=seed, hashvalues=sig[gid], scheme="affine32")

    def candidates(gid: int) -> Iterable[int]:
        found = lsh.query(sketch(gid))
        if len(found) <= 1:
            return found
        c = np.array(found, dtype=np.int64)
        # Most bucket mates share only common words. Shingles number repeated tokens, so the shared
        # shingle count is the multiset token overlap, an upper bound on the LCS: one vectorised
        # pass drops every candidate whose F-measure bound 2 * overlap / (n + m) cannot pass,
        # before any Python-level LCS. The slack keeps pairs whose float F could round above.
        q = flat[starts[gid] : starts[gid + 1]]
        member[q] = 1
        m = lens[c]
        offs = np.zeros(len(c), dtype=np.int64)
        np.cumsum(m[:-1], out=offs[1:])
        idx = np.arange(int(offs[-1] + m[-1])) + np.repeat(starts[c] - offs, m)
        overlap = np.add.reduceat(member[flat[idx]], offs)
        member[q] = 0
        ok = 2 * overlap >= threshold * (lens[gid] + m) * (1 - 1e-9)
        return c[ok].tolist()

    def index(gid: int) -> None:
        # Token-less texts never reach the LSH (the exact-match dict handles them); nor index them.
        if pool.tokens[gid]:
            lsh.insert(gid, sketch(gid), check_duplication=False)

    return _greedy(pool, len(texts), threshold, candidates, index)


def best_reference_match(texts: Sequence[str], reference: Sequence[str]) -> list[tuple[float, int]]:
    """For each text, its highest ROUGE-L against any reference text and that reference's index
    ((0.0, -1) when none shares a token), checking every pair: the contamination check must not miss
    a pair the way an LSH can. A pair is skipped only when its length bound cannot beat the best score
    found so far for that text."""
    pool = _Pool(list(texts), list(reference))
    out = []
    for i in range(len(texts)):
        gid = pool.n_ref + i
        toks = pool.tokens[gid]
        n, best, best_id = len(toks), 0.0, -1
        if n:
            masks = pool.masks(gid)
            for r in range(pool.n_ref):
                m = len(pool.tokens[r])
                if not m or 2 * min(n, m) <= best * (n + m):
                    continue
                score = _fmeasure(_lcs(masks, n, pool.tokens[r]), m, n)
                if score > best:
                    best, best_id = score, r
        out.append((best, best_id))
    return out
