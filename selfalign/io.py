"""File I/O shared by every stage: atomic writes and JSONL with errors that name file and line.

Every output goes through a temp file in the same folder followed by os.replace, so a killed
process leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


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


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
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
            yield obj


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file; a missing file or bad YAML is an InputError naming the file (and line)."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML: {e}") from None


def read_jsonl(path: str | os.PathLike, *, required: Iterable[str] = (), allow_empty: bool = False) -> list[dict]:
    """Read a JSONL file; every record must have the `required` keys."""
    required = tuple(required)
    records = []
    for i, obj in enumerate(iter_jsonl(path), 1):
        missing = [k for k in required if k not in obj]
        if missing:
            raise InputError(f"{path}: record {i} (id={obj.get('id', '?')}) lacks field(s) {', '.join(missing)}")
        records.append(obj)
    if not records and not allow_empty:
        raise InputError(f"{path}: no records (the file is empty)")
    return records
