rule generate_topics:
    input:
        checked=ancient(CHECKED),
        model=rules.prepare_model.output.model,
        types=RECORDS["red_team_types"],
        template="templates/topics.j2",
    output:
        temp("data/topics/shards/{shard}.jsonl"),
    params:
        p=P(*ENGINE, "topics.samples_per_type", "topics.min_per_type", "topics.max_rounds", "topics.max_words",
            "topics.rouge_threshold", "topics.decoding"),
    threads: GENERATION_THREADS
    resources:
        gpu=config["generation"]["gpus_per_shard"],
    benchmark:
        "benchmarks/topics/{shard}.tsv"
    log:
        "logs/topics/{shard}.log",
    shell:
        "python scripts/generate_topics.py --model {input.model} --types {input.types} --template {input.template}"
        " --params {params.p:q} " + PLACEMENT + " --shard {wildcards.shard} --out {output} 2> >(tee {log} >&2)"


rule collect_topics:
    input:
        shards=expand("data/topics/shards/{shard}.jsonl", shard=SHARDS),
        types=RECORDS["red_team_types"],
        template="templates/topics.j2",
    output:
        topics=RECORDS["topics"],
        metrics="metrics/topics.json",
    params:
        p=P("topics.max_per_type", "topics.min_per_type", "topics.max_words", "topics.rouge_threshold"),
    benchmark:
        "benchmarks/topics/collect.tsv"
    log:
        "logs/topics/collect.log",
    shell:
        "python scripts/collect_topics.py --shards {input.shards} --types {input.types} --template {input.template}"
        " --params {params.p:q} --out {output.topics} --metrics {output.metrics} 2> >(tee {log} >&2)"
