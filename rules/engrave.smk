# SELF-ALIGN step 3: principle engraving. Fine-tune the base model on the aligned (query, answer)
# pairs with no principles or exemplars in the prompt, through torchrun (TORCHRUN, rules/common.smk);
# DeepSpeed runs ZeRO from configs/deepspeed/.


rule engrave:
    input:
        checked=ancient(CHECKED),
        base=rules.prepare_model.output.model,
        data=rules.collect_aligned.output.aligned,
        # The whole folder: the file train.zero_stage picks is chosen in the script, so a changed stage
        # (`dvc exp run -S train.zero_stage=3`) reads and hashes the config it runs.
        ds_configs="configs/deepspeed",
    output:
        model=directory("models/engraved"),
        metrics="metrics/engrave.json",
        plot="plots/engrave_loss.csv",
    params:
        p=P("seed", "align.assistant_name", *TRAIN),
        procs=config["train"]["processes"],
        gpus=config["train"]["gpus"],
    threads: workflow.cores
    resources:
        **TRAIN_RESOURCES,
    benchmark:
        "benchmarks/engrave.tsv"
    log:
        "logs/engrave.log",
    shell:
        TORCHRUN + " scripts/train.py --base {input.base} --data {input.data} --ds-configs {input.ds_configs}"
        " --params {params.p:q} --out {output.model} --metrics {output.metrics} --plot {output.plot}"
        " 2> >(tee {log} >&2)"
