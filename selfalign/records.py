"""Record ids and lineage.

Every generated record carries: id, parent_ids, stage, model, decoding, template_hash. Ids are
content hashes, so the same output gets the same id on every rerun and a record can be traced
back through parent_ids to a seed.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

LINEAGE_FIELDS = ("id", "parent_ids", "stage", "model", "decoding", "template_hash")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(obj: Any) -> str:
    """Stable hash of a JSON-able object (key order does not matter)."""
    return sha256_text(json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")))


def record_id(prefix: str, stage: str, parent_ids: Iterable[str], text: str) -> str:
    return f"{prefix}-{fingerprint([stage, sorted(parent_ids), text])[:16]}"


def lineage(*, stage: str, parent_ids: list[str], model: str, decoding: dict, template_hash: str) -> dict:
    return {
        "parent_ids": list(parent_ids),
        "stage": stage,
        "model": model,
        "decoding": dict(decoding),
        "template_hash": template_hash,
    }
