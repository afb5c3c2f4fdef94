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
# What finds the queries the align stage held out (selfalign/eval/fidelity.py heldout_queries).
HELDOUT = ("align.max_queries", "align.red_team_share", "align.heldout_queries", "align.contamination_threshold")
# generate_eval_answers writes <ANSWERS>/teacher/<shard>.jsonl and <ANSWERS>/xstest/<checkpoint>/<shard>.jsonl.
ANSWERS = "data/eval_results/shards"


# The answers the behaviour eval classifies, one job per shard with one engine for all of them: the teacher
# (base with the principles and exemplars in its prompt, the align stage's prompt) answers XSTest's prompts
# and the held-out queries, then each checkpoint answers them prompted without, its weights loaded into the
# engine in turn (an engine's start costs more than a checkpoint's answers). Journaled per (checkpoint,
# shard): a killed job resumes. Shards spread over GPUs or nodes like every generation stage's.
rule generate_eval_answers:
    input:
        checked=ancient(CHECKED),
        **CHECKPOINTS,
        # The held-out queries (fidelity prompts): align's own split of the queries, made again here.
        queries=rules.collect_queries.output.queries,
        **ALIGN_TEXT,
        **EVAL_DATA,
    output:
        teacher=temp(f"{ANSWERS}/teacher/{{shard}}.jsonl"),
        xstest=temp(expand(f"{ANSWERS}/xstest/{{checkpoint}}/{{{{shard}}}}.jsonl", checkpoint=list(CHECKPOINTS))),
    params:
        p=P(*ENGINE, "principles.exclude", "align.assistant_name", "align.identity", "align.exemplar_rotations",
            "align.decoding.max_new_tokens", *HELDOUT, "eval.xstest_prompts", "eval.xstest_max_new_tokens"),
        checkpoints=" ".join(f"{name}={model}" for name, model in CHECKPOINTS.items()),
        out=ANSWERS,
    threads: GENERATION_THREADS
    resources:
        gpu=config["generation"]["gpus_per_shard"],
    benchmark:
        "benchmarks/eval/answers-{shard}.tsv"
    log:
        "logs/eval/answers-{shard}.log",
    shell:
        "python scripts/generate_eval_answers.py --checkpoints {params.checkpoints} --queries {input.queries}"
        " --principles {input.principles} --exemplars {input.exemplars} --template {input.template}"
        " --hhh {input.hhh} --truthfulqa {input.truthfulqa} --truthfulqa-mc {input.truthfulqa_mc} --xstest {input.xstest}"
        " --params {params.p:q} " + PLACEMENT + " --shard {wildcards.shard} --out {params.out} 2> >(tee {log} >&2)"


rule evaluate:
    input:
        checked=ancient(CHECKED),
        **CHECKPOINTS,
        **EVAL_DATA,
        xstest_answers=expand(f"{ANSWERS}/xstest/{{checkpoint}}/{{shard}}.jsonl", checkpoint=list(CHECKPOINTS),
                      shard=SHARDS),
        xstest_gold=XSTEST_GOLD,
        teacher=expand(f"{ANSWERS}/teacher/{{shard}}.jsonl", shard=SHARDS),
        principles=ALIGN_TEXT["principles"],
        exemplars=ALIGN_TEXT["exemplars"],
    output:
        scores="data/eval_results/items.jsonl",
        xstest="data/eval_results/xstest.jsonl",
        fidelity="data/eval_results/fidelity.jsonl",
        metrics="metrics/eval.json",
        plot="plots/eval.csv",
    params:
        p=P("seed", "model.inference_dtype", "principles.exclude", "align.assistant_name", "eval.prefix_cache",
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
        " --xstest-shards {input.xstest_answers} --xstest-gold {input.xstest_gold} --teacher-shards {input.teacher}"
        " --principles {input.principles} --exemplars {input.exemplars} --params {params.p:q} " + PLACEMENT + ""
        " --items {output.scores} --xstest-out {output.xstest} --fidelity-out {output.fidelity}"
        " --metrics {output.metrics} --plot {output.plot}"
        " 2> >(tee {log} >&2)"
