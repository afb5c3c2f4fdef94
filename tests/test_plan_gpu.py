"""`selfalign plan --gpu-memory`: per-GPU memory of 7B and 70B models under the settings the README recommends
for 8 GPUs of 80 GB, planned on any machine from a folder that holds only the model's config.json."""
import json
import shutil

import jsonschema
import pytest
import yaml

from selfalign.audit import cli
from selfalign.plan import estimate, plan

from pipeline import ROOT

SCHEMA = json.loads((ROOT / "schemas/plan.schema.json").read_text())
GPU_GB = 80
# Llama 2's published shapes (its config.json on the hub, less the tokenizer ids).
LLAMA2 = {
    "7b": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
           "intermediate_size": 11008},
    "70b": {"hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
            "intermediate_size": 28672},
}
PARAMETERS = {"7b": 6.74e9, "70b": 68.98e9}
STAGES = ["topics", "queries", "align", "engrave", "verbose", "verbose_clone", "eval"]

# 8 GPUs of 80 GB per node: one training process per GPU; generation shards of tensor_parallel_size GPUs each.
EIGHT_GPUS = {"train.processes": 8, "train.gpus": 8, "train.nodes": 1, "train.mixed_precision": "bf16",
              "generation.backend": "vllm", "generation.gpu_memory_utilization": 0.9}
TP1 = {"generation.tensor_parallel_size": 1, "generation.gpus_per_shard": 1, "generation.shards": 8}
TP4 = {"generation.tensor_parallel_size": 4, "generation.gpus_per_shard": 4, "generation.shards": 2}
# Per setting: (model, params, what the plan prints for a training job: the README's GPU table).
RECOMMENDED = {
    "7b-lora": ("7b", TP1 | {"train.method": "lora", "train.zero_stage": 2, "train.gradient_checkpointing": False,
                             "train.offload": "none"}, "25.3 GB × 8"),
    "7b-full": ("7b", TP1 | {"train.method": "full", "train.zero_stage": 2, "train.gradient_checkpointing": False,
                             "train.offload": "none"}, "32.8 GB × 8"),
    "70b-lora": ("70b", TP4 | {"train.method": "lora", "train.zero_stage": 3, "train.gradient_checkpointing": True,
                               "train.offload": "none"}, "23.7 GB × 8"),
    "70b-full": ("70b", TP4 | {"train.method": "full", "train.zero_stage": 3, "train.gradient_checkpointing": True,
                               "train.offload": "optimizer"}, "23.1 GB × 8, 1027.8 GB host a node"),
    # Four nodes: ZeRO-3 over 32 GPUs holds the optimizer state on the GPUs, no host offload.
    "70b-full-4-nodes": ("70b", TP4 | {"train.method": "full", "train.zero_stage": 3,
                                       "train.gradient_checkpointing": True, "train.offload": "none",
                                       "train.processes": 32, "train.nodes": 4}, "39.2 GB × 32"),
}
# What vLLM holds per GPU (0.9 of 80 GB), of that the weights, and eval's scoring per GPU: 7B on one GPU, 70B
# over four.
GENERATION = {"7b": ("72.0 GB × 1", "12.6 GB", "13.6 GB"), "70b": ("72.0 GB × 4", "32.1 GB", "33.2 GB")}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Model folders with a config.json only: no tokenizer, no weights."""
    out = {}
    for name, shape in LLAMA2.items():
        folder = tmp_path_factory.mktemp(f"llama-2-{name}")
        (folder / "config.json").write_text(json.dumps(
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000,
             "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "torch_dtype": "float16", **shape}))
        out[name] = folder
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A folder with what a plan reads (params, seeds, eval sets, templates, principles), and no run."""
    root = tmp_path_factory.mktemp("plan-root")
    for name in ("data/seeds", "data/eval", "templates", "principles"):
        shutil.copytree(ROOT / name, root / name)
    return root


def _params(root, model, settings: dict) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["name"] = str(model)
    for dotted, value in (EIGHT_GPUS | settings).items():
        *head, last = dotted.split(".")
        node = params
        for part in head:
            node = node[part]
        node[last] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _plan(root, models, name: str) -> dict:
    model, settings, _ = RECOMMENDED[name]
    _params(root, models[model], settings)
    return plan.build(root, stages=STAGES, gpu_memory=GPU_GB)


def test_parameter_counts_are_llama_2s(root, models):
    for name, published in PARAMETERS.items():
        _params(root, models[name], {})
        facts, tok = estimate.model_facts(root, yaml.safe_load((root / "params.yaml").read_text()))
        assert tok is None
        assert facts.parameters == pytest.approx(published, rel=0.02), name
        assert facts.context == 4096 and facts.layers == LLAMA2[name]["num_hidden_layers"]


@pytest.mark.parametrize("name", list(RECOMMENDED))
def test_recommended_settings_fit_80_gb_gpus(root, models, name):
    p = _plan(root, models, name)
    jsonschema.validate(p, SCHEMA)
    assert p["problems"] == []
    assert p["device"] == {"kind": "gpu", "memory": GPU_GB * estimate.GiB, "source": f"--gpu-memory {GPU_GB}"}
    assert [s["stage"] for s in p["stages"]] == STAGES
    for s in p["stages"]:
        assert 0 < s["memory"]["per_gpu"] < GPU_GB * estimate.GiB, s["stage"]
    assert p["totals"]["peak_per_gpu"] < GPU_GB * estimate.GiB
    # Without a tokenizer the prompts are measured in characters, and the plan says so.
    assert any("has a config and no tokenizer" in n for n in p["notes"])
    assert "memory per GPU (of 80.0 GB)" in plan.text(p) and "error" not in plan.text(p)
    model, settings, printed = RECOMMENDED[name]
    row = {s["stage"]: s["memory"] for s in p["stages"]}
    offload = settings["train.offload"] != "none"
    assert (row["engrave"]["host_per_node"] > 0) == offload and ("optimizer" in row["engrave"]["parts"]) != offload
    # The figures the README's GPU table quotes.
    assert plan._memory_cell(row["engrave"], True) == plan._memory_cell(row["verbose_clone"], True) == printed
    assert plan._memory_cell(row["align"], True) == GENERATION[model][0]
    assert estimate.gb(row["align"]["weights_per_gpu"]) == GENERATION[model][1]
    assert estimate.gb(row["eval"]["scoring"]["per_gpu"]) == GENERATION[model][2]


def test_what_cannot_fit_is_an_error_naming_the_stage(root, models):
    # 70B full fine-tuning under ZeRO-2: each GPU holds all the weights.
    _params(root, models["70b"], TP4 | {"train.method": "full", "train.zero_stage": 2, "train.offload": "none"})
    p = plan.build(root, stages=["align", "engrave"], gpu_memory=GPU_GB)
    assert len(p["problems"]) == 1 and p["problems"][0].startswith("engrave: needs about ")
    assert "per GPU, the GPUs have 80.0 GB (weights " in p["problems"][0]
    assert f"error: {p['problems'][0]}" in plan.text(p)
    # 70B on one GPU per engine: vLLM cannot even hold the weights.
    _params(root, models["70b"], TP1 | {"train.zero_stage": 3, "train.gradient_checkpointing": True})
    p = plan.build(root, stages=["align", "engrave", "eval"], gpu_memory=GPU_GB)
    assert [x.split(":")[0] for x in p["problems"]] == ["align", "eval"]
    assert "the weights alone, 128.5 GB per GPU over generation.tensor_parallel_size=1" in p["problems"][0]


def test_what_each_setting_takes_off_a_gpu(root, models):
    _params(root, models["70b"], {})
    facts, _ = estimate.model_facts(root, yaml.safe_load((root / "params.yaml").read_text()))
    gpu = estimate.Device("gpu", GPU_GB * estimate.GiB, "test")
    train = {"method": "full", "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
             "batch_size": 4, "max_length": 384, "zero_stage": 2, "gradient_checkpointing": False, "offload": "none",
             "processes": 8, "nodes": 1, "mixed_precision": "bf16"}

    def mem(bf16=True, **change):
        return estimate.training_memory(facts, train | change, bf16=bf16, device=gpu)

    z2, z3 = mem(), mem(zero_stage=3)
    P = facts.parameters
    assert z2["parts"]["weights"] == 2 * P and z3["parts"]["weights"] == 2 * P // 8  # bf16, sharded by ZeRO-3
    assert z2["parts"]["optimizer"] == 12 * P // 8 and z2["parts"]["gradients"] == 2 * P // 8
    assert mem(bf16=False)["parts"]["optimizer"] == 8 * P // 8  # fp32: Adam's moments only, no master copy
    off = mem(zero_stage=3, offload="optimizer")
    assert "optimizer" not in off["parts"] and off["offloaded"] == 16 * P // 8 and off["host_per_node"] == 16 * P
    everything = mem(zero_stage=3, offload="all")
    assert "weights" not in everything["parts"] and everything["offloaded"] == 18 * P // 8
    assert mem(offload="all")["parts"]["weights"] == 2 * P  # ZeRO-2 keeps the weights on the GPU
    # Checkpointing keeps each layer's input only: a tenth of what 80 layers of activations take, and less.
    assert mem(gradient_checkpointing=True)["parts"]["activations"] < z2["parts"]["activations"] / 10
    lora = mem(method="lora")
    # all-linear LoRA at r=16 on Llama 2 70B: 16 x (in + out) of 7 projections x 80 layers, about 0.3% of the model.
    assert lora["adapter_parameters"] == 16 * 80 * (2 * 8192 + 2 * (8192 + 1024) + 2 * 8192 + 3 * (8192 + 28672))
    assert lora["parts"]["gradients"] == lora["adapter_parameters"] * 4 // 8


def test_the_cli_flag_plans_for_gpus(root, models, capsys):
    _params(root, models["7b"], RECOMMENDED["7b-lora"][1])
    assert cli.main(["plan", "--root", str(root), "--stages", "engrave", "--gpu-memory", "80", "--json"]) == 0
    p = json.loads(capsys.readouterr().out)
    assert p["device"]["kind"] == "gpu" and p["stages"][0]["memory"]["per_gpu"] < 80 * estimate.GiB
    # A 16 GB GPU cannot hold 7B LoRA's bf16 base (13.5 GB) with its activations: exit 1, the stage named.
    assert cli.main(["plan", "--root", str(root), "--stages", "engrave", "--gpu-memory", "16"]) == 1
    assert "error: engrave: needs about" in capsys.readouterr().out
