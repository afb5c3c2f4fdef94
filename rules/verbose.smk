# SELF-ALIGN step 4, first half: the engraved model, instructed to be detailed, answers the aligned
# queries again (sharded like every generation stage).


rule generate_verbose:
    input:
        checked=ancient(CHECKED),
        model=rules.engrave.output.model,
        aligned=rules.collect_aligned.output.aligned,
        template="templates/verbose.j2",
    output:
        temp("data/verbose/shards/{shard}.jsonl"),
    params:
        p=P(*ENGINE, "align.assistant_name", "verbose.instruction",
            "verbose.decoding"),
    threads: GENERATION_THREADS
    resources:
        gpu=config["generation"]["gpus_per_shard"],
    benchmark:
        "benchmarks/verbose/{shard}.tsv"
    log:
        "logs/verbose/{shard}.log",
    shell:
        "python scripts/generate_verbose.py --model {input.model} --aligned {input.aligned} --template {input.template}"
        " --params {params.p:q} " + PLACEMENT + " --shard {wildcards.shard} --out {output} 2> >(tee {log} >&2)"


rule collect_verbose:
    input:
        shards=expand("data/verbose/shards/{shard}.jsonl", shard=SHARDS),
        principles=ALIGN_TEXT["principles"],  # their names: a long answer citing one leaks the align prompt
    output:
        verbose=RECORDS["verbose"],
        rejected=RECORDS["verbose_rejected"],
        metrics="metrics/verbose.json",
    params:
        p=P("align.assistant_name", "verbose.instruction", "verbose.min_words", "verbose.filters"),
    benchmark:
        "benchmarks/verbose/collect.tsv"
    log:
        "logs/verbose/collect.log",
    shell:
        "python scripts/collect_verbose.py --shards {input.shards} --principles {input.principles}"
        " --params {params.p:q} --out {output.verbose}"
        " --rejected {output.rejected} --metrics {output.metrics} 2> >(tee {log} >&2)"
