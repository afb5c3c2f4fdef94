"""The human-written alignment text under principles/: the principles and the worked exemplars.

Both files are mappings keyed by number (as quoted strings, so that DVC can track them as params and
`dvc params diff` names the edited entry). Loading checks every entry and raises InputError naming
the file, the line and the entry; an ablation (`exclude`) drops principles from the list and from every
exemplar's `follows`, keeping the others' numbers so citations stay comparable across runs.

A thought cites a principle as "N (name)" (`CITATION`), so the loader accepts only what that pattern
reads back: numbers 1 to 999, names of at most 40 characters without parentheses, and names that stay
distinct once normalised the way citations are matched (`norm_name`: case, hyphens, spaces).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from selfalign.core.files import InputError, check_fields, read_yaml_lines
from selfalign.core.hashing import fingerprint

PRINCIPLE_FIELDS = ("name", "text")
EXEMPLAR_FIELDS = ("query", "thought", "follows", "answer")
MAX_NAME_CHARS = 40
# "8 (knowledge recitation)": a principle cited by number and name.
CITATION = re.compile(r"\b(\d{1,3}) \(([^()\n]{1,%d})\)" % MAX_NAME_CHARS)
KEY = re.compile(r"[1-9][0-9]*")


def norm_name(name: str) -> str:
    """How a cited name is matched to a principle: case, hyphens and runs of spaces do not count."""
    return " ".join(name.lower().replace("-", " ").split())


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


def _entries(path: Path, top: str):
    """(entries, line_of) of the file's one top-level mapping."""
    doc, line_of = read_yaml_lines(path)
    if not isinstance(doc, dict) or set(doc) != {top}:
        raise InputError(f"{path}: expected one top-level key {top!r}, found "
                         f"{sorted(map(str, doc)) if isinstance(doc, dict) else type(doc).__name__}")
    entries = doc[top]
    if not isinstance(entries, dict) or not entries:
        raise InputError(f"{path}:{line_of(doc, top)}: {top!r} must be a non-empty mapping from number to entry")
    return entries, lambda key: line_of(entries, key)


def _check_keys(path: Path, top: str, entries: dict, line_of) -> list[int]:
    """The entries' numbers. YAML reads an unquoted 3 as a number and "3" as text; either is accepted, but
    not both in one file: DVC, which tracks the file as params, sorts the keys and fails on a mix (and
    "5" beside 5 would be one entry written twice)."""
    keys = list(entries)
    for key in keys:
        where = f"{path}:{line_of(key)}: {top} entry {key!r}"
        if isinstance(key, bool) or not isinstance(key, (int, str)) or not KEY.fullmatch(str(key)):
            raise InputError(f"{where}: the key must be a positive whole number written in digits, such as \"3\"")
    first = keys[0]
    for key in keys[1:]:
        if type(key) is not type(first):
            spell = lambda k: f'"{k}" (quoted)' if isinstance(k, str) else f"{k} (unquoted)"  # noqa: E731
            raise InputError(f"{path}:{line_of(key)}: {top} entry {spell(key)} is written unlike entry {spell(first)} "
                             f"on line {line_of(first)}; write every key the same way, quoted (\"{key}\":), because DVC "
                             "tracks this file as params and cannot sort a mix of numbers and text")
    numbers = [int(k) for k in keys]
    seen: dict[int, object] = {}
    for key, n in zip(keys, numbers):
        if n in seen:
            raise InputError(f"{path}:{line_of(key)}: {top} entry {key!r} has the same number as entry {seen[n]!r} "
                             f"on line {line_of(seen[n])}")
        seen[n] = key
    return numbers


def _check_entry(path: Path, top: str, key, line, entry, fields: tuple[str, ...]) -> None:
    where = f"{path}:{line}: {top} entry {key!r}"
    if not isinstance(entry, dict):
        raise InputError(f"{where}: must be a mapping with fields {', '.join(fields)}")
    check_fields(where, entry, required=fields, allowed=fields)
    for f in fields:
        if f != "follows" and (not isinstance(entry[f], str) or not entry[f].strip()):
            raise InputError(f"{where}: field {f!r} must be non-empty text")


def _check_citable(where: str, number: int, name: str) -> None:
    """A name the loader accepts must come back out of a thought that cites it."""
    if number > 999:
        raise InputError(f"{where}: number {number} cannot be cited: a thought cites a principle as 'N (name)' with N of "
                         "at most 3 digits")
    if "(" in name or ")" in name:
        raise InputError(f"{where}: name {name!r} must not contain parentheses (a thought cites it as '{number} (name)')")
    if len(name) > MAX_NAME_CHARS:
        raise InputError(f"{where}: name {name!r} has {len(name)} characters; a thought cites it as '{number} (name)', "
                         f"and a name over {MAX_NAME_CHARS} characters cannot be read back from one")
    found = CITATION.findall(f"I will follow {number} ({name}).")
    if found != [(str(number), name)]:  # what the checks above should already have caught
        raise InputError(f"{where}: '{number} ({name})' does not read back as a citation")


def load_principles(path: str | Path, exclude: list[int] = ()) -> list[Principle]:
    path = Path(path)
    entries, line_of = _entries(path, "principles")
    keys = _check_keys(path, "principles", entries, line_of)
    names: dict[str, object] = {}
    for k, (key, v) in zip(keys, entries.items()):
        _check_entry(path, "principles", key, line_of(key), v, PRINCIPLE_FIELDS)
        where = f"{path}:{line_of(key)}: principles entry {key!r}"
        name = " ".join(v["name"].split())
        _check_citable(where, k, name)
        norm = norm_name(name)
        if norm in names:
            other = names[norm]
            raise InputError(f"{where}: name {name!r} reads the same in a citation as the name of principle {other!r} "
                             f"on line {line_of(other)} ({entries[other]['name']!r}): names must differ in more than case, "
                             "hyphens and spaces")
        names[norm] = key
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
    entries, line_of = _entries(path, "exemplars")
    keys = _check_keys(path, "exemplars", entries, line_of)
    active = {p.id for p in principles}
    known = all_ids if all_ids is not None else active
    out = []
    for k, (key, v) in zip(keys, entries.items()):
        _check_entry(path, "exemplars", key, line_of(key), v, EXEMPLAR_FIELDS)
        where = f"{path}:{line_of(key)}: exemplars entry {key!r}"
        follows = v["follows"]
        # type() and not isinstance(): YAML's true is a bool, and a bool is an int to Python.
        if not isinstance(follows, list) or not follows or not all(type(i) is int for i in follows):
            raise InputError(f"{where}: 'follows' must be a non-empty list of principle numbers, such as [8, 2] "
                             f"(got {follows!r})")
        if len(set(follows)) != len(follows):
            raise InputError(f"{where}: 'follows' lists a principle twice ({follows!r})")
        bad = [i for i in follows if i not in known]
        if bad:
            raise InputError(f"{where}: 'follows' cites {bad}, not defined in the principles file")
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


def load_alignment_text(principles_path: str | Path, exemplars_path: str | Path, exclude=()) -> tuple[list[Principle], list[Exemplar], str]:
    """(active principles, exemplars, version hash) for a run that leaves out `exclude`."""
    every = load_principles(principles_path)
    active = load_principles(principles_path, list(exclude)) if exclude else every
    exemplars = load_exemplars(exemplars_path, active, all_ids={p.id for p in every})
    return active, exemplars, version(active, exemplars)
