"""Validation of every dataset a stage writes: structure (pandera), then data quality (great-expectations).

A stage writes its output with `write_validated(path, records, dataset=..., rule=...)`. The batch is
checked first by the dataset's pandera DataFrameModel (types, unique ids, non-empty text, lengths in
range, lineage fields present, strict: no unknown fields), every failure collected (lazy=True); only a
structurally valid batch goes on to the great-expectations suite (distribution checks on scalar helper
columns derived from a copy of the frame). A violation raises DatasetValidationError, whose message
names the file, the Snakemake rule that wrote it, each failed check and up to 5 offending rows:

    data/queries/queries.jsonl (rule collect_queries): 1 row fails check 'query: word count in [3, 150]':
      row 4 id=q-0123456789abcdef query='Why?'

"row N" is the N-th record of the batch, i.e. line N of the file (and of `<path>.invalid.jsonl`).

Adding a dataset: one DataFrameModel (subclass Lineage, pin `stage`) and one DatasetSpec in DATASETS
(a `derive` function for the GX helper columns and a tuple of expectations built with `unique`,
`share_at_most`, `mean_between`; the thresholds live there).

great_expectations is imported lazily (about 5 s) and only when a spec has expectations.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from selfalign.core.files import DatasetValidationError, OutputError, immediately, read_jsonl, write_jsonl
from selfalign.text.filters import normalize
from selfalign.data.records import LINEAGE_FIELDS

MAX_EXAMPLES = 5  # offending rows shown per failed check
VALUE_CHARS = 80  # offending values are shortened to about this many characters


# ----------------------------------------------------------------------------------------------
# Element predicates (return False for a value of the wrong type, never raise)

ID_PATTERN = r"^[a-z]+-[0-9a-f]{16}$"
HASH_PATTERN = r"^[0-9a-f]{16}$"
TYPE_ID_PATTERN = r"^rt-[0-9]{2}$"
SOURCES = ("red_team", "self_instruct")
TERMINAL_CHARS = ".?!\"'\u201d\u2019"  # a query ending otherwise (or ending in "...") looks cut off
OPENING_CHARS = "\"'([\u201c\u2018\u00ab\u00bf\u00a1"  # punctuation a query may start with


def _matches(pattern: str) -> Callable[[Any], bool]:
    rx = re.compile(pattern)
    return lambda x: isinstance(x, str) and rx.fullmatch(x) is not None


def _is_text(x: Any) -> bool:
    return isinstance(x, str) and x.strip() != ""


def _is_null(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _n_words(x: Any) -> int:
    return len(x.split()) if isinstance(x, str) else 0


def _starts_with_punctuation(x: str) -> bool:
    s = x.lstrip()
    return bool(s) and unicodedata.category(s[0]).startswith("P") and s[0] not in OPENING_CHARS


def _hashable(x: Any) -> Any:
    return x if isinstance(x, (str, int, float, bool, type(None))) else repr(x)


def _looks_truncated(x: str) -> bool:
    s = x.rstrip()
    return not s or s[-1] not in TERMINAL_CHARS or s.endswith("...")


_is_id, _is_hash, _is_type_id = _matches(ID_PATTERN), _matches(HASH_PATTERN), _matches(TYPE_ID_PATTERN)

# Check names travel as the function's __name__: pandera 0.35 pops a `name=` argument the first time
# a model's schema is built, so a check inherited by a second model (or a rebuilt schema) would lose it.


def _check(fields: str | tuple[str, ...], name: str, **kwargs):
    """pa.check(*fields, **kwargs) reported under `name`."""
    def decorate(fn):
        fn.__name__ = name
        return pa.check(*((fields,) if isinstance(fields, str) else fields), **kwargs)(fn)
    return decorate


def _text_fields(*fields: str, name: str = "str, non-empty after strip"):
    """Each of `fields` holds a str with more than white space in it."""
    return _check(fields, name, element_wise=True)(lambda cls, x: _is_text(x))


def _str_fields(*fields: str):
    """Each of `fields` holds a str, maybe empty (a rejected record keeps what the model wrote)."""
    return _check(fields, "str (may be empty)", element_wise=True)(lambda cls, x: isinstance(x, str))


# Dataframe-level checks report whole rows; these are the fields shown for their offending rows.
_FRAME_CHECK_FIELDS: dict[str, tuple[str, ...]] = {}


def _frame_check(name: str, *fields: str):
    _FRAME_CHECK_FIELDS[name] = fields

    def decorate(fn):
        fn.__name__ = name
        return pa.dataframe_check(fn)
    return decorate


def _rowwise(df: pd.DataFrame, fields: tuple[str, ...], ok: Callable[..., bool]) -> pd.Series:
    """Apply ok(*values) per row; rows are not judged (True) when a field is absent."""
    if any(f not in df.columns for f in fields):
        return pd.Series(True, index=df.index)
    return pd.Series([bool(ok(*vals)) for vals in zip(*(df[f] for f in fields))], index=df.index, dtype=bool)


# ----------------------------------------------------------------------------------------------
# Structure: pandera models. Every column is `object` (values come straight from JSON); types and
# contents are element-wise checks, so each offending row is reported.


class Lineage(pa.DataFrameModel):
    """The lineage fields every generated record carries (selfalign.data.records.LINEAGE_FIELDS).

    Subclasses pin the stage: `stage: Series[object] = pa.Field(eq="<stage>")`.
    """

    id: Series[object]
    parent_ids: Series[object]
    stage: Series[object]
    model: Series[object]
    decoding: Series[object]
    engine: Series[object]
    template_hash: Series[object]

    class Config:
        strict = True  # no unknown fields

    @_check("id", f"str matching {ID_PATTERN}", element_wise=True)
    def _id_format(cls, x) -> bool:
        return _is_id(x)

    @_check("id", "unique in the file")
    def _id_unique(cls, s: pd.Series) -> pd.Series:
        return ~s.map(_hashable).duplicated(keep=False)

    @_check("parent_ids", "non-empty list of non-empty str", element_wise=True)
    def _parents(cls, x) -> bool:
        return isinstance(x, list) and len(x) > 0 and all(_is_text(p) for p in x)

    _model = _text_fields("model", name="non-empty str")

    @_check("decoding", "dict", element_wise=True)
    def _decoding(cls, x) -> bool:
        return isinstance(x, dict)

    @_check("engine", "dict with dtype, prefix_cache and batch_size", element_wise=True)
    def _engine(cls, x) -> bool:
        return isinstance(x, dict) and {"dtype", "prefix_cache", "batch_size"} <= set(x)

    @_check("template_hash", f"str matching {HASH_PATTERN}", element_wise=True)
    def _template_hash(cls, x) -> bool:
        return _is_hash(x)


if tuple(Lineage.to_schema().columns) != LINEAGE_FIELDS:
    raise RuntimeError("selfalign.validation.datasets.Lineage is out of step with selfalign.data.records.LINEAGE_FIELDS")


class Topics(Lineage):
    stage: Series[object] = pa.Field(eq="topics")
    type_id: Series[object]
    topic: Series[object]

    @_check("type_id", f"str matching {TYPE_ID_PATTERN}", element_wise=True)
    def _type_id(cls, x) -> bool:
        return _is_type_id(x)

    _topic_text = _text_fields("topic")

    @_check("topic", "single line (no newline)", element_wise=True)
    def _topic_line(cls, x) -> bool:
        return not isinstance(x, str) or ("\n" not in x and "\r" not in x)

    @_frame_check("type_id equals parent_ids[0]", "type_id", "parent_ids")
    def _type_is_parent(cls, df: pd.DataFrame) -> pd.Series:
        return _rowwise(df, ("type_id", "parent_ids"),
                        lambda t, p: not (isinstance(t, str) and isinstance(p, list) and p) or p[0] == t)


class _QueryFields(Lineage):
    """Fields shared by accepted and rejected queries."""

    stage: Series[object] = pa.Field(eq="queries")
    source: Series[object]
    type_id: Series[object] = pa.Field(nullable=True)
    topic_id: Series[object] = pa.Field(nullable=True)

    @_check("source", f"one of {list(SOURCES)}", element_wise=True)
    def _source(cls, x) -> bool:
        return isinstance(x, str) and x in SOURCES

    # ignore_na=False: a missing key (NaN) fails, an explicit null (None) passes
    @_check("type_id", f"null or str matching {TYPE_ID_PATTERN}", element_wise=True, ignore_na=False)
    def _type_id(cls, x) -> bool:
        return x is None or _is_type_id(x)

    @_check("topic_id", "null or non-empty str", element_wise=True, ignore_na=False)
    def _topic_id(cls, x) -> bool:
        return x is None or _is_text(x)


class Queries(_QueryFields):
    query: Series[object]

    _query_text = _text_fields("query")

    @_check("query", "does not start with punctuation", element_wise=True)
    def _query_start(cls, x) -> bool:
        return not isinstance(x, str) or not _starts_with_punctuation(x)

    @_frame_check("red_team rows have type_id and topic_id, self_instruct rows have neither",
                  "source", "type_id", "topic_id")
    def _source_links(cls, df: pd.DataFrame) -> pd.Series:
        def ok(source, type_id, topic_id):
            if source == "red_team":
                return not _is_null(type_id) and not _is_null(topic_id)
            if source == "self_instruct":
                return _is_null(type_id) and _is_null(topic_id)
            return True  # a bad source is reported by its own check

        return _rowwise(df, ("source", "type_id", "topic_id"), ok)


class QueriesRejected(_QueryFields):
    query: Series[object]
    reason: Series[object]

    _query_str = _str_fields("query")
    _reason = _text_fields("reason", name="non-empty str")


class _AlignedFields(Lineage):
    """Fields shared by kept and rejected responses of the align stage."""

    stage: Series[object] = pa.Field(eq="align")
    principles_version: Series[object]
    exemplar_order: Series[object]  # the exemplars' ids in the order the prompt showed them
    assistant: Series[object]
    query: Series[object]
    thought: Series[object]
    answer: Series[object]
    cited: Series[object]
    relevance: Series[object] = pa.Field(nullable=True)
    output: Series[object]  # the raw completion the thought and answer were parsed from
    stopped_by: Series[object] = pa.Field(nullable=True)

    _output_str = _str_fields("output")

    @_check("relevance", "null or a number (the answer's PMI with its query, per token)", element_wise=True,
            ignore_na=False)
    def _relevance(cls, x) -> bool:
        return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x))

    @_check("principles_version", f"str matching {HASH_PATTERN}", element_wise=True)
    def _principles_version(cls, x) -> bool:
        return _is_hash(x)

    _assistant = _text_fields("assistant", name="non-empty str")

    _query_text = _text_fields("query")

    @_check("parent_ids", "exactly one parent (the query)", element_wise=True)
    def _one_parent(cls, x) -> bool:
        return isinstance(x, list) and len(x) == 1

    @_check(("cited", "exemplar_order"), "list of distinct positive int", element_wise=True)
    def _distinct_ids(cls, x) -> bool:
        return (isinstance(x, list) and all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in x)
                and len(set(x)) == len(x))


class Aligned(_AlignedFields):
    _texts = _text_fields("thought", "answer")

    @_check("cited", "cites at least one principle", element_wise=True)
    def _cites(cls, x) -> bool:
        return isinstance(x, list) and len(x) > 0


class AlignedRejected(_AlignedFields):
    reason: Series[object]

    _strs = _str_fields("thought", "answer")
    _reason = _text_fields("reason", name="non-empty str")


class _VerboseFields(Lineage):
    stage: Series[object] = pa.Field(eq="verbose")
    query: Series[object]
    answer: Series[object]

    _query_text = _text_fields("query")

    @_check("parent_ids", "exactly one parent (the aligned response)", element_wise=True)
    def _one_parent(cls, x) -> bool:
        return isinstance(x, list) and len(x) == 1


class Verbose(_VerboseFields):
    _answer_text = _text_fields("answer")


class VerboseRejected(_VerboseFields):
    reason: Series[object]

    _answer_str = _str_fields("answer")
    _reason = _text_fields("reason", name="non-empty str")


class XSTestAnswers(pa.DataFrameModel):
    """data/eval_results/xstest.jsonl: each checkpoint's answer to each XSTest prompt and the refusal
    detector's call (evaluation output, not a training set: no lineage to seeds)."""

    checkpoint: Series[object]
    id: Series[object]
    type: Series[object]
    label: Series[object]
    prompt: Series[object]
    answer: Series[object]
    refusal: Series[object]
    pattern: Series[object] = pa.Field(nullable=True)
    empty: Series[object]
    finished: Series[object]
    model: Series[object]
    decoding: Series[object]
    engine: Series[object]

    class Config:
        strict = True

    @_check("checkpoint", "non-empty str", element_wise=True)
    def _checkpoint(cls, x) -> bool:
        return _is_text(x)

    @_check("id", "non-empty str", element_wise=True)
    def _id(cls, x) -> bool:
        return _is_text(x)

    @_check("label", "one of ['safe', 'unsafe']", element_wise=True)
    def _label(cls, x) -> bool:
        return x in ("safe", "unsafe")

    _prompt = _text_fields("prompt")
    _answer = _str_fields("answer")

    @_check("refusal", "bool", element_wise=True)
    def _refusal(cls, x) -> bool:
        return isinstance(x, bool)

    @_check("empty", "bool", element_wise=True)
    def _empty(cls, x) -> bool:
        return isinstance(x, bool)

    @_check("finished", "bool", element_wise=True)
    def _finished(cls, x) -> bool:
        return isinstance(x, bool)

    @_check("pattern", "null, or non-empty str when refusal is true", element_wise=True, ignore_na=False)
    def _pattern(cls, x) -> bool:
        return x is None or _is_text(x)

    @_frame_check("a refusal names its pattern, a non-refusal none", "refusal", "pattern")
    def _pattern_iff_refusal(cls, df: pd.DataFrame) -> pd.Series:
        return _rowwise(df, ("refusal", "pattern"), lambda r, p: (r is True) == _is_text(p))

    @_frame_check("(checkpoint, id) unique in the file", "checkpoint", "id")
    def _unique_pair(cls, df: pd.DataFrame) -> pd.Series:
        if "checkpoint" not in df.columns or "id" not in df.columns:
            return pd.Series(True, index=df.index)
        keys = df["checkpoint"].map(_hashable).astype(str) + "\t" + df["id"].map(_hashable).astype(str)
        return ~keys.duplicated(keep=False)


# ----------------------------------------------------------------------------------------------
# Data quality: great-expectations on scalar helper columns. Thresholds are arguments here.


@dataclass(frozen=True)
class Expectation:
    name: str  # shown in messages
    gx_type: str  # class in great_expectations.expectations
    kwargs: dict
    show: str | None = None  # record field shown for offending rows
    flag: str | None = None  # 0/1 helper column whose 1-rows are the examples of an aggregate check


def unique(column: str, *, what: str, show: str, max_duplicate_rate: float = 0.0) -> Expectation:
    """At most `max_duplicate_rate` of rows share their `column` value with another row."""
    return Expectation(f"duplicate rate of {what} <= {max_duplicate_rate:g}", "ExpectColumnValuesToBeUnique",
                       {"column": column, "mostly": 1.0 - max_duplicate_rate}, show=show)


def share_at_most(flag: str, max_share: float, *, what: str, show: str) -> Expectation:
    """The mean of a 0/1 helper column (the share of flagged rows) is at most `max_share`."""
    return Expectation(f"share of {what} <= {max_share:g}", "ExpectColumnMeanToBeBetween",
                       {"column": flag, "max_value": max_share}, show=show, flag=flag)


def mean_between(column: str, low: float, high: float, *, what: str) -> Expectation:
    return Expectation(f"mean {what} in [{low:g}, {high:g}]", "ExpectColumnMeanToBeBetween",
                       {"column": column, "min_value": low, "max_value": high})


@dataclass(frozen=True)
class DatasetSpec:
    model: type[pa.DataFrameModel]
    # Scalar helper columns for the GX checks, computed from the (structurally valid) frame.
    derive: Callable[[pd.DataFrame], dict[str, pd.Series]] | None = None
    expectations: tuple[Expectation, ...] = ()
    # A text field whose word count must lie in the range the writer passes (the stage's params: one
    # source for a limit that the stage's filter applies and its output is checked against).
    words_field: str | None = None


def _words_col(s: pd.Series) -> pd.Series:
    return s.map(_n_words).astype("int64")


def _derive_topics(df: pd.DataFrame) -> dict[str, pd.Series]:
    words = _words_col(df["topic"])
    return {
        "type_topic": (df["type_id"] + "\t" + df["topic"].map(normalize)).astype(str),
        "words": words,
        "single_word": (words == 1).astype("int64"),
    }


def _derive_queries(df: pd.DataFrame) -> dict[str, pd.Series]:
    return {
        "query_norm": df["query"].map(normalize).astype(str),
        "words": _words_col(df["query"]),
        "truncated": df["query"].map(_looks_truncated).astype("int64"),
    }


def _derive_aligned(df: pd.DataFrame) -> dict[str, pd.Series]:
    return {
        "answer_norm": df["answer"].map(normalize).astype(str),
        "words": _words_col(df["answer"]),
        "truncated": df["answer"].map(_looks_truncated).astype("int64"),
    }


DATASETS: dict[str, DatasetSpec] = {
    "topics": DatasetSpec(Topics, _derive_topics, (
        unique("type_topic", what="(type_id, lowercased topic) pairs", show="topic"),
        share_at_most("single_word", 0.8, what="single-word topics", show="topic"),
        mean_between("words", 1, 8, what="topic word count"),
    ), words_field="topic"),
    "queries": DatasetSpec(Queries, _derive_queries, (
        unique("query_norm", what="normalized query (lowercase, collapsed whitespace)", show="query"),
        share_at_most("truncated", 0.5, what="queries that look truncated (no terminal punctuation)", show="query"),
        mean_between("words", 4, 100, what="query word count"),
    ), words_field="query"),
    # Rejected queries are kept for inspection; structure only (duplicates and empty text are why
    # many of them were rejected).
    "queries_rejected": DatasetSpec(QueriesRejected),
    "aligned": DatasetSpec(Aligned, _derive_aligned, (
        unique("answer_norm", what="normalized answer", show="answer", max_duplicate_rate=0.2),
        share_at_most("truncated", 0.5, what="answers that look truncated (no terminal punctuation)", show="answer"),
        mean_between("words", 3, 1000, what="answer word count"),
    )),
    "aligned_rejected": DatasetSpec(AlignedRejected),
    "verbose": DatasetSpec(Verbose, _derive_aligned, (
        unique("answer_norm", what="normalized answer", show="answer", max_duplicate_rate=0.2),
        mean_between("words", 3, 2000, what="answer word count"),
    )),
    "verbose_rejected": DatasetSpec(VerboseRejected),
    "xstest_answers": DatasetSpec(XSTestAnswers),
}


# ----------------------------------------------------------------------------------------------
# Messages


@dataclass
class _Failure:
    check: str
    n_rows: int | None  # None: a check on the whole batch
    lines: list[str]
    detail: str = ""


_ABSENT = object()


def _short(value: Any) -> str:
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
    parts = [f"row {i + 1}", f"id={rid}" if plain else f"id={_short(rid)}"]
    parts += [f"{f}={_short(rec.get(f, _ABSENT))}" for f in fields if f != "id"]
    return "  " + " ".join(parts)


def _example_lines(records: list[dict], rows: list[int], fields: tuple[str, ...], total: int | None = None) -> list[str]:
    lines = [_row_line(records, i, fields) for i in rows[:MAX_EXAMPLES]]
    more = (total if total is not None else len(rows)) - len(lines)
    if more > 0:
        lines.append(f"  ... and {more} more")
    return lines


def _format(path: str, rule: str, failures: list[_Failure]) -> str:
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


def _pandera_failures(err: pa.errors.SchemaErrors, records: list[dict], model) -> list[_Failure]:
    field_order = {name: k for k, name in enumerate(model.to_schema().columns)}
    groups: dict[str, dict] = {}
    for case in err.failure_cases.to_dict("records"):
        check, column, value = str(case["check"]), case["column"], case["failure_case"]
        index = case["index"]
        index = None if _is_null(index) else int(index)
        if check == "column_in_schema":  # strict: a field the model does not know
            label, rank, fields = f"{value}: unknown field (strict schema)", (0, 0), (str(value),)
            rows = [i for i, r in enumerate(records) if value in r]
        elif check == "column_in_dataframe":  # a required field absent from every record
            label, rank, fields = f"{value}: field present", (0, 1), (str(value),)
            rows = list(range(len(records)))
        elif check in _FRAME_CHECK_FIELDS:
            label, rank, fields = check, (2, 0), _FRAME_CHECK_FIELDS[check]
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
        failures.append(_Failure(label, len(rows) if rows else None, _example_lines(records, rows, g["fields"]), detail))
    return failures


# ----------------------------------------------------------------------------------------------
# great-expectations


@lru_cache(maxsize=1)
def _gx():
    """(great_expectations, great_expectations.expectations, a whole-dataframe batch definition on an
    ephemeral context with progress bars off), made once per process."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("selfalign").add_dataframe_asset("records")
    return gx, gxe, asset.add_batch_definition_whole_dataframe("whole")


def _gx_exception(result) -> str | None:
    info = result.exception_info or {}
    candidates = [info] + [v for v in info.values() if isinstance(v, dict)]
    for c in candidates:
        if c.get("raised_exception"):
            return str(c.get("exception_message") or "error")
    return None


def _gx_suite(gx, gxe, spec: DatasetSpec, dataset: str):
    return gx.ExpectationSuite(name=f"selfalign.{dataset}", expectations=[
        getattr(gxe, e.gx_type)(**e.kwargs, meta={"check": k}) for k, e in enumerate(spec.expectations)])


def _gx_frame(spec: DatasetSpec, df: pd.DataFrame) -> pd.DataFrame:
    """The derived columns the expectations look at, plus `row` (0-based position in the records)."""
    frame = pd.DataFrame(spec.derive(df) if spec.derive else {}, index=df.index)
    frame["row"] = range(len(frame))
    return frame


def _gx_failures(spec: DatasetSpec, dataset: str, df: pd.DataFrame, records: list[dict]) -> list[_Failure]:
    if not spec.expectations:
        return []
    gx, gxe, batch_definition = _gx()
    frame = _gx_frame(spec, df)
    suite = _gx_suite(gx, gxe, spec, dataset)
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    outcome = batch.validate(suite, result_format={
        "result_format": "SUMMARY", "partial_unexpected_count": MAX_EXAMPLES,
        "unexpected_index_column_names": ["row"]})
    failures = []
    for result in outcome.results:
        if result.success:
            continue
        e = spec.expectations[int(result.expectation_config.meta["check"])]
        fields = (e.show,) if e.show else ()
        res = result.result or {}
        error = _gx_exception(result)
        if error is not None:
            failures.append(_Failure(e.name, None, [], f" (the check could not run: {error})"))
        elif e.flag is None and "unexpected_count" in res:  # a check on each row
            rows = [int(d["row"]) for d in res.get("partial_unexpected_index_list") or []]
            n = int(res["unexpected_count"])
            detail = f" ({n / len(records):.1%} of {len(records)} rows)"
            failures.append(_Failure(e.name, n, _example_lines(records, rows, fields, n), detail))
        else:  # an aggregate: report the observed value, and the flagged rows as examples
            observed = res.get("observed_value")
            observed = f"{observed:.3g}" if isinstance(observed, (int, float)) else str(observed)
            rows = [int(i) for i in frame.index[frame[e.flag] == 1]] if e.flag else []
            flagged = f", {len(rows)} of {len(records)} rows flagged" if e.flag else ""
            failures.append(_Failure(e.name, None, _example_lines(records, rows, fields),
                                     f": observed {observed}{flagged}"))
    return failures


# ----------------------------------------------------------------------------------------------
# Public API


def _schema(spec: DatasetSpec, words: tuple[int, int] | None):
    """The dataset's pandera schema, with its word-count range added."""
    schema = spec.model.to_schema()
    if spec.words_field is None:
        return schema
    if words is None:
        raise ValueError(f"{spec.model.__name__}: pass words=(min, max) for field {spec.words_field!r}")
    lo, hi = words
    check = pa.Check(lambda x: not _is_text(x) or lo <= _n_words(x) <= hi, element_wise=True,
                     name=f"word count in [{lo}, {hi}]")
    column = schema.columns[spec.words_field]
    return schema.update_column(spec.words_field, checks=[*column.checks, check])


def validate_records(records: list[dict], *, dataset: str, path: str, rule: str,
                     words: tuple[int, int] | None = None) -> None:
    """Validate one batch of records of `dataset` about to be written at `path` by Snakemake rule `rule`.

    `words`: the (min, max) word count of the dataset's text field, for datasets that have one
    (topics, queries), from the params that the stage's own filter applies.

    Raises DatasetValidationError naming the file, the rule, each failed check and up to 5 offending
    rows. pandera first (all structural failures at once); great-expectations only on a batch that
    passed.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}")
    spec, path = DATASETS[dataset], str(path)

    def fail(failures: list[_Failure], message: str | None = None):
        raise DatasetValidationError(message or _format(path, rule, failures), path=path, rule=rule,
                                     dataset=dataset, checks=[f.check for f in failures])

    if not records:
        fail([_Failure("no records", None, [])],
             f"{path} (rule {rule}): no records (a '{dataset}' file must not be empty)")
    bad = [i for i, r in enumerate(records) if not isinstance(r, dict)]
    if bad:
        fail([_Failure("each record is a JSON object", len(bad),
                       [f"  row {i + 1} value={_short(records[i])}" for i in bad[:MAX_EXAMPLES]])])

    df = pd.DataFrame(records, dtype=object)  # missing keys become NaN, explicit nulls stay None
    df.index = pd.RangeIndex(len(records))
    try:
        _schema(spec, words).validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        fail(_pandera_failures(err, records, spec.model))
    failures = _gx_failures(spec, dataset, df, records)
    if failures:
        fail(failures)


def invalid_path(path: str | os.PathLike) -> Path:
    """Where write_validated puts a rejected batch: `<path>.invalid.jsonl`."""
    return Path(f"{path}.invalid.jsonl")


def write_validated(path: str | os.PathLike, records: list[dict], *, dataset: str, rule: str,
                    words: tuple[int, int] | None = None) -> int:
    """Validate, then write `records` to `path` atomically; returns the number written.

    On failure nothing is written at `path` (a previous file there is left untouched), the rejected
    batch goes to `<path>.invalid.jsonl` for inspection, and DatasetValidationError is raised. On
    success a stale `<path>.invalid.jsonl` from an earlier failure is removed.
    """
    rejected = invalid_path(path)
    try:
        validate_records(records, dataset=dataset, path=str(path), rule=rule, words=words)
    except DatasetValidationError as err:
        try:
            with immediately():  # kept for inspection even when the step's other outputs are not written
                write_jsonl(rejected, records)
            note = f"nothing was written to {path}; the rejected batch of {len(records)} records is in {rejected}"
        except (OSError, OutputError, TypeError, ValueError) as write_err:
            note = f"nothing was written to {path}; the rejected batch could not be saved either ({write_err})"
        raise DatasetValidationError(f"{err}\n{note}", path=err.path, rule=rule, dataset=dataset,
                                     checks=err.checks) from None
    n = write_jsonl(path, records)
    with contextlib.suppress(FileNotFoundError):
        rejected.unlink()
    return n


def write_rejected(path: str | os.PathLike, records: list[dict], *, dataset: str, rule: str) -> int:
    """A step's rejected records, validated like any dataset; none at all still writes the (empty) audit
    file, which marks the step as run."""
    return write_validated(path, records, dataset=dataset, rule=rule) if records else write_jsonl(path, [])


def build_data_docs(files: dict[str, str | os.PathLike], out: str | os.PathLike) -> Path:
    """great-expectations data docs for `files` ({dataset name: JSONL path}): each dataset's suite
    (the same checks as on write) and its validation result, in a file context under `out`.
    Returns the path of the docs' index.html. Datasets without expectations are skipped."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    out = Path(out).resolve()
    shutil.rmtree(out, ignore_errors=True)  # a fresh context each time: the docs show this run only
    context = gx.get_context(mode="file", project_root_dir=str(out))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("selfalign")
    for dataset, path in sorted(files.items()):
        spec = DATASETS[dataset]
        if not spec.expectations:
            continue
        records = read_jsonl(path, allow_empty=True)
        if not records:  # nothing to describe (a tiny run can keep no answers)
            continue
        df = pd.DataFrame(records, dtype=object)
        batch_definition = source.add_dataframe_asset(dataset).add_batch_definition_whole_dataframe("whole")
        suite = context.suites.add(_gx_suite(gx, gxe, spec, dataset))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=dataset, data=batch_definition, suite=suite))
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=dataset, validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="docs")]))
        checkpoint.run(batch_parameters={"dataframe": _gx_frame(spec, df)})
    sites = context.build_data_docs()
    return Path(sites["local_site"].removeprefix("file://"))
