# SELF-ALIGN as a Snakemake workflow. DVC drives it: dvc.yaml is generated from these rules
# (python -m selfalign.workflow.dvcgen), one DVC stage per rules/*.smk file.
include: "rules/common.smk"
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
