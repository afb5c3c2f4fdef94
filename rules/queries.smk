rule generate_queries:
    input:
        checked=ancient(CHECKED),
        model=rules.prepare_model.output.model,
        seeds=RECORDS["self_instruct"],
        types=RECORDS["red_team_types"],
        topics=rules.collect_topics.output.topics,
        si_template="templates/self_instruct.j2",
        rt_template="templates/red_team_questions.j2",
    output:
        temp("data/queries/shards/{shard}.jsonl"),
    params:
        # With self_instruct_prompts: auto the count follows from the align sample's size and mix.
        p=P(*ENGINE, "queries.self_instruct_prompts", "queries.self_instruct_yield", "align.max_queries",
            "align.heldout_queries", "align.red_team_share", "queries.demos_per_prompt",
            "queries.questions_per_topic_prompt", "queries.decoding"),
    threads: GENERATION_THREADS
    resources:
        gpu=config["generation"]["gpus_per_shard"],
    benchmark:
        "benchmarks/queries/{shard}.tsv"
    log:
        "logs/queries/{shard}.log",
    shell:
        "python scripts/generate_queries.py --model {input.model} --seeds {input.seeds} --types {input.types}"
        " --topics {input.topics} --si-template {input.si_template} --rt-template {input.rt_template}"
        " --params {params.p:q} " + PLACEMENT + " --shard {wildcards.shard} --out {output} 2> >(tee {log} >&2)"


rule collect_queries:
    input:
        shards=expand("data/queries/shards/{shard}.jsonl", shard=SHARDS),
        seeds=RECORDS["self_instruct"],
        types=RECORDS["red_team_types"],
    output:
        queries=RECORDS["queries"],
        rejected=RECORDS["queries_rejected"],
        metrics="metrics/queries.json",
    params:
        p=P("queries.min_words", "queries.max_words", "queries.rouge_threshold"),
    benchmark:
        "benchmarks/queries/collect.tsv"
    log:
        "logs/queries/collect.log",
    shell:
        "python scripts/collect_queries.py --shards {input.shards} --seeds {input.seeds} --types {input.types}"
        " --params {params.p:q} --out {output.queries} --rejected {output.rejected}"
        " --metrics {output.metrics} 2> >(tee {log} >&2)"
