"""Data quality on write: a spec's expectations run by great-expectations on its derived columns.

great_expectations is imported lazily (about 5 s) and only when a spec has expectations.
"""
from __future__ import annotations

import os
from functools import lru_cache

import pandas as pd

from selfalign.validation.expectations import DatasetSpec
from selfalign.validation.messages import MAX_EXAMPLES, Failure, example_lines


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


def gx_suite(gx, gxe, spec: DatasetSpec, dataset: str):
    """The spec's expectations as a suite; each carries its index in the spec (meta "check")."""
    return gx.ExpectationSuite(name=f"selfalign.{dataset}", expectations=[
        getattr(gxe, e.gx_type)(**e.kwargs, meta={"check": k}) for k, e in enumerate(spec.expectations)])


def gx_frame(spec: DatasetSpec, df: pd.DataFrame) -> pd.DataFrame:
    """The derived columns the expectations look at, plus `row` (0-based position in the records)."""
    frame = pd.DataFrame(spec.derive(df) if spec.derive else {}, index=df.index)
    frame["row"] = range(len(frame))
    return frame


def gx_failures(spec: DatasetSpec, dataset: str, df: pd.DataFrame, records: list[dict]) -> list[Failure]:
    """The failed expectations of `spec` on the (structurally valid) frame `df` of `records`."""
    if not spec.expectations:
        return []
    gx, gxe, batch_definition = _gx()
    frame = gx_frame(spec, df)
    suite = gx_suite(gx, gxe, spec, dataset)
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
            failures.append(Failure(e.name, None, [], f" (the check could not run: {error})"))
        elif e.flag is None and "unexpected_count" in res:  # a check on each row
            rows = [int(d["row"]) for d in res.get("partial_unexpected_index_list") or []]
            n = int(res["unexpected_count"])
            detail = f" ({n / len(records):.1%} of {len(records)} rows)"
            failures.append(Failure(e.name, n, example_lines(records, rows, fields, n), detail))
        else:  # an aggregate: report the observed value, and the flagged rows as examples
            observed = res.get("observed_value")
            observed = f"{observed:.3g}" if isinstance(observed, (int, float)) else str(observed)
            rows = [int(i) for i in frame.index[frame[e.flag] == 1]] if e.flag else []
            flagged = f", {len(rows)} of {len(records)} rows flagged" if e.flag else ""
            failures.append(Failure(e.name, None, example_lines(records, rows, fields),
                                    f": observed {observed}{flagged}"))
    return failures
