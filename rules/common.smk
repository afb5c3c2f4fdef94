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

# Training (engrave, verbose_clone): the launcher (selfalign/train/launch.py) starts train.processes processes
# (one per GPU; on CPU, gloo processes) with torchrun, over train.nodes nodes of a SLURM allocation. Every
# train.* key shapes the result except the GPUs per node and the node count: resources.
TORCHRUN = "python -m selfalign.train.launch --processes {params.procs} --nodes {resources.nodes} --gpus {params.gpus} --"
TRAIN = [f"train.{k}" for k in config["train"] if k not in ("gpus", "nodes")]
# A training job's resources: its nodes, and train.gpus GPUs on each. SLURM's --gpus counts a job's GPUs over
# all its nodes, --gres counts them per node: a job of several nodes asks per node.
_gpus, _nodes = config["train"]["gpus"], config["train"]["nodes"]
TRAIN_RESOURCES = dict(nodes=_nodes, **({"gres": f"gpu:{_gpus}"} if _nodes > 1 and _gpus else {"gpu": _gpus}))


def generation_threads(gpus_per_job):
    """Cores of a generation job. On CPU an engine computes on every core, so shards run one after another; a
    job with GPUs computes on them, so the jobs the visible GPUs hold run at once and share the cores (each
    takes GPUs of its own: selfalign/engine/devices.py)."""
    from selfalign.engine.devices import visible_gpus

    if not gpus_per_job:
        return workflow.cores
    at_once = min(len(SHARDS), len(visible_gpus()) // gpus_per_job)
    return max(1, workflow.cores // max(at_once, 1))


GENERATION_THREADS = generation_threads(config["generation"]["gpus_per_shard"])
# What every generation job's engine reads (selfalign/engine/shards.py): the seed, Engine.from_params and the
# shard count.
ENGINE = ("seed", "model.inference_dtype", "generation.backend", "generation.batch_size", "generation.max_num_seqs",
          "generation.prefix_cache", "generation.tensor_parallel_size", "generation.compile", "generation.shards")
# Where a generation job computes, not what it makes (no DVC param: changing it reruns nothing): its GPUs, and
# the share of each that vLLM takes.
PLACEMENT = ("--gpus {resources.gpu} --gpu-memory-utilization "
             + str(config["generation"]["gpu_memory_utilization"]))
