# SELF-ALIGN as a Snakemake workflow. DVC drives it: dvc.yaml is generated from these rules
# (python -m selfalign.dvcgen), one DVC stage per rules/*.smk file.
from selfalign.config import ParamsSlice, validate_params

configfile: "params.yaml"
validate_params(config, source="params.yaml")

SHARDS = [f"{i:03d}" for i in range(config["generation"]["shards"])]


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


rule all:
    default_target: True
    input:
        rules.collect_topics.output,
        rules.collect_queries.output,
        rules.collect_aligned.output,
        rules.verbose_clone.output,
        rules.evaluate.output,
