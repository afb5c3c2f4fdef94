"""Data quality: each dataset's DatasetSpec (its schema, great-expectations checks and their thresholds).

The expectations look at scalar helper columns that a spec's `derive` function computes from a copy
of the (structurally valid) frame; the thresholds are the arguments of `unique`, `share_at_most` and
`mean_between` in DATASET_SPECS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd
import pandera.pandas as pa

from selfalign.text.filters import normalize
from selfalign.validation.checks import looks_truncated, n_words
from selfalign.validation.schemas import (
    Aligned,
    AlignedRejected,
    FidelityDecisions,
    Queries,
    QueriesRejected,
    Topics,
    Verbose,
    VerboseRejected,
    XSTestAnswers,
)


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
    return s.map(n_words).astype("int64")


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
        "truncated": df["query"].map(looks_truncated).astype("int64"),
    }


def _derive_aligned(df: pd.DataFrame) -> dict[str, pd.Series]:
    return {
        "answer_norm": df["answer"].map(normalize).astype(str),
        "words": _words_col(df["answer"]),
        "truncated": df["answer"].map(looks_truncated).astype("int64"),
    }


DATASET_SPECS: dict[str, DatasetSpec] = {
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
    "fidelity_decisions": DatasetSpec(FidelityDecisions),
}
