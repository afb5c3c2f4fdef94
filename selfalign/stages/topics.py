"""Stage `topics`: for each red-teaming question type, the model proposes topics.

The prompt shows two worked kinds, then the type's description and its seed topics as the start of a
numbered list that the model continues. Every type must end with at least `min_per_type` topics: a
type that falls short after a round of generations gets another round (more samples), up to
`max_rounds`, so the red-teaming types a small model finds hardest are covered too. As in the paper,
a later round's list goes on from the topics kept so far: the seed topics, then those of earlier rounds.
"""
from __future__ import annotations

import re
from collections import Counter

from selfalign.data.records import lineage_fields, record_id
from selfalign.data.templates import Template
from selfalign.engine.types import Item
from selfalign.text.dedup import near_duplicates
from selfalign.text.filters import is_garbage
from selfalign.text.parsing import parse_numbered

STAGE = "topics"
STOP = ("\n\n",)  # the list ends at a blank line; past it a base model starts a new document


def build_items(types: list[dict], template: Template, samples_per_type: int, round_: int = 0,
                kept: dict[str, list[str]] | None = None) -> list[Item]:
    """`samples_per_type` prompts per type; `kept`: per type id, topics of earlier rounds, listed after the seed
    topics (`meta["first"]`: the number the model continues from)."""
    items = []
    for t in types:
        shown = t["topics"] + (kept or {}).get(t["id"], [])
        prompt = template.render(type=t | {"topics": shown})
        items += [Item(key=f"{t['id']}#{round_}.{s}", prompt=prompt,
                       meta={"type_id": t["id"], "first": len(shown) + 1, "round": round_})
                  for s in range(samples_per_type)]
    return items


def generate(types: list[dict], template: Template, *, samples_per_type: int, min_per_type: int, max_rounds: int,
             max_words: int, threshold: float, run) -> list[dict]:
    """Generation rows for `types`: a first round of `samples_per_type` per type, then rounds for the types
    that have fewer than `min_per_type` usable topics so far, each prompt continuing the list of the topics
    kept so far. `run(items)` generates items (the engine)."""
    rows: list[dict] = []
    todo, kept = list(types), {}
    for r in range(max_rounds):
        rows += run(build_items(todo, template, samples_per_type, r, kept))
        records, _, per_type = collect(rows, types, template, max_per_type=min_per_type, max_words=max_words,
                                       threshold=threshold)
        kept = {t["id"]: [rec["topic"] for rec in records if rec["type_id"] == t["id"]] for t in types}
        todo = [t for t in types if per_type[t["id"]] < min_per_type]
        if not todo:
            break
    return rows


def clean_topic(text: str, max_words: int) -> tuple[str | None, str | None]:
    """(topic, None) or (None, rejection reason)."""
    t = re.sub(r"^[\"'*`\s]+|[\"'*`.;:,\s]+$", "", text)  # quotes, markdown and end punctuation
    if not t:
        return None, "empty"
    if is_garbage(t):
        return None, "garbage"  # degenerate sampling: control characters, no letters, one word repeated
    if "?" in t:
        return None, "question_not_topic"  # the model repeated the example questions
    words = t.lower().split()
    if len(words) != len(set(words)) and len(words) <= 3:
        return None, "repeated_word"  # "Calendar calendar": a stutter, not a topic
    if len(t.split()) > max_words:
        return None, "too_long"
    if not re.match(r"\w", t):
        return None, "leading_punctuation"
    return t, None


def collect(rows: list[dict], types: list[dict], template: Template, *, max_per_type: int, max_words: int,
            threshold: float) -> tuple[list[dict], Counter, dict[str, int]]:
    """Parse generations into topic records: cleaned, deduplicated per type (against each other and the
    type's seed examples), at most max_per_type each. Returns (records, counts, topics kept per type)."""
    counts: Counter = Counter()
    by_type: dict[str, list[tuple[str, dict]]] = {t["id"]: [] for t in types}
    for row in rows:
        for item in parse_numbered(row["output"], first=row["meta"]["first"], finished=row["finished"]):
            counts["parsed"] += 1
            if not item.complete:
                counts["removed.truncated"] += 1
                continue
            topic, reason = clean_topic(item.text, max_words)
            if reason:
                counts[f"removed.{reason}"] += 1
                continue
            by_type[row["meta"]["type_id"]].append((topic, row))
    records = []
    for t in types:
        cands = by_type[t["id"]]
        kept, dups = near_duplicates([c[0] for c in cands], threshold, reference=t["examples"] + t["topics"])
        counts["removed.near_duplicate"] += len(dups)
        if len(kept) > max_per_type:
            counts["removed.over_max_per_type"] += len(kept) - max_per_type
        for i in kept[:max_per_type]:
            topic, row = cands[i]
            records.append({
                "id": record_id("tp", STAGE, [t["id"]], topic.lower()),
                **lineage_fields(stage=STAGE, parent_ids=[t["id"]], generated=row,
                          template_hash=template.hash),
                "type_id": t["id"],
                "topic": topic,
            })
    counts["kept"] = len(records)
    per_type = {t["id"]: sum(r["type_id"] == t["id"] for r in records) for t in types}
    return records, counts, per_type
