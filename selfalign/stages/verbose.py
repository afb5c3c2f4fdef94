"""Stage `verbose` (SELF-ALIGN step 4, first half): the engraved model, told to be detailed, answers again.

The long answers become the training data of `verbose_clone`, which learns them without the
instruction (context distillation). Outputs are filtered like the align stage's answers.
"""
from __future__ import annotations

from collections import Counter

from selfalign.data.dialogue import NEXT_USER_TURN
from selfalign.data.records import lineage_fields, record_id
from selfalign.data.templates import Template
from selfalign.engine.types import Item
from selfalign.text.filters import is_garbage, repeats_lines, restarts_dialogue

STAGE = "verbose"
STOP = (NEXT_USER_TURN,)
REASONS = ("empty", "truncated", "garbage", "restarts_dialogue", "too_short", "repetition")


def build_items(aligned: list[dict], template: Template, *, assistant: str, instruction: str) -> list[Item]:
    return [
        Item(key=r["id"],
             prompt=template.render(assistant=assistant, query=r["query"],
                                    instruction=" ".join(instruction.replace("{assistant}", assistant).split())),
             meta={"aligned_id": r["id"], "query": r["query"], "template_hash": template.hash})
        for r in sorted(aligned, key=lambda r: r["id"])
    ]


def filter_reason(text: str, *, stopped_by: str | None, assistant: str, min_words: int) -> str | None:
    words = text.split()
    if not words:
        return "empty"
    if stopped_by is None:
        return "truncated"  # ran out of tokens mid-answer
    if is_garbage(text):
        return "garbage"  # degenerate sampling: control characters, no letters, one word repeated
    if restarts_dialogue(text, assistant):
        return "restarts_dialogue"
    if len(words) < min_words:
        return "too_short"  # the point of this stage is detail
    if repeats_lines(text):
        return "repetition"
    return None


def collect(rows: list[dict], *, assistant: str, min_words: int) -> tuple[list[dict], list[dict], Counter]:
    counts: Counter = Counter({f"removed.{r}": 0 for r in REASONS})
    kept, rejected = [], []
    for row in rows:
        meta = row["meta"]
        answer = row["output"].strip()
        rec = {
            "id": record_id("v", STAGE, [meta["aligned_id"]], row["output"]),
            **lineage_fields(stage=STAGE, parent_ids=[meta["aligned_id"]], generated=row,
                      template_hash=meta["template_hash"]),
            "query": meta["query"], "answer": answer,
        }
        counts["generations"] += 1
        reason = filter_reason(answer, stopped_by=row.get("stopped_by"), assistant=assistant, min_words=min_words)
        if reason:
            counts[f"removed.{reason}"] += 1
            rejected.append(rec | {"id": record_id("vr", STAGE, [meta["aligned_id"]], row["output"]), "reason": reason})
        else:
            kept.append(rec)
    counts["kept"] = len(kept)
    return kept, rejected, counts
