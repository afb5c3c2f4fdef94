# SELF-ALIGN step 2: principle-driven self-alignment. principles/*.yaml are params of this stage in
# dvc.yaml (see selfalign/workflow/dvcgen.py), so an edit shows in `dvc params diff` and reruns this stage and
# what follows, never topics or queries.
ALIGN_TEXT = dict(principles="principles/principles.yaml", exemplars="principles/exemplars.yaml",
                  template="templates/align.j2")


rule generate_aligned:
    input:
        checked=ancient(CHECKED),
        model=rules.prepare_model.output.model,
        queries=rules.collect_queries.output.queries,
        **ALIGN_TEXT,
        **EVAL_DATA,
    output:
        temp("data/aligned/shards/{shard}.jsonl"),
    params:
        p=P(*ENGINE, "principles.exclude", "align.assistant_name", "align.identity", "align.max_queries",
            "align.red_team_share", "align.heldout_queries", "align.contamination_threshold", "align.exemplar_rotations", "align.decoding", "align.filters.off_topic"),
    threads: GENERATION_THREADS
    resources:
        gpu=config["generation"]["gpus_per_shard"],
    benchmark:
        "benchmarks/align/{shard}.tsv"
    log:
        "logs/align/{shard}.log",
    shell:
        "python scripts/generate_aligned.py --model {input.model} --queries {input.queries}"
        " --principles {input.principles} --exemplars {input.exemplars} --template {input.template}"
        " --hhh {input.hhh} --truthfulqa {input.truthfulqa} --truthfulqa-mc {input.truthfulqa_mc} --xstest {input.xstest}"
        " --params {params.p:q} " + PLACEMENT + " --shard {wildcards.shard} --out {output} 2> >(tee {log} >&2)"


rule collect_aligned:
    input:
        shards=expand("data/aligned/shards/{shard}.jsonl", shard=SHARDS),
        principles=ALIGN_TEXT["principles"],
        exemplars=ALIGN_TEXT["exemplars"],
    output:
        aligned=RECORDS["aligned"],
        rejected=RECORDS["aligned_rejected"],
        metrics="metrics/align.json",
        citations="plots/principle_citations.csv",
    params:
        p=P("principles.exclude", "align.assistant_name", "align.filters"),
    benchmark:
        "benchmarks/align/collect.tsv"
    log:
        "logs/align/collect.log",
    shell:
        "python scripts/collect_aligned.py --shards {input.shards} --principles {input.principles}"
        " --exemplars {input.exemplars} --params {params.p:q} --out {output.aligned} --rejected {output.rejected}"
        " --metrics {output.metrics} --citations {output.citations} 2> >(tee {log} >&2)"
