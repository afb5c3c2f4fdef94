# SELF-ALIGN's evaluation: the base, engraved and final checkpoints scored side by side on held-out
# multiple-choice benchmarks, as DVC metrics and plots (`dvc metrics diff`, `dvc plots diff`).


rule evaluate:
    input:
        checked=ancient(CHECKED),
        base=rules.prepare_model.output.model,
        engraved=rules.engrave.output.model,
        final=rules.verbose_clone.output.model,
        **EVAL_DATA,
    output:
        scores="data/eval_results/items.jsonl",
        metrics="metrics/eval.json",
        plot="plots/eval.csv",
    params:
        p=P("seed", "model.inference_dtype", "generation.prefix_cache", "align.assistant_name", "eval"),
    threads: workflow.cores
    resources:
        gpu=config["generation"]["gpus_per_shard"],
    benchmark:
        "benchmarks/eval.tsv"
    log:
        "logs/eval.log",
    shell:
        "python scripts/evaluate.py --checkpoints base={input.base} engraved={input.engraved} final={input.final}"
        " --hhh {input.hhh} --truthfulqa {input.truthfulqa} --params {params.p:q} --items {output.scores}"
        " --metrics {output.metrics} --plot {output.plot} 2> >(tee {log} >&2)"
