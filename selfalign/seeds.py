"""Human-written seed data under data/seeds/: self-instruct instructions and red-teaming question types."""
from __future__ import annotations

import re

from .io import InputError, read_jsonl


def _check_ids(path, records, pattern: str) -> None:
    seen = set()
    for i, r in enumerate(records, 1):
        if not isinstance(r["id"], str) or not re.fullmatch(pattern, r["id"]):
            raise InputError(f"{path}: record {i}: id {r['id']!r} does not match {pattern}")
        if r["id"] in seen:
            raise InputError(f"{path}: record {i}: duplicate id {r['id']!r}")
        seen.add(r["id"])


def _check_text(path, i, r, key, max_chars=2000) -> None:
    v = r[key]
    if not isinstance(v, str) or not v.strip():
        raise InputError(f"{path}: record {i} (id={r['id']}): field {key!r} must be non-empty text")
    if len(v) > max_chars:
        raise InputError(f"{path}: record {i} (id={r['id']}): field {key!r} has {len(v)} characters (max {max_chars})")


def load_self_instruct(path) -> list[dict]:
    records = read_jsonl(path, required=("id", "instruction"))
    _check_ids(path, records, r"si-\d{3,}")
    for i, r in enumerate(records, 1):
        _check_text(path, i, r, "instruction")
    return records


def load_question_types(path) -> list[dict]:
    records = read_jsonl(path, required=("id", "name", "description", "examples", "topics"))
    _check_ids(path, records, r"rt-\d{2}")
    for i, r in enumerate(records, 1):
        _check_text(path, i, r, "description")
        ex = r["examples"]
        if not isinstance(ex, list) or not ex or not all(isinstance(q, str) and q.strip() for q in ex):
            raise InputError(f"{path}: record {i} (id={r['id']}): 'examples' must be a non-empty list of questions")
        tp = r["topics"]
        if not isinstance(tp, list) or not tp or not all(isinstance(t, str) and 0 < len(t.split()) <= 8 for t in tp):
            raise InputError(f"{path}: record {i} (id={r['id']}): 'topics' must be a non-empty list of short topics")
    return records
