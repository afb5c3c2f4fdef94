"""Every dataset checked on write: structure (pandera), then data quality (great-expectations).

A stage writes its output with `write_validated(path, records, dataset=..., rule=...)`
(selfalign.validation.write). The batch is checked first by the dataset's pandera DataFrameModel
(selfalign.validation.schemas: types, unique ids, non-empty text, lengths in range, lineage fields
present, strict: no unknown fields), every failure collected (lazy=True); only a structurally valid
batch goes on to the great-expectations suite (selfalign.validation.quality: distribution checks on
scalar helper columns derived from a copy of the frame). A violation raises DatasetValidationError,
whose message (selfalign.validation.messages) names the file, the Snakemake rule that wrote it, each
failed check and up to 5 offending rows. selfalign.validation.docs renders the suites and their
results as great-expectations data docs.

Adding a dataset: one DataFrameModel in schemas (subclass Lineage, pin `stage`) and one DatasetSpec
in expectations.DATASET_SPECS (a `derive` function for the GX helper columns and a tuple of
expectations built with `unique`, `share_at_most`, `mean_between`; the thresholds live there).

Nothing is re-exported here: each stage's DVC dependencies are computed from its imports, so a stage
depends only on the modules it (transitively) imports.
"""
