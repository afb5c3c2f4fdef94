"""Structure: one pandera DataFrameModel per dataset, checked first on write.

Every column is `object` (values come straight from JSON); types and contents are element-wise
checks, so each offending row is reported. A model is strict (no unknown fields); write.py validates
lazily, so every failure is collected. A generated dataset's model subclasses Lineage and pins `stage`.
"""
from __future__ import annotations

import math

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from selfalign.data.records import LINEAGE_FIELDS
from selfalign.validation.checks import (
    HASH_PATTERN,
    ID_PATTERN,
    SOURCES,
    TYPE_ID_PATTERN,
    check,
    frame_check,
    hashable,
    is_hash,
    is_id,
    is_null,
    is_text,
    is_type_id,
    rowwise,
    starts_with_punctuation,
    str_fields,
    text_fields,
)


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

    @check("id", f"str matching {ID_PATTERN}", element_wise=True)
    def _id_format(cls, x) -> bool:
        return is_id(x)

    @check("id", "unique in the file")
    def _id_unique(cls, s: pd.Series) -> pd.Series:
        return ~s.map(hashable).duplicated(keep=False)

    @check("parent_ids", "non-empty list of non-empty str", element_wise=True)
    def _parents(cls, x) -> bool:
        return isinstance(x, list) and len(x) > 0 and all(is_text(p) for p in x)

    _model = text_fields("model", name="non-empty str")

    @check("decoding", "dict", element_wise=True)
    def _decoding(cls, x) -> bool:
        return isinstance(x, dict)

    @check("engine", "dict with backend, dtype, prefix_cache and batch_size", element_wise=True)
    def _engine(cls, x) -> bool:
        return isinstance(x, dict) and {"backend", "dtype", "prefix_cache", "batch_size"} <= set(x)

    @check("template_hash", f"str matching {HASH_PATTERN}", element_wise=True)
    def _template_hash(cls, x) -> bool:
        return is_hash(x)


if tuple(Lineage.to_schema().columns) != LINEAGE_FIELDS:
    raise RuntimeError("selfalign.validation.schemas.Lineage is out of step with selfalign.data.records.LINEAGE_FIELDS")


class Topics(Lineage):
    stage: Series[object] = pa.Field(eq="topics")
    type_id: Series[object]
    topic: Series[object]

    @check("type_id", f"str matching {TYPE_ID_PATTERN}", element_wise=True)
    def _type_id(cls, x) -> bool:
        return is_type_id(x)

    _topic_text = text_fields("topic")

    @check("topic", "single line (no newline)", element_wise=True)
    def _topic_line(cls, x) -> bool:
        return not isinstance(x, str) or ("\n" not in x and "\r" not in x)

    @frame_check("type_id equals parent_ids[0]", "type_id", "parent_ids")
    def _type_is_parent(cls, df: pd.DataFrame) -> pd.Series:
        return rowwise(df, ("type_id", "parent_ids"),
                        lambda t, p: not (isinstance(t, str) and isinstance(p, list) and p) or p[0] == t)


class _QueryFields(Lineage):
    """Fields shared by accepted and rejected queries."""

    stage: Series[object] = pa.Field(eq="queries")
    source: Series[object]
    type_id: Series[object] = pa.Field(nullable=True)
    topic_id: Series[object] = pa.Field(nullable=True)

    @check("source", f"one of {list(SOURCES)}", element_wise=True)
    def _source(cls, x) -> bool:
        return isinstance(x, str) and x in SOURCES

    # ignore_na=False: a missing key (NaN) fails, an explicit null (None) passes
    @check("type_id", f"null or str matching {TYPE_ID_PATTERN}", element_wise=True, ignore_na=False)
    def _type_id(cls, x) -> bool:
        return x is None or is_type_id(x)

    @check("topic_id", "null or non-empty str", element_wise=True, ignore_na=False)
    def _topic_id(cls, x) -> bool:
        return x is None or is_text(x)


class Queries(_QueryFields):
    query: Series[object]

    _query_text = text_fields("query")

    @check("query", "does not start with punctuation", element_wise=True)
    def _query_start(cls, x) -> bool:
        return not isinstance(x, str) or not starts_with_punctuation(x)

    @frame_check("red_team rows have type_id and topic_id, self_instruct rows have neither",
                  "source", "type_id", "topic_id")
    def _source_links(cls, df: pd.DataFrame) -> pd.Series:
        def ok(source, type_id, topic_id):
            if source == "red_team":
                return not is_null(type_id) and not is_null(topic_id)
            if source == "self_instruct":
                return is_null(type_id) and is_null(topic_id)
            return True  # a bad source is reported by its own check

        return rowwise(df, ("source", "type_id", "topic_id"), ok)


class QueriesRejected(_QueryFields):
    query: Series[object]
    reason: Series[object]

    _query_str = str_fields("query")
    _reason = text_fields("reason", name="non-empty str")


class _AnsweredFields(Lineage):
    """An answer to a query: the query's origin (so the mix can be read per origin) and the refusal
    detector's call on the answer (selfalign/text/refusal.py)."""

    source: Series[object]
    type_id: Series[object] = pa.Field(nullable=True)
    refusal: Series[object]
    refusal_pattern: Series[object] = pa.Field(nullable=True)

    @check("source", f"one of {list(SOURCES)}", element_wise=True)
    def _source(cls, x) -> bool:
        return isinstance(x, str) and x in SOURCES

    @check("type_id", f"null or str matching {TYPE_ID_PATTERN}", element_wise=True, ignore_na=False)
    def _type_id(cls, x) -> bool:
        return x is None or is_type_id(x)

    @check("refusal", "bool", element_wise=True)
    def _refusal(cls, x) -> bool:
        return isinstance(x, bool)

    @check("refusal_pattern", "null or non-empty str", element_wise=True, ignore_na=False)
    def _refusal_pattern(cls, x) -> bool:
        return x is None or is_text(x)

    @frame_check("red_team rows have a type_id, self_instruct rows none", "source", "type_id")
    def _origin_type(cls, df: pd.DataFrame) -> pd.Series:
        return rowwise(df, ("source", "type_id"),
                       lambda s, t: not is_null(t) if s == "red_team" else is_null(t) if s == "self_instruct" else True)


class _AlignedFields(_AnsweredFields):
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

    _output_str = str_fields("output")

    @check("relevance", "null or a number (the answer's PMI with its query, per token)", element_wise=True,
            ignore_na=False)
    def _relevance(cls, x) -> bool:
        return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x))

    @check("principles_version", f"str matching {HASH_PATTERN}", element_wise=True)
    def _principles_version(cls, x) -> bool:
        return is_hash(x)

    _assistant = text_fields("assistant", name="non-empty str")

    _query_text = text_fields("query")

    @check("parent_ids", "exactly one parent (the query)", element_wise=True)
    def _one_parent(cls, x) -> bool:
        return isinstance(x, list) and len(x) == 1

    @check(("cited", "exemplar_order"), "list of distinct positive int", element_wise=True)
    def _distinct_ids(cls, x) -> bool:
        return (isinstance(x, list) and all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in x)
                and len(set(x)) == len(x))


class Aligned(_AlignedFields):
    _texts = text_fields("thought", "answer")

    @check("cited", "cites at least one principle", element_wise=True)
    def _cites(cls, x) -> bool:
        return isinstance(x, list) and len(x) > 0


class AlignedRejected(_AlignedFields):
    reason: Series[object]

    _strs = str_fields("thought", "answer")
    _reason = text_fields("reason", name="non-empty str")


class _VerboseFields(_AnsweredFields):
    stage: Series[object] = pa.Field(eq="verbose")
    query: Series[object]
    answer: Series[object]

    _query_text = text_fields("query")

    @check("parent_ids", "exactly one parent (the aligned response)", element_wise=True)
    def _one_parent(cls, x) -> bool:
        return isinstance(x, list) and len(x) == 1


class Verbose(_VerboseFields):
    _answer_text = text_fields("answer")


class VerboseRejected(_VerboseFields):
    reason: Series[object]

    _answer_str = str_fields("answer")
    _reason = text_fields("reason", name="non-empty str")


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

    @check("checkpoint", "non-empty str", element_wise=True)
    def _checkpoint(cls, x) -> bool:
        return is_text(x)

    @check("id", "non-empty str", element_wise=True)
    def _id(cls, x) -> bool:
        return is_text(x)

    @check("label", "one of ['safe', 'unsafe']", element_wise=True)
    def _label(cls, x) -> bool:
        return x in ("safe", "unsafe")

    _prompt = text_fields("prompt")
    _answer = str_fields("answer")

    @check("refusal", "bool", element_wise=True)
    def _refusal(cls, x) -> bool:
        return isinstance(x, bool)

    @check("empty", "bool", element_wise=True)
    def _empty(cls, x) -> bool:
        return isinstance(x, bool)

    @check("finished", "bool", element_wise=True)
    def _finished(cls, x) -> bool:
        return isinstance(x, bool)

    @check("pattern", "null, or non-empty str when refusal is true", element_wise=True, ignore_na=False)
    def _pattern(cls, x) -> bool:
        return x is None or is_text(x)

    @frame_check("a refusal names its pattern, a non-refusal none", "refusal", "pattern")
    def _pattern_iff_refusal(cls, df: pd.DataFrame) -> pd.Series:
        return rowwise(df, ("refusal", "pattern"), lambda r, p: (r is True) == is_text(p))

    @frame_check("(checkpoint, id) unique in the file", "checkpoint", "id")
    def _unique_pair(cls, df: pd.DataFrame) -> pd.Series:
        if "checkpoint" not in df.columns or "id" not in df.columns:
            return pd.Series(True, index=df.index)
        keys = df["checkpoint"].map(hashable).astype(str) + "\t" + df["id"].map(hashable).astype(str)
        return ~keys.duplicated(keep=False)


class FidelityDecisions(pa.DataFrameModel):
    """data/eval_results/fidelity.jsonl: each engraving-fidelity prompt (XSTest's and the held-out queries),
    the teacher's answer and refusal call, and each checkpoint's call (evaluation output, not a training set)."""

    key: Series[object]
    set: Series[object]
    prompt: Series[object]
    source: Series[object] = pa.Field(nullable=True)
    teacher_answer: Series[object]
    teacher_refusal: Series[object] = pa.Field(nullable=True)

    class Config:
        strict = "filter"  # the checkpoints' `<name>_refusal` columns follow

    @check("key", "unique '<set>/<id>' str", element_wise=True)
    def _key(cls, x) -> bool:
        return is_text(x) and "/" in x

    @check("set", "one of ['xstest', 'heldout']", element_wise=True)
    def _set(cls, x) -> bool:
        return x in ("xstest", "heldout")

    _prompt = text_fields("prompt")
    _teacher_answer = str_fields("teacher_answer")

    @check("teacher_refusal", "null (no answer) or bool", element_wise=True, ignore_na=False)
    def _teacher_refusal(cls, x) -> bool:
        return x is None or isinstance(x, bool)

    @frame_check("key unique in the file", "key")
    def _unique_key(cls, df: pd.DataFrame) -> pd.Series:
        return ~df["key"].map(hashable).astype(str).duplicated(keep=False)
