"""selfalign.text.dedup: ROUGE-L parity with rouge_score, the greedy rule, and LSH recall vs the exact method."""
from __future__ import annotations

import random

import numpy as np
import pytest
from datasketch import MinHash
from rouge_score import rouge_scorer, tokenize

from selfalign.text import dedup
from selfalign.text.dedup import Duplicate, near_duplicates, pairwise_near_duplicates, rouge_l

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def reference_rouge(a: str, b: str) -> float:
    return SCORER.score(a, b)["rougeL"].fmeasure


# ---------------------------------------------------------------- synthetic prompts

TEMPLATES = [
    "Write a {adj} poem about {noun} and {noun2} for {who}.",
    "Explain how {adj} {noun} affects {noun2} in {place}.",
    "Give me {n} tips for keeping {adj} {noun} near the {noun2}.",
    "What are the differences between {adj} {noun} and {adj2} {noun2}?",
    "Describe a day in the life of a {role} who studies {noun} in {place}.",
    "Summarize the history of {adj} {noun} in {place} in {n} sentences.",
    "Suggest {n} names for a {adj} company in {place} that sells {noun}.",
    "If you were a {role}, how would you explain {noun} to a {role2}?",
    "Create a {n}-step plan for a {role} to learn about {noun} and {noun2}.",
    "List the pros and cons of using {adj} {noun} in a {adj2} {noun2}.",
    "Why do {role}s in {place} care so much about {adj} {noun}?",
    "Compare {noun} with {noun2} from the point of view of a {adj} {role}.",
]
ADJ = ("ancient modern tiny huge quiet noisy green digital rural urban cheap luxury brave gentle "
       "frozen tropical electric wooden secret hungry golden rusty").split()
NOUN = ("rivers volcanoes bicycles robots gardens bakeries satellites libraries coffee whales tides "
        "batteries markets castles forests glaciers cameras vaccines bridges deserts owls trains "
        "lanterns violins tomatoes clocks ferries mushrooms kites beehives").split()
ROLE = "teacher pilot chef nurse farmer engineer poet detective judge miner sailor baker".split()
WHO = ["children", "a beginner", "my grandmother", "engineers", "tourists", "a busy parent"]
FILLER = "really very also quickly new old simple".split()
PREFIX = ["Please", "Can you", "Kindly", "I need you to", "Hey,"]
CONTEXT = ["My {role} friend from {place} loves {adj} {noun}.", "I live in {place} and own {n} {noun}.",
           "Our team of {n} works near the {adj} {noun2} in {place}."]


def fill(rng: random.Random, template: str) -> str:
    syll = "ka lo mi ra ve tor an el is qu".split()
    return template.format(
        adj=rng.choice(ADJ), adj2=rng.choice(ADJ), noun=rng.choice(NOUN), noun2=rng.choice(NOUN),
        role=rng.choice(ROLE), role2=rng.choice(ROLE), who=rng.choice(WHO), n=rng.randint(2, 9),
        place="".join(rng.choice(syll) for _ in range(3)).capitalize(),
    )


def perturb(rng: random.Random, text: str) -> str:
    words = text.split()
    kind = rng.randrange(6)
    if kind == 0:  # a few words changed
        for _ in range(rng.randint(1, 3)):
            words[rng.randrange(len(words))] = rng.choice(NOUN + ADJ + FILLER)
    elif kind == 1:  # words dropped or added
        if rng.random() < 0.5 and len(words) > 3:
            del words[rng.randrange(len(words))]
        else:
            words.insert(rng.randrange(len(words) + 1), rng.choice(FILLER))
    elif kind == 2:  # polite prefix
        words = rng.choice(PREFIX).split() + [words[0].lower()] + words[1:]
    elif kind == 3:  # clauses reordered
        s = " ".join(words)
        for sep in (". ", ", ", " and ", " about ", " for "):
            if sep in s:
                left, right = s.split(sep, 1)
                s = right.rstrip(".?!") + sep + left.lower() + "."
                break
        words = s.split()
    elif kind == 4:  # case and whitespace only
        return "  " + rng.choice([text.upper(), text.lower()]).replace(" ", "  ") + " "
    else:  # two edits
        return perturb(rng, perturb(rng, text))
    return " ".join(words)


def synthetic_prompts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < 0.35:
            out.append(perturb(rng, out[max(0, len(out) - 1 - int(rng.expovariate(1 / 50)))]))
        else:
            text = fill(rng, rng.choice(TEMPLATES))
            if rng.random() < 0.6:
                context = fill(rng, rng.choice(CONTEXT))
                text = f"{context} {text}" if rng.random() < 0.5 else f"{text} {context}"
            out.append(text)
    return out


# ---------------------------------------------------------------- rouge_l


def random_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    vocab = ADJ[:6] + NOUN[:6] + ["a", "the", "of", "to", "A", "THE", "Of", "42", "x1"]
    odd = ["", " ", "\t\n", "!!!", "?.,;", "---", "café", "naïve", "İstanbul", "\u212avin", "日本語",
           "emoji 😀 here", "ß", "don't", "e-mail", "3.14", "o'clock", "Ωmega", "ﬁle"]
    pairs = [("", ""), ("", "abc"), ("abc", ""), ("!!!", "???"), ("   ", "a"), ("a a a", "a"),
             ("the cat", "The  CAT!"), ("\u212a", "k"), ("İ", "i")]
    for _ in range(n):
        def text() -> str:
            words = [rng.choice(vocab + odd) for _ in range(rng.randint(0, 14))]
            return rng.choice([" ", "  ", ", ", "-", ". "]).join(words)

        a = text()
        b = perturb(rng, a) if a.strip() and rng.random() < 0.4 else text()
        pairs.append((a, b))
    return pairs


def test_rouge_l_equals_rouge_score() -> None:
    pairs = random_pairs(400, seed=7)
    pairs += list(zip(synthetic_prompts(150, seed=3), synthetic_prompts(150, seed=3)[1:]))
    for a, b in pairs:
        expected = reference_rouge(a, b)
        assert rouge_l(a, b) == expected, (a, b)
        assert rouge_l(b, a) == reference_rouge(b, a), (b, a)
        assert list(dedup._tokens(a)) == tokenize.tokenize(a, None), a


def test_signatures_equal_datasketch_minhash() -> None:
    texts = ["the cat saw the other cat", "", "Write a poem about rivers.", "日本語 and café"]
    tokens = [dedup._tokens(t) for t in texts]
    sig = dedup._signatures(*dedup._shingle_ids(tokens), 64, 5)
    for toks, row in zip(tokens, sig):
        m = MinHash(num_perm=64, seed=5)
        m.update_batch([s.encode("utf-8") for s in dedup._shingles_of(toks)])
        assert np.array_equal(m.hashvalues, row)


# ---------------------------------------------------------------- greedy rule, handcrafted


A = "Write a short poem about a brave knight fighting a dragon"
B = "Write a short poem about a brave princess fighting a storm"  # ~A (0.82)
C = "Write a long song about a brave princess fighting a storm"  # ~B (0.82), not ~A (0.64)


def handcrafted() -> tuple[list[str], list[str]]:
    texts = [
        "Explain how photosynthesis works in plants.",  # 0 kept
        "  EXPLAIN how   photosynthesis works in plants!  ",  # 1 exact dup of 0
        "Explain how photosynthesis works in green plants.",  # 2 near paraphrase of 0
        "Explain how respiration works in animals and fungi.",  # 3 about 0.6 vs 0: kept
        "Please list three uses of vaccines in modern medicine.",  # 4 ~ reference 1
        A,  # 5 kept
        B,  # 6 dropped, matches 5
        C,  # 7 kept: only ~B, which was dropped
        "",  # 8 kept: first token-less text
        "   ",  # 9 dropped, matches 8
        "?!",  # 10 dropped, matches 8
    ]
    reference = ["Give a recipe for bread.", "List three uses of vaccines in modern medicine."]
    return texts, reference


def test_handcrafted_pairs_have_the_intended_scores() -> None:
    texts, _ = handcrafted()
    assert 0.55 < reference_rouge(texts[0], texts[3]) < 0.7
    assert reference_rouge(texts[0], texts[2]) > 0.7
    assert reference_rouge(A, B) > 0.7 and reference_rouge(B, C) > 0.7
    assert reference_rouge(A, C) <= 0.7


@pytest.mark.parametrize("method", [near_duplicates, pairwise_near_duplicates])
def test_handcrafted_decisions(method) -> None:
    texts, reference = handcrafted()
    kept, dropped = method(texts, reference=reference)
    assert kept == [0, 3, 5, 7, 8]
    by_index = {d.index: d for d in dropped}
    assert sorted(by_index) == [1, 2, 4, 6, 9, 10]
    assert by_index[1] == Duplicate(1, "text:0", 1.0)
    assert by_index[2].match == "text:0"
    assert by_index[2].score == reference_rouge(texts[0], texts[2])
    assert by_index[4].match == "reference:1"
    assert by_index[4].score == reference_rouge(reference[1], texts[4])
    assert by_index[6].match == "text:5"
    assert by_index[9] == Duplicate(9, "text:8", 1.0)
    assert by_index[10] == Duplicate(10, "text:8", 1.0)


def test_without_reference_and_threshold_is_strict() -> None:
    texts, _ = handcrafted()
    kept, dropped = near_duplicates(texts)
    assert 4 in kept
    score = rouge_l(A, B)
    # "above" the threshold: a pair exactly at it is kept
    assert near_duplicates([A, B], threshold=score)[0] == [0, 1]
    assert near_duplicates([A, B], threshold=score - 1e-9)[0] == [0]


@pytest.mark.parametrize("method", [near_duplicates, pairwise_near_duplicates])
def test_exact_duplicate_of_reference(method) -> None:
    texts = ["Tell me a joke about cats", "tell me a joke about CATS.", "Name three rivers in Africa"]
    reference = ["Name three rivers in Africa!", "name THREE rivers in africa"]
    kept, dropped = method(texts, reference=reference)
    assert kept == [0]
    assert dropped == [Duplicate(1, "text:0", 1.0), Duplicate(2, "reference:0", 1.0)]


@pytest.mark.parametrize("method", [near_duplicates, pairwise_near_duplicates])
def test_best_match_is_reported(method) -> None:
    x = "Explain the real causes of the French Revolution in detail"
    y = "Describe the main causes of the French Revolution in brief"
    z = "Describe the main causes of the French Revolution in detail"  # 0.8 vs x, 0.9 vs y
    assert rouge_l(x, y) == pytest.approx(0.7)
    kept, dropped = method([x, y, z])
    assert kept == [0, 1]
    assert dropped == [Duplicate(2, "text:1", rouge_l(y, z))]
    assert dropped[0].score == pytest.approx(0.9)


@pytest.mark.parametrize("method", [near_duplicates, pairwise_near_duplicates])
def test_empty_inputs(method) -> None:
    assert method([]) == ([], [])
    assert method([], reference=["a reference"]) == ([], [])
    assert method(["", "  "], reference=[""]) == (
        [], [Duplicate(0, "reference:0", 1.0), Duplicate(1, "reference:0", 1.0)])


def test_exact_method_matches_rouge_score_directly() -> None:
    # The ground truth itself, against a naive loop over rouge_score (no shared code).
    texts = synthetic_prompts(120, seed=11)
    reference = synthetic_prompts(10, seed=12)
    kept_ref: list[int] = []
    dropped_ref: dict[int, float] = {}
    for i, t in enumerate(texts):
        scores = [reference_rouge(r, t) for r in reference] + [reference_rouge(texts[j], t) for j in kept_ref]
        same = [r for r in reference + [texts[j] for j in kept_ref] if dedup._tokens(r) == dedup._tokens(t)]
        if same or (scores and max(scores) > 0.7):
            dropped_ref[i] = 1.0 if same else max(scores)
        else:
            kept_ref.append(i)
    kept, dropped = pairwise_near_duplicates(texts, reference=reference)
    assert kept == kept_ref
    assert {d.index: d.score for d in dropped} == pytest.approx(dropped_ref)
    assert 10 < len(dropped) < 100


# ---------------------------------------------------------------- LSH vs exact on generated prompts


@pytest.fixture(scope="module")
def generated() -> dict:
    texts = synthetic_prompts(1500, seed=2024)
    reference = synthetic_prompts(40, seed=99)
    fast = near_duplicates(texts, reference=reference)
    exact = pairwise_near_duplicates(texts, reference=reference)
    return dict(texts=texts, reference=reference, fast=fast, exact=exact)


def test_generated_recall_vs_exact(generated) -> None:
    (kept_f, drop_f), (_, drop_e) = generated["fast"], generated["exact"]
    n = len(generated["texts"])
    assert sorted(kept_f + [d.index for d in drop_f]) == list(range(n))
    assert kept_f == sorted(kept_f)
    de, df = {d.index for d in drop_e}, {d.index for d in drop_f}
    assert 200 < len(de) < 1000  # a realistic mix, not all duplicates
    recall = len(de & df) / len(de)
    assert recall >= 0.95, recall
    # Only missed pairs can differ, and each one can only make the fast method keep more.
    assert len(df - de) <= len(de - df)


def test_generated_drops_are_verified(generated) -> None:
    texts, reference = generated["texts"], generated["reference"]
    kept, dropped = generated["fast"]
    kept_set = set(kept)
    for d in dropped:
        kind, _, k = d.match.partition(":")
        other = reference[int(k)] if kind == "reference" else texts[int(k)]
        if kind == "text":
            assert int(k) < d.index and int(k) in kept_set
        if dedup._tokens(other) == dedup._tokens(texts[d.index]):
            assert d.score == 1.0  # identical token sequences (rouge_score says 0 when token-less)
        else:
            assert d.score == reference_rouge(other, texts[d.index]) > 0.7


@pytest.mark.parametrize("threshold", [0.5, 0.85])
def test_other_thresholds_keep_recall(threshold) -> None:
    # The LSH Jaccard is scaled with the threshold; recall must hold away from 0.7 too.
    texts = synthetic_prompts(500, seed=5)
    drop_f = {d.index for d in near_duplicates(texts, threshold)[1]}
    drop_e = {d.index for d in pairwise_near_duplicates(texts, threshold)[1]}
    assert len(drop_f & drop_e) / len(drop_e) >= 0.9


def test_generated_is_deterministic(generated) -> None:
    texts, reference = generated["texts"], generated["reference"]
    assert near_duplicates(texts, reference=reference) == generated["fast"]
    assert near_duplicates(tuple(texts), reference=tuple(reference)) == generated["fast"]
