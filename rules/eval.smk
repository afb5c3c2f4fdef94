# SELF-ALIGN's evaluation: the base, engraved and final checkpoints side by side on held-out
# multiple-choice benchmarks (HHH, TruthfulQA MC in the dialogue and in the published format) and on a
# behaviour eval (XSTest: declining unsafe requests, answering safe ones), every figure with its 95%
# interval and a paired test against base, as DVC metrics and plots (`dvc metrics diff`, `dvc plots diff`).
from selfalign.data.paths import CHECKPOINTS as CHECKPOINT_FOLDERS

# Each checkpoint as the rule that makes it outputs it (that wires the DAG); the names, their order and the
# folders are the registry's (selfalign/data/paths.py), which the audit tools read.
CHECKPOINTS = dict(base=rules.prepare_model.output.model, engraved=rules.engrave.output.model,
                   final=rules.verbose_clone.output.model)
assert list(CHECKPOINTS.items()) == list(CHECKPOINT_FOLDERS.items()), "rules/eval.smk: checkpoints differ from selfalign/data/paths.py"
# XSTest's human-labelled answers of another model: the refusal detector's agreement with people.
XSTEST_GOLD = "data/eval/xstest/completions_mistral_instruct_labelled.csv"


# One job per (checkpoint, shard), like every generation stage: shards spread over GPUs or nodes, and a
# killed job resumes from its journal. One rule per checkpoint, each needing only that checkpoint's model,
# so base's answers need not wait for the final model. (Rules, not an input function: dvc.yaml's deps are
# read from the rules' inputs as files.)
for ckpt, model in CHECKPOINTS.items():
    rule:
        name:
            f"generate_xstest_{ckpt}"
        input:
            checked=ancient(CHECKED),
            model=model,
            prompts=EVAL_DATA["xstest"],
        output:
            temp("data/eval_results/shards/xstest/{checkpoint}/{shard}.jsonl"),
        wildcard_constraints:
            checkpoint=ckpt,
        params:
            p=P(*ENGINE, "align.assistant_name", "eval.xstest_prompts", "eval.xstest_max_new_tokens"),
        threads: workflow.cores
        resources:
            gpu=config["generation"]["gpus_per_shard"],
        benchmark:
            "benchmarks/eval/xstest-{checkpoint}-{shard}.tsv"
        log:
            "logs/eval/xstest-{checkpoint}-{shard}.log",
        shell:
            "python scripts/generate_xstest.py --model {input.model} --checkpoint {wildcards.checkpoint}"
            " --prompts {input.prompts} --params {params.p:q} --shard {wildcards.shard}"
            " --out {output} 2> >(tee {log} >&2)"


rule evaluate:
    input:
        checked=ancient(CHECKED),
        **CHECKPOINTS,
        **EVAL_DATA,
        xstest_answers=expand("data/eval_results/shards/xstest/{checkpoint}/{shard}.jsonl", checkpoint=list(CHECKPOINTS),
                      shard=SHARDS),
        xstest_gold=XSTEST_GOLD,
    output:
        scores="data/eval_results/items.jsonl",
        xstest="data/eval_results/xstest.jsonl",
        metrics="metrics/eval.json",
        plot="plots/eval.csv",
    params:
        p=P("seed", "model.inference_dtype", "generation.prefix_cache", "align.assistant_name",
            "eval.hhh_per_category", "eval.truthfulqa_questions", "eval.truthfulqa_mc_questions", "eval.bootstrap_samples"),
    threads: workflow.cores
    resources:
        gpu=config["generation"]["gpus_per_shard"],
    benchmark:
        "benchmarks/eval/evaluate.tsv"
    log:
        "logs/eval.log",
    shell:
        "python scripts/evaluate.py --checkpoints base={input.base} engraved={input.engraved} final={input.final}"
        " --hhh {input.hhh} --truthfulqa {input.truthfulqa} --truthfulqa-mc {input.truthfulqa_mc}"
        " --xstest-shards {input.xstest_answers} --xstest-gold {input.xstest_gold} --params {params.p:q}"
        " --items {output.scores} --xstest-out {output.xstest} --metrics {output.metrics} --plot {output.plot}"
        " 2> >(tee {log} >&2)"
