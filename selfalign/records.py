"""Record ids and lineage.

Every generated record carries: id, parent_ids, stage, model, decoding, engine, template_hash. Ids are
content hashes, so the same output gets the same id on every rerun and a record can be traced
back through parent_ids to a seed.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

LINEAGE_FIELDS = ("id", "parent_ids", "stage", "model", "decoding", "engine", "template_hash")

# Every file that holds records, by dataset name (selfalign/validation.py), in pipeline order: the rules
# write them (rules/common.smk), lineage follows them, the report reads them. Seeds are roots.
RECORD_FILES = {
    "red_team_types": "data/seeds/red_team_types.jsonl",
    "self_instruct": "data/seeds/self_instruct.jsonl",
    "topics": "data/topics/topics.jsonl",
    "queries": "data/queries/queries.jsonl",
    "queries_rejected": "data/queries/rejected.jsonl",
    "aligned": "data/aligned/aligned.jsonl",
    "aligned_rejected": "data/aligned/rejected.jsonl",
    "verbose": "data/verbose/verbose.jsonl",
    "verbose_rejected": "data/verbose/rejected.jsonl",
}


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(obj: Any) -> str:
    """Stable hash of a JSON-able object (key order does not matter)."""
    return sha256_text(json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")))


def record_id(prefix: str, stage: str, parent_ids: Iterable[str], text: str) -> str:
    return f"{prefix}-{fingerprint([stage, sorted(parent_ids), text])[:16]}"


def lineage_fields(*, stage: str, parent_ids: list[str], generated: dict, template_hash: str) -> dict:
    """The lineage fields of a record made from `generated`, a row of the generation engine (which says
    which model, decoding and engine settings produced it)."""
    return {
        "parent_ids": list(parent_ids),
        "stage": stage,
        "model": generated["model"],
        "decoding": dict(generated["decoding"]),
        "engine": dict(generated["engine"]),
        "template_hash": template_hash,
    }
