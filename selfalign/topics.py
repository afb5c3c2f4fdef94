"""Stage `topics`: for each red-teaming question type, the model proposes topics."""
from __future__ import annotations

import re
from collections import Counter

from .dedup import near_duplicates
from .generation import Item
from .parsing import is_garbage, parse_numbered
from .prompts import Template
from .records import lineage, record_id

STAGE = "topics"
STOP = ("\n\n",)  # the list ends at a blank line; past it a base model starts a new document


def build_items(types: list[dict], template: Template, samples_per_type: int) -> list[Item]:
    return [
        Item(key=f"{t['id']}#{s}", prompt=template.render(type=t), meta={"type_id": t["id"]})
        for t in types
        for s in range(samples_per_type)
    ]


def clean_topic(text: str, max_words: int) -> tuple[str | None, str | None]:
    """(topic, None) or (None, rejection reason)."""
    t = re.sub(r"^[\"'*`\s]+|[\"'*`.;:,\s]+$", "", text)  # quotes, markdown and end punctuation
    if not t:
        return None, "empty"
    if is_garbage(t):
        return None, "garbage"  # degenerate sampling: control characters, no letters, one word repeated
    if "?" in t:
        return None, "question_not_topic"  # the model repeated the example questions
    if len(t.split()) > max_words:
        return None, "too_long"
    if not re.match(r"\w", t):
        return None, "leading_punctuation"
    return t, None


def collect(rows: list[dict], types: list[dict], template: Template, *, max_per_type: int, max_words: int,
            threshold: float = 0.7) -> tuple[list[dict], Counter]:
    """Parse generations into topic records: cleaned, deduplicated per type, at most max_per_type each."""
    counts: Counter = Counter()
    by_type: dict[str, list[tuple[str, dict]]] = {t["id"]: [] for t in types}
    for row in rows:
        for item in parse_numbered(row["output"], first=1, finished=row["finished"]):
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
        kept, dups = near_duplicates([c[0] for c in cands], threshold, reference=t["examples"])
        counts["removed.near_duplicate"] += len(dups)
        if len(kept) > max_per_type:
            counts["removed.over_max_per_type"] += len(kept) - max_per_type
        for i in kept[:max_per_type]:
            topic, row = cands[i]
            records.append({
                "id": record_id("tp", STAGE, [t["id"]], topic.lower()),
                **lineage(stage=STAGE, parent_ids=[t["id"]], generated=row,
                          template_hash=template.hash),
                "type_id": t["id"],
                "topic": topic,
            })
    counts["kept"] = len(records)
    return records, counts
