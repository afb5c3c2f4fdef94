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


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(obj: Any) -> str:
    """Stable hash of a JSON-able object (key order does not matter)."""
    return sha256_text(json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")))


def record_id(prefix: str, stage: str, parent_ids: Iterable[str], text: str) -> str:
    return f"{prefix}-{fingerprint([stage, sorted(parent_ids), text])[:16]}"


def lineage(*, stage: str, parent_ids: list[str], generated: dict, template_hash: str) -> dict:
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
