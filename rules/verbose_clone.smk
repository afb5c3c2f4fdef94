# SELF-ALIGN step 4, second half: context distillation. Fine-tune the engraved model on the verbose
# answers with the plain dialogue prompt (no instruction to be detailed): the final model.


rule verbose_clone:
    input:
        checked=ancient(CHECKED),
        base=rules.engrave.output.model,
        data=rules.collect_verbose.output.verbose,
        ds_configs=rules.engrave.input.ds_configs,
    output:
        model=directory("models/final"),
        metrics="metrics/verbose_clone.json",
        plot="plots/verbose_clone_loss.csv",
    params:
        p=P("seed", "align.assistant_name", *TRAIN),
        procs=config["train"]["processes"],
        gpus=config["train"]["gpus"],
    threads: workflow.cores
    resources:
        **TRAIN_RESOURCES,
    benchmark:
        "benchmarks/verbose_clone.tsv"
    log:
        "logs/verbose_clone.log",
    shell:
        TORCHRUN + " scripts/train.py --base {input.base} --data {input.data} --ds-configs {input.ds_configs}"
        " --params {params.p:q} --out {output.model} --metrics {output.metrics} --plot {output.plot}"
        " 2> >(tee {log} >&2)"
