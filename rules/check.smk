# Before every other stage: check every hand-written input (params.yaml, model.name, seeds, principles,
# exemplars, templates, evaluation files, DeepSpeed config). DVC removes a stage's outputs before it
# runs the stage's command, so bad input found inside a stage would already have cost its outputs;
# found here, it costs nothing. The stamp's bytes never change, so it never reruns another stage.
# principles/*.yaml are plain file inputs of this stage, not DVC params (see selfalign/stages/checks.py).


rule check_inputs:
    input:
        params="params.yaml",
        schema="schemas/params.schema.yaml",
        seeds=rules.generate_queries.input.seeds,
        types=rules.generate_topics.input.types,
        principles=ALIGN_TEXT["principles"],
        exemplars=ALIGN_TEXT["exemplars"],
        topics_template=rules.generate_topics.input.template,
        si_template=rules.generate_queries.input.si_template,
        rt_template=rules.generate_queries.input.rt_template,
        align_template=ALIGN_TEXT["template"],
        verbose_template=rules.generate_verbose.input.template,
        **EVAL_DATA,
        xstest_gold=XSTEST_GOLD,
        ds_configs=rules.engrave.input.ds_configs,
    output:
        CHECKED,
    benchmark:
        "benchmarks/check.tsv"
    log:
        "logs/check.log",
    shell:
        "python scripts/check_inputs.py --params {input.params} --seeds {input.seeds} --types {input.types}"
        " --principles {input.principles} --exemplars {input.exemplars} --topics-template {input.topics_template}"
        " --self-instruct-template {input.si_template} --red-team-template {input.rt_template}"
        " --align-template {input.align_template} --verbose-template {input.verbose_template} --hhh {input.hhh}"
        " --truthfulqa {input.truthfulqa} --truthfulqa-mc {input.truthfulqa_mc} --xstest {input.xstest}"
        " --xstest-gold {input.xstest_gold} --ds-configs {input.ds_configs} --out {output} 2> >(tee {log} >&2)"
