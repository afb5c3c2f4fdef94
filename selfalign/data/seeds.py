"""Human-written seed data under data/seeds/: self-instruct instructions and red-teaming question types.

The same rules as for principles/*.yaml: a field not listed below is an error (never dropped
silently), and an error names the file and the line it is on (blank lines count).
"""
from __future__ import annotations

import re

from selfalign.core.files import InputError, read_jsonl_lines, where

SELF_INSTRUCT_FIELDS = ("id", "instruction")
QUESTION_TYPE_FIELDS = ("id", "name", "description", "examples", "topics")


def _check_ids(path, records: list[tuple[int, dict]], pattern: str) -> None:
    seen: dict[str, int] = {}
    for line, r in records:
        if not isinstance(r["id"], str) or not re.fullmatch(pattern, r["id"]):
            raise InputError(f"{path}:{line}: id {r['id']!r} does not match {pattern}")
        if r["id"] in seen:
            raise InputError(f"{path}:{line}: duplicate id {r['id']!r} (first on line {seen[r['id']]})")
        seen[r["id"]] = line


def _check_text(path, line, r, key, max_chars=2000) -> None:
    v = r[key]
    if not isinstance(v, str) or not v.strip():
        raise InputError(f"{where(path, line, r)}: field {key!r} must be non-empty text")
    if len(v) > max_chars:
        raise InputError(f"{where(path, line, r)}: field {key!r} has {len(v)} characters (max {max_chars})")


def load_self_instruct(path) -> list[dict]:
    records = read_jsonl_lines(path, required=SELF_INSTRUCT_FIELDS, allowed=SELF_INSTRUCT_FIELDS)
    _check_ids(path, records, r"si-\d{3,}")
    for line, r in records:
        _check_text(path, line, r, "instruction")
    return [r for _, r in records]


def load_question_types(path) -> list[dict]:
    records = read_jsonl_lines(path, required=QUESTION_TYPE_FIELDS, allowed=QUESTION_TYPE_FIELDS)
    _check_ids(path, records, r"rt-\d{2}")
    for line, r in records:
        _check_text(path, line, r, "name", max_chars=100)
        _check_text(path, line, r, "description")
        ex = r["examples"]
        if not isinstance(ex, list) or not ex or not all(isinstance(q, str) and q.strip() for q in ex):
            raise InputError(f"{where(path, line, r)}: 'examples' must be a non-empty list of questions")
        tp = r["topics"]
        if not isinstance(tp, list) or not tp or not all(isinstance(t, str) and 0 < len(t.split()) <= 8 for t in tp):
            raise InputError(f"{where(path, line, r)}: 'topics' must be a non-empty list of short topics")
    return [r for _, r in records]
