"""Benchmark of selfalign.text.dedup: MinHash-LSH near_duplicates against the pairwise exact method.

Generates seeded synthetic prompt sets (templates + vocabulary + near-paraphrase perturbations),
times near_duplicates on each size, times both methods on a sample small enough for the O(n^2)
method, and reports the fast method's recall of dropped prompts on that sample.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/dedup.py [--sizes 10000 100000] [--exact-sample 2000]
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from selfalign.text import dedup  # noqa: E402

ADJ = """ancient modern urban rural digital sustainable remote local global small large quantum
renewable medieval tropical arctic coastal mountain suburban industrial organic artificial
natural political economic social cultural historical scientific medical financial legal
educational environmental electric wireless mobile open private public creative competitive
collaborative minimalist vintage futuristic affordable luxury seasonal nocturnal volcanic""".split()
NOUN = """city farm river forest library hospital school bakery startup museum garden bridge
railway airport harbor market village desert island volcano glacier ocean satellite robot
algorithm database network battery engine vaccine telescope microscope camera smartphone laptop
bicycle car truck drone rocket submarine tractor festival election parliament court contract
budget loan mortgage investment insurance pension tax tariff currency inflation recession
startup classroom curriculum exam textbook lecture painting sculpture novel poem symphony opera
film podcast newspaper magazine website app game puzzle sport marathon tournament recipe soup
salad bread cheese coffee tea chocolate wine diet workout meditation sleep habit hobby pet dog
cat bird fish horse whale insect bee tree flower mushroom rainforest coral reef climate weather
storm earthquake flood drought wildfire pollution recycling plastic energy solar wind nuclear
hydrogen water soil mineral metal language grammar poetry philosophy ethics religion myth
legend history empire revolution war treaty democracy economy trade migration population
family friendship marriage career interview resume salary team meeting project deadline""".split()
ROLE = """teacher doctor nurse engineer farmer chef pilot lawyer journalist scientist artist
musician programmer designer architect librarian detective astronaut firefighter gardener
student manager entrepreneur historian economist photographer translator""".split()
AUDIENCE = ["for children", "for a beginner", "for software engineers", "for a high school student",
            "for a busy parent", "for retirees", "for a job interview", "for my grandmother",
            "for a ten year old", "for a team of volunteers", "for first-year university students",
            "for a general audience", "for investors", "for tourists", "for non-native speakers"]
FORM = ["a short poem", "a blog post", "an email", "a tweet", "a product description",
        "a step-by-step guide", "a haiku", "a short story", "a summary", "a list of tips",
        "a lesson plan", "a recipe", "a cover letter", "a speech", "a dialogue", "a quiz",
        "an essay outline", "a limerick", "a news headline", "a slogan", "a riddle", "a song"]
CONSTRAINT = ["in under {n} words", "using simple language", "in a humorous tone",
              "with {n} concrete examples", "in bullet points", "without using technical jargon",
              "in a formal tone", "in the style of a {role}", "as a numbered list",
              "in exactly {n} sentences", "and end with a question", "using a friendly voice"]
LANG = ["French", "Spanish", "German", "Japanese", "Italian", "Portuguese", "Korean", "Hindi"]
PLANG = ["Python", "JavaScript", "Rust", "Go", "Java", "C++", "SQL", "Haskell"]
TASK = ["reverses a {noun} list", "counts the vowels in a string", "checks whether a number is prime",
        "merges two sorted lists", "parses a CSV file of {noun} records", "finds the longest word",
        "computes the average {noun} price", "removes duplicate {noun} entries",
        "validates an email address", "converts Celsius to Fahrenheit"]

VERB = """build repair explain improve measure protect design compare teach reduce predict organize
celebrate plan clean test translate review promote fund regulate visit paint study grow""".split()
SYL = "ka lo mi ra ve tor an el is dur ban sel qu ix om pe la zu ri go".split()

TEMPLATES = [
    "How would you {verb} a {adj} {noun} if the {noun2} in {place} was {adj2}?",
    "Write {form} in which a {role} from {place} tries to {verb} a {noun}.",
    "Explain to a {role} why the {noun} of {place} should {verb} its {adj} {noun2}.",
    "Give {n} arguments a {role} could use to {verb} the {adj} {noun} in {place}.",
    "Describe what happens when a {adj} {noun} meets a {adj2} {noun2} during a {noun3}.",
    "Imagine {place} in the year {year}; describe its {noun}, {noun2} and {noun3}.",
    "Plan a {n}-hour visit to {place} for a {role} interested in {topic}.",
    "Write a dialogue between a {role} and a {role2} about how to {verb} {topic}.",
    "What would change if every {noun} in {place} had to {verb} a {noun2}?",
    "Compare the way a {role} and a {role2} would {verb} a {adj} {noun}.",
    "Write {form} about {topic} {audience}.",
    "Explain how {topic} affects {topic2} {audience}.",
    "What are the main differences between {topic} and {topic2}?",
    "Give me {n} tips for improving {topic}.",
    "Summarize the history of {topic} in {n} sentences.",
    "Describe a typical day of a {role} who works with {topic}.",
    "If you were a {role}, how would you explain {topic} to a {role2}?",
    "Write a function in {plang} that {task}.",
    "Suggest {n} names for a {adj} {noun} company that sells {noun2} products.",
    "Translate the sentence 'The {noun} near the {noun2} is {adj}' into {lang}.",
    "List {n} advantages and disadvantages of {topic}.",
    "Create a {n}-day plan to learn about {topic} {audience}.",
    "Why is {topic} important for {topic2}?",
    "Compose {form} that compares {topic} with {topic2}.",
    "Classify the following items as {adj} or {adj2}: {noun}, {noun2}, {noun3}.",
    "What questions would a {role} ask about {topic}?",
    "Generate a list of {n} interview questions for a {role} position at a {adj} {noun}.",
    "Propose an experiment to test whether {topic} influences {topic2}.",
    "Rewrite the following sentence to sound more {adj}: 'Our {noun} needs a new {noun2}.'",
    "Identify the main argument for and against {topic} in modern society.",
    "Design a board game about {topic} for {n} players.",
    "Describe the smell, sound and look of a {adj} {noun} at night.",
    "How can a {role} use {topic} to improve their {noun}?",
    "Tell me a fun fact about {topic} and explain why it is surprising.",
    "Evaluate the claim that {topic} is better than {topic2}, giving {n} reasons.",
    "Outline the steps needed to start a {adj} {noun} in a {adj2} {noun2}.",
    "Draft a polite complaint to a {role} about a broken {noun}.",
    "Pretend you are a {noun} and describe your life in the {adj} {noun2}.",
    "Brainstorm {n} creative uses for an old {noun}.",
    "Explain the concept of {topic} using an analogy about a {noun}.",
]
EXTRA = ["The answer should mention {topic2}.", "Keep it short.", "Make sure it is accurate.",
         "Include a title.", "Use at least one metaphor.", "Avoid clichés.",
         "Then explain your reasoning.", "Assume the reader knows nothing about {topic2}."]
# Context sentences with many free slots: real prompts often carry specifics, which keeps two
# prompts from the same task template apart.
CONTEXT = ["My {role} friend from {place} thinks that {topic} is {adj}.",
           "I have {n} {noun}s, a {adj} {noun2} and {year} dollars to spend.",
           "The {noun} in {place} was built in {year} next to a {adj} {noun2}.",
           "Our {adj} team of {n} {role}s works on {topic} every {noun2} season.",
           "Last year {place} banned {topic} after a {adj} {noun2} incident.",
           "Assume the {noun} costs {n} {noun2}s and the {role} earns {year} a month.",
           "Context: a {adj} {noun} called {place} is trying to {verb} its {noun2}.",
           "Background: {place} has {year} {noun}s and only {n} {adj} {noun2}s."]
PREFIX = ["Please", "Can you", "Could you please", "Kindly", "I need you to", "Hey,", "Now,",
          "As an expert,"]
SUFFIX = ["Thanks!", "Be concise.", "Please.", "Thank you.", "Explain briefly."]
FILLER = ["really", "very", "quite", "briefly", "also", "carefully", "clearly", "simply", "new"]


def _fill(rng: random.Random, template: str) -> str:
    def topic() -> str:
        return rng.choice([f"{rng.choice(ADJ)} {rng.choice(NOUN)}", rng.choice(NOUN),
                           f"{rng.choice(NOUN)} {rng.choice(NOUN)}s"])

    slots = dict(
        form=rng.choice(FORM), topic=topic(), topic2=topic(), audience=rng.choice(AUDIENCE),
        n=rng.randint(2, 12), role=rng.choice(ROLE), role2=rng.choice(ROLE), plang=rng.choice(PLANG),
        adj=rng.choice(ADJ), adj2=rng.choice(ADJ), noun=rng.choice(NOUN), noun2=rng.choice(NOUN),
        noun3=rng.choice(NOUN), lang=rng.choice(LANG), verb=rng.choice(VERB),
        place="".join(rng.choice(SYL) for _ in range(rng.randint(2, 3))).capitalize(),
        year=rng.randint(1800, 2300),
    )
    slots["task"] = rng.choice(TASK).format(**slots)
    return template.format(**slots)


def fresh_prompt(rng: random.Random) -> str:
    text = _fill(rng, rng.choice(TEMPLATES))
    if rng.random() < 0.4:
        text = text[:-1] + " " + _fill(rng, rng.choice(CONSTRAINT)) + text[-1]
    if rng.random() < 0.6:
        context = _fill(rng, rng.choice(CONTEXT))
        text = f"{context} {text}" if rng.random() < 0.5 else f"{text} {context}"
    if rng.random() < 0.25:
        text += " " + _fill(rng, rng.choice(EXTRA))
    return text


def perturb(rng: random.Random, text: str) -> str:
    """A near-paraphrase of `text`: one to three edits of the kinds LLM-generated duplicates show."""
    for _ in range(rng.choice([1, 1, 2, 3])):
        words = text.split()
        kind = rng.random()
        if kind < 0.30:  # change a few words
            for _ in range(rng.randint(1, 3)):
                words[rng.randrange(len(words))] = rng.choice(NOUN + ADJ + FILLER)
        elif kind < 0.42:  # delete words
            for _ in range(min(rng.randint(1, 2), len(words) - 1)):
                del words[rng.randrange(len(words))]
        elif kind < 0.54:  # insert words
            for _ in range(rng.randint(1, 2)):
                words.insert(rng.randrange(len(words) + 1), rng.choice(FILLER + ADJ))
        elif kind < 0.68:  # polite prefix / suffix
            if rng.random() < 0.7:
                first = words[0][0].lower() + words[0][1:]
                words = rng.choice(PREFIX).split() + [first] + words[1:]
            else:
                words += rng.choice(SUFFIX).split()
        elif kind < 0.82:  # reorder clauses (or two halves of the sentence)
            s = " ".join(words)
            for sep in (". ", ", ", " and ", " that ", " about ", " for "):
                if sep in s:
                    left, right = s.split(sep, 1)
                    s = right.rstrip(".?!") + sep + left[0].lower() + left[1:] + "."
                    break
            words = s.split()
        elif kind < 0.90:  # swap adjacent words
            if len(words) > 2:
                k = rng.randrange(len(words) - 1)
                words[k], words[k + 1] = words[k + 1], words[k]
        else:  # case / whitespace / punctuation only: an exact duplicate after normalisation
            s = " ".join(words)
            s = rng.choice([s.upper(), s.lower(), "  " + s.replace(" ", "   ") + " ", s.rstrip(".?!") + "!"])
            words = s.split(" ")
        text = " ".join(words)
    return text


def synthetic_prompts(n: int, seed: int = 0, dup_rate: float = 0.35) -> list[str]:
    """n prompts; a `dup_rate` share are perturbations of an earlier prompt (recent ones more often)."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < dup_rate:
            j = len(out) - 1 - min(int(rng.expovariate(1 / 200)), len(out) - 1) if rng.random() < 0.6 \
                else rng.randrange(len(out))
            out.append(perturb(rng, out[j]))
        else:
            out.append(fresh_prompt(rng))
    return out


def _fmt(s: float) -> str:
    return f"{s:.2f} s"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--exact-sample", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    bands, rows = dedup._lsh_params(128)
    print(f"machine: {_cpu()}, nproc={os.cpu_count()}, "
          f"python {platform.python_version()}")
    print(f"LSH: num_perm=128, bands={bands}, rows={rows}, LSH_JACCARD={dedup.LSH_JACCARD}, "
          f"shingles=multiset unigrams; ROUGE-L threshold 0.7")

    for n in args.sizes:
        texts = synthetic_prompts(n, seed=args.seed)
        t0 = time.perf_counter()
        kept, dropped = dedup.near_duplicates(texts)
        dt = time.perf_counter() - t0
        print(f"near_duplicates n={n}: {_fmt(dt)}  kept={len(kept)} dropped={len(dropped)} "
              f"({len(dropped) / n:.1%})")

    n = args.exact_sample
    texts = synthetic_prompts(n, seed=args.seed + 1)
    t0 = time.perf_counter()
    kept_f, drop_f = dedup.near_duplicates(texts)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    kept_e, drop_e = dedup.pairwise_near_duplicates(texts)
    t_exact = time.perf_counter() - t0
    de, df = {d.index for d in drop_e}, {d.index for d in drop_f}
    recall = len(de & df) / len(de) if de else 1.0
    print(f"sample n={n}: near_duplicates {_fmt(t_fast)}, pairwise_near_duplicates {_fmt(t_exact)}, "
          f"speed-up x{t_exact / t_fast:.1f}")
    for big in (s for s in args.sizes if s > n):
        # Pairwise work grows with n x kept, roughly n^2 on this data: a rough figure, not a run.
        print(f"  pairwise_near_duplicates at n={big}, extrapolated as n^2: ~{t_exact * (big / n) ** 2:,.0f} s")
    print(f"sample n={n}: exact drops={len(de)}, fast drops={len(df)}, recall={recall:.4f}, "
          f"drops not in exact={len(df - de)}, unverified drops={sum(d.score <= 0.7 for d in drop_f)}")
    pair_recall(texts, kept_e, bands, rows)


def pair_recall(texts: list[str], kept_e: list[int], bands: int, rows: int) -> None:
    """Harder figure: every (prompt, earlier kept prompt or reference) pair above the threshold in the
    exact run, whether the LSH makes it a candidate (item recall needs only one per prompt)."""
    n = len(texts)
    pool = dedup._Pool(texts, ())
    sig = dedup._signatures(*dedup._shingle_ids(pool.tokens), 128, 1)
    bands_of = sig[:, : bands * rows].reshape(n, bands, rows)
    hits = total = 0
    low_hits = low_total = 0  # pairs with ROUGE-L in (0.7, 0.8]
    for i in range(n):
        ti = pool.tokens[i]
        if not ti:
            continue
        mi = dedup._masks(ti)
        for j in kept_e:
            if j >= i:
                break
            tj = pool.tokens[j]
            if not tj or ti == tj:
                continue
            s = dedup._fmeasure(dedup._lcs(mi, len(ti), tj), len(ti), len(tj))
            if s > 0.7:
                hit = bool((bands_of[i] == bands_of[j]).all(axis=1).any())
                total += 1
                hits += hit
                if s <= 0.8:
                    low_total += 1
                    low_hits += hit
    print(f"sample n={n}: pair recall of LSH candidates, all pairs above 0.7: {hits}/{total} = "
          f"{hits / max(total, 1):.4f}; pairs in (0.7, 0.8]: {low_hits}/{low_total} = "
          f"{low_hits / max(low_total, 1):.4f}")


if __name__ == "__main__":
    main()
