"""Writing a dataset: validate the batch (pandera, then great-expectations), then write it atomically.

A batch that fails is not written; it goes to `<path>.invalid.jsonl` for inspection and
DatasetValidationError is raised (see selfalign.validation.messages for the message).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from selfalign.core.files import DatasetValidationError, OutputError, immediately, write_jsonl
from selfalign.validation.checks import is_text, n_words
from selfalign.validation.expectations import DATASET_SPECS, DatasetSpec
from selfalign.validation.messages import MAX_EXAMPLES, Failure, format_failures, pandera_failures, short
from selfalign.validation.quality import gx_failures


def _schema(spec: DatasetSpec, words: tuple[int, int] | None):
    """The dataset's pandera schema, with its word-count range added."""
    schema = spec.model.to_schema()
    if spec.words_field is None:
        return schema
    if words is None:
        raise ValueError(f"{spec.model.__name__}: pass words=(min, max) for field {spec.words_field!r}")
    lo, hi = words
    check = pa.Check(lambda x: not is_text(x) or lo <= n_words(x) <= hi, element_wise=True,
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
    if dataset not in DATASET_SPECS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(DATASET_SPECS))}")
    spec, path = DATASET_SPECS[dataset], str(path)

    def fail(failures: list[Failure], message: str | None = None):
        raise DatasetValidationError(message or format_failures(path, rule, failures), path=path, rule=rule,
                                     dataset=dataset, checks=[f.check for f in failures])

    if not records:
        fail([Failure("no records", None, [])],
             f"{path} (rule {rule}): no records (a '{dataset}' file must not be empty)")
    bad = [i for i, r in enumerate(records) if not isinstance(r, dict)]
    if bad:
        fail([Failure("each record is a JSON object", len(bad),
                       [f"  row {i + 1} value={short(records[i])}" for i in bad[:MAX_EXAMPLES]])])

    df = pd.DataFrame(records, dtype=object)  # missing keys become NaN, explicit nulls stay None
    df.index = pd.RangeIndex(len(records))
    try:
        _schema(spec, words).validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        fail(pandera_failures(err, records, spec.model))
    failures = gx_failures(spec, dataset, df, records)
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
