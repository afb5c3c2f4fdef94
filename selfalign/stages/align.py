"""Stage `align`: the base model answers each query with the principles and exemplars in context.

Each completion should read "<thought> I will follow N (name), ...\\n\\n<Assistant>: <answer>" and end
where the model starts the next "User:" turn (a stop string). `parse_response` splits it and says why
an output is rejected; `collect` turns the shards' generations into kept and rejected records.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field

from selfalign.data.dialogue import NEXT_USER_TURN, THOUGHT, assistant_turn
from selfalign.data.principles import CITATION, Exemplar, Principle, citation, norm_name
from selfalign.data.records import lineage_fields, record_id
from selfalign.data.templates import Template
from selfalign.engine.types import Item, TextStop
from selfalign.text.refusal import classify
from selfalign.text.filters import is_garbage, normalize, repeats_lines, restarts_dialogue
from selfalign.text.leakage import leak

STAGE = "align"
USER_TURN = NEXT_USER_TURN  # the stop string: the model began the next "User:" turn


def answer_end(assistant: str) -> TextStop:
    """The answer is one paragraph (as in the exemplars): it ends at the first blank line after it starts.

    Small models often go on with another "<Assistant>:" turn instead of "User:"; this ends them too.
    """
    marker = "\n" + assistant_turn(assistant)

    def find(text: str) -> int | None:
        i = text.find(marker)
        if i < 0:
            return None
        start = i + len(marker)
        j = text.find("\n\n", start)
        while j >= 0 and not text[start:j].strip():
            j = text.find("\n\n", j + 1)
        return j if j >= 0 else None

    return TextStop(f"answer_end({assistant})", find)


def stops(assistant: str) -> tuple:
    return (USER_TURN, answer_end(assistant))
# CITATION ("8 (knowledge recitation)": a principle cited by number and name) lives in principles.py, whose
# loader accepts only numbers and names that it reads back.
COPY_WORDS = 10  # an answer sharing a run of this many words with an exemplar answer copies it
TRAILING_FOLLOW = re.compile(r"(?:^|(?<=[.!?]))\s*I (?:will|should) follow [^.!?\n]*[.!?]?\s*$")
THOUGHT_PHRASES = ("internal thought", "i will follow", "i should follow", "the user asks", "the user wants")

# An answer that stops where more was announced: at a colon, a list marker or a dangling word.
UNFINISHED = re.compile(r"(?:[:;,(\-]|\b(?:and|or|the|a|an|to|of|with|are|is|include|includes)|^\s*\d+[.)]?)\s*$",
                        re.IGNORECASE | re.MULTILINE)

# Every reason an output can be rejected, in the order they are tested: the format (parse_response),
# then the content filters of `judge`.
REASONS = ("empty", "truncated", "restarts_dialogue", "format", "no_citation", "unknown_principle",
           "principle_name_mismatch", "empty_answer", "garbage", "restates_thought", "copies_exemplar", "repetition",
           "unfinished", "follows_in_answer", "repeats_itself", "contradicts_itself", "thought_copies_exemplar",
           "wrong_citation_number", "off_topic", "leaks_prompt", "over_refusal")
SELF_CONTRADICTION = re.compile(r"\bI (?:can't|cannot|can not|don't|do not) (\w+)\b.*\bbut I (?:can|do) \1\b", re.IGNORECASE)
ECHO_WORDS = 8  # an answer sharing a run of this many words with its own thought repeats the thought


def decontaminate(queries: list[dict], eval_questions: list[str], threshold: float) -> tuple[list[dict], list[dict], float]:
    """(clean, contaminated, highest ROUGE-L of a clean query against an eval question).

    A query whose ROUGE-L against any evaluation question exceeds `threshold` (an identical one scores
    1.0) must never become training data. Every query is checked against every question: a near-match
    is caught whatever else the query resembles."""
    from selfalign.text.dedup import best_reference_match

    best = best_reference_match([q["query"] for q in queries], eval_questions)
    clean = [q for q, (score, _) in zip(queries, best) if score <= threshold]
    contaminated = [q for q, (score, _) in zip(queries, best) if score > threshold]
    return clean, contaminated, max((score for score, _ in best if score <= threshold), default=0.0)


def select_queries(queries: list[dict], max_queries: int, seed: int, *, red_team_share: float | None = None,
                   heldout: int = 0) -> tuple[list[dict], list[dict]]:
    """(answered, held out): first `heldout` queries set aside for the engraving-fidelity eval (they never
    reach training), then a sample of at most `max_queries` of the rest; both seeded, both with
    `red_team_share` red-team queries (None: the pool's own mix), both in id order (the same on every
    shard and in the eval stage)."""
    from selfalign.stages.mix import stratified_sample

    ordered = sorted(queries, key=lambda q: q["id"])
    held = stratified_sample(ordered, heldout, red_team_share, random.Random(f"{seed}/heldout")) if heldout else []
    held_ids = {q["id"] for q in held}
    rest = [q for q in ordered if q["id"] not in held_ids]
    answered = stratified_sample(rest, max_queries, red_team_share, random.Random(seed))
    return sorted(answered, key=lambda q: q["id"]), sorted(held, key=lambda q: q["id"])


def prepare_queries(queries: list[dict], eval_questions: list[str], *, threshold: float, max_queries: int,
                    seed: int, red_team_share: float | None = None, heldout: int = 0) -> tuple[list[dict], dict]:
    """The queries this stage answers (decontaminated, then sampled), and the figures of the contamination
    check and of the mix (planned and sampled)."""
    from selfalign.stages.mix import counts

    answered, held, figures = split_queries(queries, eval_questions, threshold=threshold, max_queries=max_queries,
                                            seed=seed, red_team_share=red_team_share, heldout=heldout)
    return answered, figures | {"mix": {"planned_red_team_share": red_team_share, "pool": figures.pop("pool"),
                                        "heldout": counts(held), "answered": counts(answered)}}


def split_queries(queries: list[dict], eval_questions: list[str], *, threshold: float, max_queries: int, seed: int,
                  red_team_share: float | None, heldout: int) -> tuple[list[dict], list[dict], dict]:
    """(answered, held out, contamination figures): `decontaminate`, then `select_queries`. The eval stage
    calls it too, to find the held-out queries the align stage set aside."""
    clean, contaminated, highest = decontaminate(queries, eval_questions, threshold)
    answered, held = select_queries(clean, max_queries, seed, red_team_share=red_team_share, heldout=heldout)
    from selfalign.stages.mix import counts

    return answered, held, {"removed_eval_contamination": len(contaminated), "max_eval_rouge_l_kept": round(highest, 4),
                            "pool": counts(clean)}


def render_context(template: Template, *, assistant: str, identity: str, principles: list[Principle],
                   exemplars: list[Exemplar], query: str) -> str:
    return template.render(
        assistant=assistant, identity=" ".join(identity.split()), principles=principles, query=query,
        exemplars=[{"query": e.query, "thought": e.thought, "follows": e.follows,
                    "citation": citation(e.follows, principles) if e.follows else "", "answer": e.answer}
                   for e in exemplars])


def exemplar_rotation(query_id: str, rotations: int, seed: int) -> int:
    """Which of `rotations` orders of the exemplars a query's prompt uses. Drawn from the query's id, so a
    query keeps its order however the queries are sampled or sharded."""
    return random.Random(f"{seed}/exemplars/{query_id}").randrange(rotations) if rotations > 1 else 0


def build_items(queries: list[dict], template: Template, *, assistant: str, identity: str,
                principles: list[Principle], exemplars: list[Exemplar], principles_version: str,
                rotations: int = 1, seed: int = 0) -> list[Item]:
    """One align prompt per query. With `rotations` > 1 a query sees the exemplars rotated by one of that
    many steps, so no one exemplar always stands nearest the question (a small model copies that one's
    choice of principles). Items come grouped by rotation: consecutive batches share their whole prefix."""
    items = []
    for q in queries:
        r = exemplar_rotation(q["id"], rotations, seed)
        order = exemplars[r:] + exemplars[:r]
        items.append((r, Item(key=q["id"], prompt=render_context(template, assistant=assistant, identity=identity,
                                                                 principles=principles, exemplars=order, query=q["query"]),
                              meta={"query_id": q["id"], "query": q["query"], "source": q.get("source"),
                                    "type_id": q.get("type_id"), "template_hash": template.hash,
                                    "principles_version": principles_version, "exemplar_order": [e.id for e in order]})))
    return [item for _, item in sorted(items, key=lambda x: x[0])]  # stable: query order within a rotation


@dataclass
class Parsed:
    thought: str = ""
    answer: str = ""
    cited: list[int] = field(default_factory=list)
    reason: str | None = None  # None: keep
    renumbered: int = 0  # citations whose name is right but number wrong (resolved by name)
    trimmed: bool = False  # a trailing "I will follow ..." sentence was cut from the answer


def _word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def exemplar_ngrams(exemplars: list[Exemplar]) -> set[tuple[str, ...]]:
    grams: set[tuple[str, ...]] = set()
    for e in exemplars:
        grams |= _word_ngrams(e.answer, COPY_WORDS) | _word_ngrams(e.thought, COPY_WORDS)
    return grams


def judge(text: str, *, stopped_by: str | None, relevance: float | None, assistant: str,
          principles: list[Principle], exemplar_grams: set[tuple[str, ...]], filters: dict,
          source: str | None = None) -> Parsed:
    """`parse_response`, then the content filters that `filters` (params `align.filters`) switch on.

    Chosen on the hand-labelled quality set (tests/data/quality, `bench/quality.py`): an answer that
    stops where it announced more, a thought that reuses an exemplar's reasoning, a citation with the
    wrong number (a model that did not read the principle), an answer about as likely without its query.
    Then two checks of what the answer would teach: prompt machinery in it (`leaks_prompt`), and a
    refusal of a self-instruct query, `source` (`over_refusal`: an ordinary request, declined).
    """
    p = parse_response(text, stopped_by=stopped_by, assistant=assistant, principles=principles,
                       exemplar_grams=exemplar_grams)
    if p.reason:
        return p
    sentences = [normalize(x) for x in re.split(r"(?<=[.!?])\s+", p.answer) if len(x.split()) >= 4]
    if filters["unfinished"] and UNFINISHED.search(p.answer.rstrip().splitlines()[-1]):
        p.reason = "unfinished"
    elif filters["follows_in_answer"] and p.trimmed:
        p.reason = "follows_in_answer"  # the answer ended with the thought's "I will follow ...": format confusion
    elif filters["repeats_itself"] and (len(set(sentences)) < len(sentences)
                                        or _word_ngrams(p.answer, ECHO_WORDS) & _word_ngrams(p.thought, ECHO_WORDS)):
        p.reason = "repeats_itself"
    elif filters["contradicts_itself"] and SELF_CONTRADICTION.search(p.answer):
        p.reason = "contradicts_itself"  # "I can't give you X, but I can give you X"
    elif filters["thought_copies_exemplar"] and _word_ngrams(p.thought, COPY_WORDS) & exemplar_grams:
        p.reason = "thought_copies_exemplar"
    elif filters["wrong_citation_number"] and p.renumbered:
        p.reason = "wrong_citation_number"
    elif filters["off_topic"] is not None and (relevance is None or relevance < filters["off_topic"]):
        p.reason = "off_topic"
    elif filters["leaks_prompt"] and leak(p.answer, assistant=assistant, principle_names=[pr.name for pr in principles]):
        p.reason = "leaks_prompt"
    elif filters["over_refusal"] and source == "self_instruct" and classify(p.answer).refusal:
        p.reason = "over_refusal"
    return p


def parse_response(text: str, *, stopped_by: str | None, assistant: str, principles: list[Principle],
                   exemplar_grams: set[tuple[str, ...]]) -> Parsed:
    """Split a completion of the align prompt into thought and answer, or say why it is rejected.

    `text` starts right after "<Assistant> (internal thought):" and is already cut at the stop string
    `stopped_by` ("\\nUser:", "eos", or None when max_new_tokens ran out).
    """
    if not text.strip():
        return Parsed(reason="empty")
    head, sep, answer = text.partition("\n" + assistant_turn(assistant))
    thought, answer = head.strip(), answer.strip()
    reason = _format_reason(thought, answer, answered=bool(sep), stopped_by=stopped_by, assistant=assistant)
    if reason:
        return Parsed(thought, answer, reason=reason)
    by_id = {p.id: norm_name(p.name) for p in principles}
    cited, renumbered, reason = _citations(thought, by_id)
    if reason:
        return Parsed(thought, answer, cited, reason=reason)
    # A habit of small models: ending the answer with the thought's closing sentence again. Cut it (and
    # count it); an answer that still talks about its rules is rejected below.
    trimmed = TRAILING_FOLLOW.sub("", answer).rstrip()
    reason = _answer_reason(trimmed, set(by_id.values()), exemplar_grams)
    if reason:
        return Parsed(thought, trimmed, cited, reason=reason)
    return Parsed(thought, trimmed, cited, renumbered=renumbered, trimmed=trimmed != answer)


def _format_reason(thought: str, answer: str, *, answered: bool, stopped_by: str | None, assistant: str) -> str | None:
    """Why the completion is not a one-paragraph thought followed by a whole answer turn (None if it is)."""
    if not answered:
        if stopped_by is None:
            return "truncated"  # ran out of tokens inside the thought
        if stopped_by == USER_TURN:
            return "restarts_dialogue"  # wrote the next user turn, no answer
        return "format"  # stopped without an answer
    if stopped_by is None:
        # Hit max_new_tokens mid-answer: a cut-off answer would teach the model to stop mid-sentence.
        return "truncated"
    if restarts_dialogue(answer, assistant) or f"{assistant} {THOUGHT}" in answer:
        return "restarts_dialogue"
    if not thought or "\n\n" in thought:
        return "format"  # the thought is one paragraph, then the answer
    return None


def _citations(thought: str, by_id: dict[int, str]) -> tuple[list[int], int, str | None]:
    """(principle ids the thought cites, in order; how many were renumbered by name; why rejected, or None)."""
    by_name = {name: i for i, name in by_id.items()}
    cites = CITATION.findall(thought)
    if not cites:
        return [], 0, "no_citation"
    cited: list[int] = []
    renumbered = 0
    for num, name in cites:
        # The name carries the meaning; small models often pair it with the wrong number ("12 (clarification)").
        i = by_name.get(norm_name(name))
        if i is None:
            return cited, renumbered, "unknown_principle" if int(num) not in by_id else "principle_name_mismatch"
        renumbered += i != int(num)
        if i not in cited:
            cited.append(i)
    return cited, renumbered, None


def _answer_reason(answer: str, principle_names: set[str], exemplar_grams: set[tuple[str, ...]]) -> str | None:
    """Why the answer itself is not training data (None if it is)."""
    if not answer:
        return "empty_answer"
    if is_garbage(answer):
        return "garbage"  # control characters, no letters, one word repeated
    low = answer.lower()
    if (any(norm_name(n) in principle_names for _, n in CITATION.findall(answer))
            or any(p in low for p in THOUGHT_PHRASES)):
        return "restates_thought"
    if _word_ngrams(answer, COPY_WORDS) & exemplar_grams:
        return "copies_exemplar"
    if repeats_lines(answer):
        return "repetition"
    return None


def annotate_relevance(model, tok, rows: list[dict], *, assistant: str, principles: list[Principle],
                       exemplars: list[Exemplar], prefix_cache: bool = True) -> None:
    """Add `relevance` (selfalign.stages.relevance) to every generation whose answer parses; None to the rest."""
    from selfalign.stages.relevance import relevance

    grams = exemplar_ngrams(exemplars)
    answered = []
    for row in rows:
        row["relevance"] = None
        p = parse_response(row["output"], stopped_by=row.get("stopped_by"), assistant=assistant,
                           principles=principles, exemplar_grams=grams)
        if p.answer.strip():
            answered.append((row, p.answer))
    scores = relevance(model, tok, [(row["meta"]["query"], answer) for row, answer in answered], assistant,
                       prefix_cache=prefix_cache)
    for (row, _), value in zip(answered, scores):
        row["relevance"] = value


def collect(rows: list[dict], *, assistant: str, principles: list[Principle], exemplars: list[Exemplar],
            principles_version: str, filters: dict) -> tuple[list[dict], list[dict], Counter, Counter]:
    """Parse every generation. Returns (kept, rejected, counts, citations of kept answers per principle).

    Every record carries its query's origin (`source`, `type_id`) and the refusal detector's call on its
    answer (`refusal`, `refusal_pattern`), so the mix and the refusals can be read per origin."""
    grams = exemplar_ngrams(exemplars)
    counts: Counter = Counter({f"removed.{r}": 0 for r in REASONS})
    cited: Counter = Counter()
    kept, rejected = [], []
    for row in rows:
        meta = row["meta"]
        p = judge(row["output"], stopped_by=row.get("stopped_by"), relevance=row.get("relevance"), assistant=assistant,
                  principles=principles, exemplar_grams=grams, filters=filters, source=meta.get("source"))
        decision = classify(p.answer)
        rec = {
            "id": record_id("a", STAGE, [meta["query_id"]], row["output"]),
            **lineage_fields(stage=STAGE, parent_ids=[meta["query_id"]], generated=row,
                      template_hash=meta["template_hash"]),
            "principles_version": principles_version, "exemplar_order": meta["exemplar_order"], "assistant": assistant,
            "query": meta["query"], "source": meta.get("source"), "type_id": meta.get("type_id"),
            "thought": p.thought, "answer": p.answer, "cited": p.cited,
            "refusal": decision.refusal, "refusal_pattern": decision.pattern,
            "relevance": row.get("relevance"), "output": row["output"], "stopped_by": row.get("stopped_by"),
        }
        counts["generations"] += 1
        if p.reason:
            counts[f"removed.{p.reason}"] += 1
            rejected.append(rec | {"id": record_id("ar", STAGE, [meta["query_id"]], row["output"]), "reason": p.reason})
        else:
            kept.append(rec)
            cited.update(p.cited)
            counts["citations_renumbered"] += p.renumbered
            counts["answers_trimmed"] += p.trimmed
    counts["kept"] = len(kept)
    counts.update(citation_diversity([r["cited"] for r in kept], exemplars))
    return kept, rejected, counts, cited


def origin_figures(generated: list[dict], kept: list[dict]) -> dict:
    """The mix of what was answered and of what was kept, and the refusal share per origin of both
    (answers that parsed: a format failure says nothing about refusing)."""
    from selfalign.stages.mix import counts, refusal_shares

    answered = [r for r in generated if r["answer"].strip()]
    return {"mix": {"generated": counts(generated), "kept": counts(kept)},
            "refusal_share": {"answered": refusal_shares(answered), "kept": refusal_shares(kept)}}


def citation_diversity(cited: list[list[int]], exemplars: list[Exemplar]) -> dict:
    """How varied the kept thoughts' citations are: the entropy (bits) of the principles cited, and the
    share of thoughts citing exactly the principles of one exemplar (copying its choice, not reasoning)."""
    import math

    per = Counter(i for c in cited for i in c)
    total = sum(per.values())
    entropy = -sum(n / total * math.log2(n / total) for n in per.values()) if total else 0.0
    sets = {frozenset(e.follows) for e in exemplars}
    same = sum(frozenset(c) in sets for c in cited)
    return {"citation_entropy_bits": round(entropy, 3),
            "citations_as_an_exemplar_share": round(same / len(cited), 4) if cited else 0.0}
