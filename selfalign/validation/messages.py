"""Failure messages: each failed check with the number of offending rows and up to MAX_EXAMPLES of them.

    data/queries/queries.jsonl (rule collect_queries): 1 row fails check 'query: word count in [3, 150]':
      row 4 id=q-0123456789abcdef query='Why?'

"row N" is the N-th record of the batch, i.e. line N of the file (and of `<path>.invalid.jsonl`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandera.pandas as pa

from selfalign.validation.checks import FRAME_CHECK_FIELDS, is_null

MAX_EXAMPLES = 5  # offending rows shown per failed check
VALUE_CHARS = 80  # offending values are shortened to about this many characters


@dataclass
class Failure:
    check: str
    n_rows: int | None  # None: a check on the whole batch
    lines: list[str]
    detail: str = ""


_ABSENT = object()


def short(value: Any) -> str:
    if value is _ABSENT:
        return "<missing>"
    if isinstance(value, str) and len(value) > VALUE_CHARS - 5:
        value = value[: VALUE_CHARS - 5] + "..."
    text = repr(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 3] + "..."


def _row_line(records: list[dict], i: int, fields: tuple[str, ...]) -> str:
    rec = records[i]
    rid = rec.get("id", _ABSENT)
    plain = isinstance(rid, str) and rid.isprintable() and " " not in rid and len(rid) <= VALUE_CHARS
    parts = [f"row {i + 1}", f"id={rid}" if plain else f"id={short(rid)}"]
    parts += [f"{f}={short(rec.get(f, _ABSENT))}" for f in fields if f != "id"]
    return "  " + " ".join(parts)


def example_lines(records: list[dict], rows: list[int], fields: tuple[str, ...], total: int | None = None) -> list[str]:
    lines = [_row_line(records, i, fields) for i in rows[:MAX_EXAMPLES]]
    more = (total if total is not None else len(rows)) - len(lines)
    if more > 0:
        lines.append(f"  ... and {more} more")
    return lines


def format_failures(path: str, rule: str, failures: list[Failure]) -> str:
    blocks = []
    for f in failures:
        where = f"{path} (rule {rule})"
        if f.n_rows is None:
            head = f"{where}: check '{f.check}' fails{f.detail}"
        else:
            rows = "1 row fails" if f.n_rows == 1 else f"{f.n_rows} rows fail"
            head = f"{where}: {rows} check '{f.check}'{f.detail}"
        blocks.append("\n".join([head + (":" if f.lines else "")] + f.lines))
    return "\n".join(blocks)


def pandera_failures(err: pa.errors.SchemaErrors, records: list[dict], model) -> list[Failure]:
    field_order = {name: k for k, name in enumerate(model.to_schema().columns)}
    groups: dict[str, dict] = {}
    for case in err.failure_cases.to_dict("records"):
        check, column, value = str(case["check"]), case["column"], case["failure_case"]
        index = case["index"]
        index = None if is_null(index) else int(index)
        if check == "column_in_schema":  # strict: a field the model does not know
            label, rank, fields = f"{value}: unknown field (strict schema)", (0, 0), (str(value),)
            rows = [i for i, r in enumerate(records) if value in r]
        elif check == "column_in_dataframe":  # a required field absent from every record
            label, rank, fields = f"{value}: field present", (0, 1), (str(value),)
            rows = list(range(len(records)))
        elif check in FRAME_CHECK_FIELDS:
            label, rank, fields = check, (2, 0), FRAME_CHECK_FIELDS[check]
            rows = [index] if index is not None else []
        else:
            name = "present and not null" if check == "not_nullable" else check
            label, rank, fields = f"{column}: {name}", (1, field_order.get(column, 99)), (str(column),)
            rows = [index] if index is not None else []
        g = groups.setdefault(label, {"rank": rank, "fields": fields, "rows": set(), "other": []})
        g["rows"].update(rows)
        if not rows and value is not None:
            g["other"].append(str(value))
    failures = []
    for label, g in sorted(groups.items(), key=lambda kv: kv[1]["rank"]):
        rows = sorted(g["rows"])
        detail = f" ({'; '.join(g['other'][:3])})" if g["other"] else ""
        failures.append(Failure(label, len(rows) if rows else None, example_lines(records, rows, g["fields"]), detail))
    return failures
