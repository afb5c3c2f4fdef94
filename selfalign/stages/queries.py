"""Stage `queries`: self-instruct plus topic-guided red-teaming questions, filtered and deduplicated."""
from __future__ import annotations

import random
import re
from collections import Counter

from selfalign.data.records import lineage_fields, record_id
from selfalign.data.templates import Template
from selfalign.engine.types import Item
from selfalign.text.dedup import near_duplicates
from selfalign.text.filters import is_garbage
from selfalign.text.parsing import parse_numbered

STAGE = "queries"
STOP = ("\n\n",)

# Tasks a text-only model cannot do (the Self-Instruct filter): asking for them teaches the model to
# pretend. Matched as whole words, lowercased.
BLOCKLIST = (
    "image", "images", "picture", "pictures", "photo", "photos", "graph", "graphs", "chart", "plot",
    "diagram", "flowchart", "draw", "drawing", "video", "videos", "audio", "sound recording", "music file",
    "file", "files", "map", "maps", "click", "browse", "download", "attached", "screenshot",
)
# A candidate with no question mark that opens like a statement ("The city's population was ...") asks
# nothing; requests open with a verb ("Write ...", "Explain ...") or a question word.
STATEMENT_OPENERS = {"the", "a", "an", "in", "on", "at", "it", "this", "that", "these", "those", "there", "his",
                     "her", "their", "its", "my", "our", "i", "we", "he", "she", "they"}
_BLOCK = re.compile(r"\b(" + "|".join(re.escape(w) for w in BLOCKLIST) + r")\b")


def self_instruct_prompt_count(params: dict) -> int:
    """`queries.self_instruct_prompts`, or with `auto` as many as the align sample's self-instruct part
    needs: (align.max_queries + align.heldout_queries) x (1 - align.red_team_share), over the kept queries
    a prompt is expected to yield (`queries.self_instruct_yield`). A null share plans for an all
    self-instruct sample (the red-team part comes from the topics either way)."""
    import math

    q, a = params["queries"], params["align"]
    if q["self_instruct_prompts"] != "auto":
        return int(q["self_instruct_prompts"])
    share = a["red_team_share"] or 0.0
    return math.ceil((a["max_queries"] + a["heldout_queries"]) * (1 - share) / q["self_instruct_yield"])


def build_items(seeds: list[dict], types: list[dict], topics: list[dict], si_template: Template,
                rt_template: Template, *, self_instruct_prompts: int, demos_per_prompt: int,
                questions_per_topic_prompt: int, seed: int) -> list[Item]:
    rng = random.Random(seed)  # seeded: the same demonstrations on every run and every shard
    items = []
    k = min(demos_per_prompt, len(seeds))
    for i in range(self_instruct_prompts):
        demos = rng.sample(seeds, k)
        items.append(Item(
            key=f"si#{i}",
            prompt=si_template.render(demos=[d["instruction"] for d in demos]),
            meta={"source": "self_instruct", "parent_ids": [d["id"] for d in demos], "first": k + 1,
                  "template_hash": si_template.hash},
        ))
    by_id = {t["id"]: t for t in types}
    for tp in sorted(topics, key=lambda r: (r["type_id"], r["id"])):
        for j in range(questions_per_topic_prompt):
            items.append(Item(
                key=f"{tp['id']}#{j}",
                prompt=rt_template.render(type=by_id[tp["type_id"]], topic=tp["topic"]),
                meta={"source": "red_team", "parent_ids": [tp["id"]], "type_id": tp["type_id"],
                      "topic_id": tp["id"], "first": 1, "template_hash": rt_template.hash},
            ))
    return items


def filter_reason(text: str, *, min_words: int, max_words: int) -> str | None:
    """Why a candidate query is rejected (None: keep). Each rule is from the Self-Instruct filters."""
    words = text.split()
    if not words:
        return "empty"
    if is_garbage(text):
        return "garbage"  # degenerate sampling: control characters, no letters, one word repeated
    if len(words) < min_words:
        return "too_short"  # fragments, not requests
    if len(words) > max_words:
        return "too_long"  # run-on generations that never closed the item
    if _BLOCK.search(text.lower()):
        return "blocklist"  # needs images, files, audio or browsing
    if not re.match(r"\w", text):
        return "leading_punctuation"  # list residue such as "- ", ": " or ")"
    if not text[0].isascii():
        return "non_ascii_start"  # mostly a switch to another script mid-list
    if "?" not in text and words[0].lower().strip("'\"") in STATEMENT_OPENERS:
        return "not_a_request"
    if text.rstrip().endswith(":"):
        return "not_a_request"  # announces what follows ("Write the following code:") and stops
    return None


def collect(rows: list[dict], seeds: list[dict], types: list[dict], *, min_words: int, max_words: int,
            threshold: float) -> tuple[list[dict], list[dict], Counter]:
    """Parse, filter and deduplicate generations. Returns (kept, rejected, counts)."""
    counts: Counter = Counter()
    cands: list[dict] = []
    rejected: list[dict] = []

    def make(row, text, **extra):
        meta = row["meta"]
        rec = {
            "id": record_id("q", STAGE, meta["parent_ids"], text),
            **lineage_fields(stage=STAGE, parent_ids=meta["parent_ids"], generated=row,
                      template_hash=meta["template_hash"]),
            "source": meta["source"], "query": text,
            "type_id": meta.get("type_id"), "topic_id": meta.get("topic_id"),
        }
        return rec | extra

    for row in rows:
        for item in parse_numbered(row["output"], first=row["meta"]["first"], finished=row["finished"]):
            counts["parsed"] += 1
            reason = "truncated" if not item.complete else filter_reason(item.text, min_words=min_words, max_words=max_words)
            if reason:
                counts[f"removed.{reason}"] += 1
                rejected.append(make(row, item.text, reason=reason))
            else:
                cands.append(make(row, item.text))
    # Seeds and the type examples are references: a copy of a demonstration is not a new query.
    reference = [s["instruction"] for s in seeds] + [q for t in types for q in t["examples"]]
    kept_idx, dups = near_duplicates([c["query"] for c in cands], threshold, reference=reference)
    for d in dups:
        counts["removed.near_duplicate"] += 1
        rejected.append(cands[d.index] | {"reason": f"near_duplicate({d.match}, rouge_l={d.score:.2f})"})
    kept = [cands[i] for i in kept_idx]
    counts["kept"] = len(kept)
    counts["kept.self_instruct"] = sum(r["source"] == "self_instruct" for r in kept)
    counts["kept.red_team"] = sum(r["source"] == "red_team" for r in kept)
    # A rejected row can repeat a kept row's text (an exact duplicate) or another rejected row's:
    # give audit rows ids of their own, numbered by occurrence.
    seen: Counter = Counter()
    for r in rejected:
        seen[r["id"]] += 1
        r["id"] = record_id("qr", STAGE, [r["id"]], str(seen[r["id"]]))
    return kept, rejected, counts
