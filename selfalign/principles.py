"""The human-written alignment text under principles/: the principles and the worked exemplars.

Both files are mappings keyed by number (as quoted strings, so that DVC can track them as params and
`dvc params diff` names the edited entry). Loading checks every entry and raises InputError naming
the file and the entry; an ablation (`exclude`) drops principles from the list and from every
exemplar's `follows`, keeping the others' numbers so citations stay comparable across runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .io import InputError, read_yaml
from .records import fingerprint

PRINCIPLE_FIELDS = ("name", "text")
EXEMPLAR_FIELDS = ("query", "thought", "follows", "answer")


@dataclass(frozen=True)
class Principle:
    id: int
    name: str
    text: str


@dataclass(frozen=True)
class Exemplar:
    id: int
    query: str
    thought: str
    follows: tuple[int, ...]
    answer: str


def _entries(path: Path, top: str) -> dict:
    doc = read_yaml(path)
    if not isinstance(doc, dict) or set(doc) != {top}:
        raise InputError(f"{path}: expected one top-level key {top!r}, found {sorted(doc) if isinstance(doc, dict) else type(doc).__name__}")
    entries = doc[top]
    if not isinstance(entries, dict) or not entries:
        raise InputError(f"{path}: {top!r} must be a non-empty mapping from number to entry")
    return entries


def _check_entry(path: Path, top: str, key, entry, fields: tuple[str, ...]) -> int:
    where = f"{path}: {top} entry {key!r}"
    # YAML reads an unquoted 3 as an int and "3" as a str: the YAML loader sees no duplicate either way,
    # so accept both spellings and catch a number used twice below.
    if not str(key).isdigit() or int(key) < 1:
        raise InputError(f"{where}: key must be a positive number")
    if not isinstance(entry, dict):
        raise InputError(f"{where}: must be a mapping with fields {', '.join(fields)}")
    unknown = sorted(set(entry) - set(fields))
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(fields)})")
    missing = [f for f in fields if f not in entry]
    if missing:
        raise InputError(f"{where}: missing field(s) {', '.join(map(repr, missing))}")
    for f in fields:
        if f != "follows" and (not isinstance(entry[f], str) or not entry[f].strip()):
            raise InputError(f"{where}: field {f!r} must be non-empty text")
    return int(key)


def _unique(path: Path, top: str, keys: list[int]) -> None:
    seen = set()
    for k in keys:
        if k in seen:
            raise InputError(f"{path}: {top} entry {k} appears twice (duplicate id)")
        seen.add(k)


def load_principles(path: str | Path, exclude: list[int] = ()) -> list[Principle]:
    path = Path(path)
    entries = _entries(path, "principles")
    keys = [_check_entry(path, "principles", k, v, PRINCIPLE_FIELDS) for k, v in entries.items()]
    _unique(path, "principles", keys)
    names = {}
    for k, v in zip(keys, entries.values()):
        name = " ".join(v["name"].lower().split())
        if name in names:
            raise InputError(f"{path}: principles entry {k}: name {v['name']!r} is also the name of principle {names[name]}")
        if "(" in name or ")" in name:
            raise InputError(f"{path}: principles entry {k}: name {v['name']!r} must not contain parentheses")
        names[name] = k
    unknown = sorted(set(exclude) - set(keys))
    if unknown:
        raise InputError(f"params.yaml: principles.exclude lists {unknown}, which {path} does not define")
    out = [Principle(k, " ".join(v["name"].split()), " ".join(v["text"].split()))
           for k, v in zip(keys, entries.values()) if k not in set(exclude)]
    if not out:
        raise InputError(f"params.yaml: principles.exclude leaves no principle of {path}")
    return sorted(out, key=lambda p: p.id)


def load_exemplars(path: str | Path, principles: list[Principle], *, all_ids: set[int] | None = None) -> list[Exemplar]:
    """Exemplars whose `follows` refer to `principles` (excluded ones are dropped from `follows`).

    `all_ids`: every principle number the principles file defines, so that an exemplar citing an
    excluded principle is not mistaken for one citing a principle that does not exist.
    """
    path = Path(path)
    entries = _entries(path, "exemplars")
    keys = [_check_entry(path, "exemplars", k, v, EXEMPLAR_FIELDS) for k, v in entries.items()]
    _unique(path, "exemplars", keys)
    active = {p.id for p in principles}
    known = all_ids if all_ids is not None else active
    out = []
    for k, v in zip(keys, entries.values()):
        follows = v["follows"]
        if not isinstance(follows, list) or not follows or not all(isinstance(i, int) for i in follows):
            raise InputError(f"{path}: exemplars entry {k}: 'follows' must be a non-empty list of principle numbers")
        bad = [i for i in follows if i not in known]
        if bad:
            raise InputError(f"{path}: exemplars entry {k}: 'follows' cites {bad}, not defined in the principles file")
        out.append(Exemplar(k, v["query"].strip(), " ".join(v["thought"].split()),
                            tuple(i for i in follows if i in active), v["answer"].strip()))
    return sorted(out, key=lambda e: e.id)


def citation(ids, principles: list[Principle]) -> str:
    """'8 (knowledge recitation), 2 (informative) and 6 (multi-aspect)'."""
    names = {p.id: p.name for p in principles}
    parts = [f"{i} ({names[i]})" for i in ids]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def version(principles: list[Principle], exemplars: list[Exemplar]) -> str:
    """Content hash of the principles and exemplars a response was generated under."""
    return fingerprint({"principles": [vars(p) for p in principles],
                        "exemplars": [vars(e) | {"follows": list(e.follows)} for e in exemplars]})[:16]


def load(principles_path: str | Path, exemplars_path: str | Path, exclude=()) -> tuple[list[Principle], list[Exemplar], str]:
    """(active principles, exemplars, version hash) for a run that leaves out `exclude`."""
    every = load_principles(principles_path)
    active = load_principles(principles_path, list(exclude)) if exclude else every
    exemplars = load_exemplars(exemplars_path, active, all_ids={p.id for p in every})
    return active, exemplars, version(active, exemplars)
