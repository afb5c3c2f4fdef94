# What several rules share (the snakemake-workflows layout): the validated config, the shard names, the
# check stamp, the params helper, the held-out eval files and the training launcher. No rules here, so
# no DVC stage; every stage lists this file as a dependency (selfalign/workflow/dvcgen.py).
from selfalign.core.config import ParamsSlice, load_params, validate_params
from selfalign.data.paths import RECORD_FILES as RECORDS
from selfalign.core.stage import exit_on_input_error

# Bad params end the workflow with one line naming the key (or the line of broken YAML).
with exit_on_input_error():
    load_params("params.yaml")
configfile: "params.yaml"
with exit_on_input_error():
    validate_params(config, source="params.yaml")

SHARDS = [f"{i:03d}" for i in range(config["generation"]["shards"])]
# The stamp of the `check` stage (rules/check.smk). The first rule of every other stage takes it as an
# input, so it runs first; ancient(): its age never makes Snakemake rerun anything, only its absence.
CHECKED = "data/checked.txt"


def P(*keys):
    """The params.yaml keys a rule passes to its script; dvc.yaml lists exactly these."""
    return ParamsSlice(config, *keys)


# Held-out evaluation files: align drops queries that (nearly) match one, check reads them, eval scores them.
EVAL_DATA = dict(hhh="data/eval/hhh", truthfulqa="data/eval/truthfulqa/TruthfulQA.csv",
                 truthfulqa_mc="data/eval/truthfulqa_bigbench/task_mc.json", xstest="data/eval/xstest/xstest_prompts.csv")

# Training (engrave, verbose_clone): torchrun starts train.processes processes (one per GPU; on CPU,
# gloo processes). Every train.* key shapes the result except the GPU count, a resource.
TORCHRUN = "torchrun --standalone --nproc_per_node {params.procs}"
TRAIN = [f"train.{k}" for k in config["train"] if k != "gpus"]
# What every generation job's engine reads (selfalign/engine/shards.py): the seed, Engine.from_params and the
# shard count. gpus_per_shard is a resource, not a param.
ENGINE = ("seed", "model.inference_dtype", "generation.backend", "generation.batch_size", "generation.max_num_seqs",
          "generation.prefix_cache", "generation.tensor_parallel_size", "generation.compile", "generation.shards")
