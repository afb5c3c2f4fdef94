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
from selfalign.text.refusal import classify
from selfalign.text.filters import is_garbage, repeats_lines, restarts_dialogue
from selfalign.text.leakage import leak

STAGE = "verbose"
STOP = (NEXT_USER_TURN,)
REASONS = ("empty", "truncated", "garbage", "restarts_dialogue", "too_short", "repetition", "leaks_prompt",
           "over_refusal")


def build_items(aligned: list[dict], template: Template, *, assistant: str, instruction: str) -> list[Item]:
    return [
        Item(key=r["id"],
             prompt=template.render(assistant=assistant, query=r["query"],
                                    instruction=instruction_text(instruction, assistant)),
             meta={"aligned_id": r["id"], "query": r["query"], "source": r.get("source"), "type_id": r.get("type_id"),
                   "template_hash": template.hash})
        for r in sorted(aligned, key=lambda r: r["id"])
    ]


def instruction_text(instruction: str, assistant: str) -> str:
    """`verbose.instruction` as the prompt shows it."""
    return " ".join(instruction.replace("{assistant}", assistant).split())


def filter_reason(text: str, *, stopped_by: str | None, assistant: str, min_words: int, filters: dict | None = None,
                  source: str | None = None, principle_names: list[str] = (), instruction: str | None = None) -> str | None:
    """Why a long answer is not training data (None: keep). `filters` (params `verbose.filters`) switch on
    the checks of what it would teach: prompt text in it, and a refusal of a self-instruct query."""
    filters = filters or {}
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
    if filters.get("leaks_prompt") and leak(text, assistant=assistant, principle_names=list(principle_names),
                                           instruction=instruction):
        return "leaks_prompt"
    if filters.get("over_refusal") and source == "self_instruct" and classify(text).refusal:
        return "over_refusal"
    return None


def collect(rows: list[dict], *, assistant: str, min_words: int, filters: dict | None = None,
            principle_names: list[str] = (), instruction: str | None = None) -> tuple[list[dict], list[dict], Counter]:
    """Filter the long answers; every record carries its query's origin and the refusal detector's call."""
    counts: Counter = Counter({f"removed.{r}": 0 for r in REASONS})
    kept, rejected = [], []
    for row in rows:
        meta = row["meta"]
        answer = row["output"].strip()
        decision = classify(answer)
        rec = {
            "id": record_id("v", STAGE, [meta["aligned_id"]], row["output"]),
            **lineage_fields(stage=STAGE, parent_ids=[meta["aligned_id"]], generated=row,
                      template_hash=meta["template_hash"]),
            "query": meta["query"], "source": meta.get("source"), "type_id": meta.get("type_id"), "answer": answer,
            "refusal": decision.refusal, "refusal_pattern": decision.pattern,
        }
        counts["generations"] += 1
        reason = filter_reason(answer, stopped_by=row.get("stopped_by"), assistant=assistant, min_words=min_words,
                               filters=filters, source=meta.get("source"), principle_names=principle_names,
                               instruction=instruction)
        if reason:
            counts[f"removed.{reason}"] += 1
            rejected.append(rec | {"id": record_id("vr", STAGE, [meta["aligned_id"]], row["output"]), "reason": reason})
        else:
            kept.append(rec)
    counts["kept"] = len(kept)
    return kept, rejected, counts
