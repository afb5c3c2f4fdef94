"""great-expectations data docs: the checks made on write, and how each dataset fares, as HTML."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from selfalign.core.files import read_jsonl
from selfalign.validation.expectations import DATASET_SPECS
from selfalign.validation.quality import gx_frame, gx_suite


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
        spec = DATASET_SPECS[dataset]
        if not spec.expectations:
            continue
        records = read_jsonl(path, allow_empty=True)
        if not records:  # nothing to describe (a tiny run can keep no answers)
            continue
        df = pd.DataFrame(records, dtype=object)
        batch_definition = source.add_dataframe_asset(dataset).add_batch_definition_whole_dataframe("whole")
        suite = context.suites.add(gx_suite(gx, gxe, spec, dataset))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=dataset, data=batch_definition, suite=suite))
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=dataset, validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="docs")]))
        checkpoint.run(batch_parameters={"dataframe": gx_frame(spec, df)})
    sites = context.build_data_docs()
    return Path(sites["local_site"].removeprefix("file://"))
