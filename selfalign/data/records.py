"""Record ids and lineage.

Every generated record carries: id, parent_ids, stage, model, decoding, engine, template_hash. Ids are
content hashes, so the same output gets the same id on every rerun and a record can be traced
back through parent_ids to a seed.
"""
from __future__ import annotations

from typing import Iterable

from selfalign.core.hashing import fingerprint

LINEAGE_FIELDS = ("id", "parent_ids", "stage", "model", "decoding", "engine", "template_hash")


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
