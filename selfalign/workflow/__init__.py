"""The workflow's generated files: dvc.yaml from the Snakemake rules, DVC plot templates."""
