"""File I/O shared by every stage: atomic writes and JSONL/YAML with errors that name file and line.

Every output goes through a temp file in the same folder followed by os.replace, so a killed
process leaves either the old file or the new one, never half of one. Inside `replace_together()`
the renames wait until the block ends, so a step's outputs are replaced together or not at all
(a full disk while writing the third of four files leaves all four as they were).
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import os
import tempfile
from collections.abc import Hashable
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import yaml


class InputError(ValueError):
    """Bad input: the message names the file and, where it can, the line or key."""


class DatasetValidationError(Exception):
    """A batch failed validation; str(e) is the full human-readable message.

    Attributes: path, rule, dataset, checks (names of the failed checks, in message order).
    """

    def __init__(self, message: str, *, path: str, rule: str, dataset: str, checks: list[str] | None = None):
        super().__init__(message)
        self.path = path
        self.rule = rule
        self.dataset = dataset
        self.checks = list(checks or [])


class OutputError(Exception):
    """An output could not be written (a full disk, no permission): the message names the file."""


# The temp files of the open `replace_together()` block, each with the path it will replace.
_STAGED: contextvars.ContextVar[list | None] = contextvars.ContextVar("selfalign_staged", default=None)


def _write_failed(path: Path, e: OSError, staged: list | None) -> OutputError:
    what = "none of this step's outputs were replaced" if staged is not None else "the previous file, if any, is unchanged"
    return OutputError(f"{path}: could not write: {e.strerror or e} (errno {e.errno}); {what}")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None):
    path = Path(path)
    staged = _STAGED.get()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise _write_failed(path, e, staged) from None
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if staged is None:
            os.replace(tmp, path)
        else:
            staged.append((tmp, path))
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _write_failed(path, e, staged) from None
        raise


@contextlib.contextmanager
def replace_together():
    """Writes through atomic_open inside the block replace their files together when the block ends;
    if anything in the block fails, none of them does (their temp files are removed)."""
    staged: list[tuple[str, Path]] = []
    token = _STAGED.set(staged)
    try:
        yield
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    finally:
        _STAGED.reset(token)
    # Renames write no data, so a full disk cannot stop them half way.
    for k, (tmp, path) in enumerate(staged):
        try:
            os.replace(tmp, path)
        except OSError as e:
            for t, _ in staged[k:]:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(t)
            raise OutputError(f"{path}: could not be put in place: {e.strerror or e} (errno {e.errno}); "
                              f"{k} of this step's {len(staged)} outputs were already replaced") from None


@contextlib.contextmanager
def immediately():
    """Inside a `replace_together()` block: writes that are not outputs (a rejected batch kept for
    inspection) land at once, even when the block then fails."""
    token = _STAGED.set(None)
    try:
        yield
    finally:
        _STAGED.reset(token)


def dumps(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=False)


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    n = 0
    with atomic_open(path) as f:
        for r in records:
            f.write(dumps(r) + "\n")
            n += 1
    return n


def write_csv(path: str | os.PathLike, header: list[str], rows: Iterable[list]) -> None:
    """A CSV file (as DVC plots read them), written atomically."""
    import csv

    with atomic_open(path, newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f, ensure_ascii=False, indent=2, sort_keys=True)
        f.write("\n")


def check_fields(where: str, record: dict, *, required: Iterable[str] = (), allowed: Iterable[str] | None = None) -> None:
    """The one rule for hand-written records (seed lines, principle and exemplar entries): a field
    that is not `allowed` is an error (a misspelt or foreign field is never dropped silently), and so
    is a missing `required` one. `where` names the file and line (and the record)."""
    if allowed is not None:
        allowed = tuple(allowed)
        unknown = sorted((k for k in record if k not in allowed), key=str)
        if unknown:
            raise InputError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(allowed)})")
    missing = [k for k in required if k not in record]
    if missing:
        raise InputError(f"{where}: missing field(s) {', '.join(map(repr, missing))}")


def iter_jsonl_lines(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """(line number, record) for every non-blank line: errors count lines of the file, not records."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line.rstrip("\r\n"))  # so that an error's column is on this line
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{lineno}: malformed JSON ({e.msg}, column {e.colno})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def where(path: str | os.PathLike, line: int, record: dict | None = None) -> str:
    """'data/seeds/x.jsonl:6 (id=rt-04)': how an error names one JSONL record."""
    rid = record.get("id") if isinstance(record, dict) else None
    return f"{path}:{line}" + (f" (id={rid})" if isinstance(rid, str) and rid else "")


def read_jsonl_lines(path: str | os.PathLike, *, required: Iterable[str] = (), allowed: Iterable[str] | None = None,
                     allow_empty: bool = False) -> list[tuple[int, dict]]:
    """(line number, record) pairs; every record has the `required` fields and, if `allowed` is given,
    no others."""
    required = tuple(required)
    records = []
    for lineno, obj in iter_jsonl_lines(path):
        check_fields(where(path, lineno, obj), obj, required=required, allowed=allowed)
        records.append((lineno, obj))
    if not records and not allow_empty:
        raise InputError(f"{path}: no records (the file is empty)")
    return records


def read_jsonl(path: str | os.PathLike, *, required: Iterable[str] = (), allow_empty: bool = False) -> list[dict]:
    """Read a JSONL file; every record must have the `required` keys."""
    return [obj for _, obj in read_jsonl_lines(path, required=required, allow_empty=allow_empty)]


class _BadKey(yaml.constructor.ConstructorError):
    """A mapping key that a safe load would drop or cannot use (written twice, or not a scalar)."""


def _yaml_loader(lines: dict[int, dict]):
    """A safe YAML loader that refuses a key written twice (PyYAML keeps the last one silently) and
    records the line of every mapping key in `lines` (by id of the mapping)."""

    class Loader(yaml.SafeLoader):
        pass

    def bad_key(message, node):
        return _BadKey(None, None, message, node.start_mark)

    def construct_map(loader, node):
        data: dict = {}
        yield data
        loader.flatten_mapping(node)
        at: dict = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                raise bad_key(f"a key must be a number or text, not {type(key).__name__}", key_node)
            if key in at:
                raise bad_key(f"key {key!r} appears twice (first on line {at[key]})", key_node)
            at[key] = key_node.start_mark.line + 1
            data[key] = loader.construct_object(value_node, deep=True)
        lines[id(data)] = at

    Loader.add_constructor("tag:yaml.org,2002:map", construct_map)
    return Loader


def read_yaml_lines(path: str | os.PathLike) -> tuple[Any, Callable[[dict, Any], int | None]]:
    """(document, line_of): `line_of(mapping, key)` is the line where `key` is written in `mapping`."""
    lines: dict[int, dict] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
        doc = yaml.load(text, Loader=_yaml_loader(lines))  # noqa: S506 (a SafeLoader subclass)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except _BadKey as e:
        raise InputError(f"{path}:{e.problem_mark.line + 1}: {e.problem}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f":{mark.line + 1}" if mark is not None else ""
        what = " ".join(str(e.problem or e.context or "").split())
        column = f", column {mark.column + 1}" if mark is not None else ""
        raise InputError(f"{path}{at}: not valid YAML ({what}{column})") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    return doc, lambda mapping, key: lines.get(id(mapping), {}).get(key)


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file; a missing file, bad YAML or a key written twice is an InputError naming the file and line."""
    return read_yaml_lines(path)[0]
