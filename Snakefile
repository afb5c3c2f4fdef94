# SELF-ALIGN as a Snakemake workflow. DVC drives it: dvc.yaml is generated from these rules
# (python -m selfalign.dvcgen), one DVC stage per rules/*.smk file.
from selfalign.config import ParamsSlice, load_params, validate_params
from selfalign.stage import exit_on_input_error

# Bad params end the workflow with one line naming the key (or the line of broken YAML).
with exit_on_input_error():
    load_params("params.yaml")
configfile: "params.yaml"
with exit_on_input_error():
    validate_params(config, source="params.yaml")

SHARDS = [f"{i:03d}" for i in range(config["generation"]["shards"])]
# The stamp of the `check` stage (rules/check.smk). The first rule of every other stage takes it as an
# input, so it runs first; ancient(): its age never makes Snakemake rerun anything, only its absence.
CHECKED = "data/checked.txt"


def P(*keys):
    """The params.yaml keys a rule passes to its script; dvc.yaml lists exactly these."""
    return ParamsSlice(config, *keys)


include: "rules/model.smk"
include: "rules/topics.smk"
include: "rules/queries.smk"
include: "rules/align.smk"
include: "rules/engrave.smk"
include: "rules/verbose.smk"
include: "rules/verbose_clone.smk"
include: "rules/eval.smk"
include: "rules/check.smk"


rule all:
    default_target: True
    input:
        rules.collect_topics.output,
        rules.collect_queries.output,
        rules.collect_aligned.output,
        rules.verbose_clone.output,
        rules.evaluate.output,
