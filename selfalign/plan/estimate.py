"""Time and memory of the stages a run would run, and the settings that cannot run, before anything runs.

Time is `jobs x start + units x rate` per kind of job (selfalign/plan/work.py says what a unit is). The
rates come from a run that was measured: this folder's last run (its Snakemake `benchmark:` records in
benchmarks/, the params dvc.lock recorded and metrics/), else a timings snapshot (`selfalign timings
--write`, e.g. bench/pipeline_timings.json, or another machine's given with `--rates`). The engine start
is fitted over every generation job of that run (seconds = start + rate x budget, least squares with
both non-negative), each stage then gets its own rate; training likewise. Where the model differs from
the one the rates were measured on, rates scale with the parameter count (decoding and training are
compute-bound) and say so.

Memory is modelled from the model's config.json (no weights are loaded), for this machine's CPU memory or
for GPUs (`--gpu-memory`, else the CUDA device here): weights in the dtype a stage runs in; the KV cache
for the planned concurrency (vLLM on CPU allocates `VLLM_CPU_KVCACHE_SPACE`; on a GPU it takes
`generation.gpu_memory_utilization` of each GPU and fills what the weights leave with KV cache); the logits
of the positions computed at once; and per training process its weights, gradients and optimizer state by
precision, ZeRO stage and offload, LoRA's adapters, and activations with or without gradient checkpointing.
The figures are a model of the run, not a measurement of one.
"""
from __future__ import annotations

import math
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

from selfalign.core.files import InputError
from selfalign.engine.models import native_bf16, on_cuda
from selfalign.plan.work import StageWork

GiB = 1024 ** 3
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
CHARS_PER_TOKEN = 4.0  # no tokenizer (before the `model` stage; a folder with a config only): a rule of thumb
# Params that decide what a rate was measured on; a plan under others says its rates are borrowed.
SETUP = ("model.name", "model.inference_dtype", "generation.backend", "generation.compile")


# --- the model, from its config -------------------------------------------------------------------------

@dataclass
class ModelFacts:
    source: str
    parameters: int
    layers: int
    kv_heads: int
    head_dim: int
    hidden: int
    vocab: int
    context: int | None
    # Optional: a timings snapshot written before these existed carries the fields above only.
    intermediate: int | None = None  # the MLP's width
    layer_parameters: int | None = None  # the largest decoder layer's (what ZeRO-3 gathers at once)
    embedding_parameters: int | None = None
    linear: dict | None = None  # {module name: [in_features, out_features]} summed over the model, lm_head aside


def model_facts(root: Path, params: dict) -> tuple[ModelFacts | None, object | None]:
    """(facts, tokenizer) of the model params.yaml names, read from its config; (None, None) while that
    model has no folder yet (an embedded model before the `model` stage has run, a hub id not cached).
    A folder with a config.json and no tokenizer gives (facts, None): prompts are then measured in
    characters (CHARS_PER_TOKEN)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from selfalign.engine import limits
    from selfalign.engine.models import model_source, read_manifest

    name = params["model"]["name"]
    folder = root / "models/base"
    try:
        manifest = read_manifest(folder)
    except InputError:
        manifest = None
    if manifest and manifest.get("name") == name:
        src = model_source(folder, manifest)[0]
        model_dir: Path | None = folder
    elif Path(name).expanduser().is_dir():
        src, model_dir = str(Path(name).expanduser()), None
    else:
        return None, None
    trust = params["model"]["trust_remote_code"]
    try:
        config = AutoConfig.from_pretrained(src, trust_remote_code=trust)
    except (OSError, ValueError):
        return None, None
    with torch.device("meta"):  # shapes only: no memory, no weights read
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust)
    parameters = sum(p.numel() for p in model.parameters())
    text = config.get_text_config()
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    found = limits.context_length(model_dir) if model_dir else None
    context = found[0] if found else getattr(text, "max_position_embeddings", None)
    try:
        if model_dir:
            tok = limits.load_tokenizer(model_dir)
        else:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(src, trust_remote_code=trust)
    except (OSError, ValueError, TypeError):  # a folder with a config and no tokenizer files
        tok = None
    return ModelFacts(src, parameters, text.num_hidden_layers, getattr(text, "num_key_value_heads", heads) or heads,
                      head_dim, text.hidden_size, text.vocab_size, context, **_shapes(model, text)), tok


def _shapes(model, text) -> dict:
    """What the memory of training needs beyond the config's sizes, from the model built on the meta device."""
    from torch import nn

    out_layer = model.get_output_embeddings()
    linear: dict[str, list[int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and m is not out_layer:  # peft's all-linear leaves the output layer out
            io = linear.setdefault(name.rsplit(".", 1)[-1], [0, 0])
            io[0] += m.in_features
            io[1] += m.out_features
    layers = next((ml for ml in model.modules() if isinstance(ml, nn.ModuleList) and len(ml) == text.num_hidden_layers),
                  None)
    embed = model.get_input_embeddings()
    return {"intermediate": getattr(text, "intermediate_size", None),
            "layer_parameters": max(sum(p.numel() for p in x.parameters()) for x in layers) if layers else None,
            "embedding_parameters": sum(p.numel() for p in embed.parameters()) if embed is not None else None,
            "linear": linear or None}


# --- prompt lengths ----------------------------------------------------------------------------------------

def prompt_tokens(prompts: list[str], tok) -> tuple[int, int, int]:
    """(mean tokens, most tokens, tokens shared by all) of a stage's sampled prompts."""
    from selfalign.engine.prefix_cache import common_prefix_len

    if not prompts:
        return 0, 0, 0
    if tok is None:
        lengths = [len(p) / CHARS_PER_TOKEN for p in prompts]
        shared = common_prefix_len(prompts) / CHARS_PER_TOKEN if len(prompts) > 1 else 0
    else:
        ids = tok(prompts)["input_ids"]
        lengths = [len(x) for x in ids]
        shared = common_prefix_len(ids) if len(ids) > 1 else 0
    return int(round(sum(lengths) / len(lengths))), int(round(max(lengths))), int(round(shared))


# --- rates from a measured run -------------------------------------------------------------------------------

def _part_of(stage: str, job: str) -> str | None:
    if stage == "check":
        return None
    if stage == "model":
        return "prepare"
    if job == "collect":
        return "collect"
    if stage == "eval":
        return "score" if job == "evaluate" else "generate"
    if stage in ("engrave", "verbose_clone"):
        return "train"
    return "generate"


def _fit_start(points: list[tuple[float, float]]) -> float:
    """The fixed seconds of `seconds = start + rate x units` over (units, seconds), both non-negative."""
    import numpy as np
    from scipy.optimize import nnls

    if len(points) < 2 or len({u for u, _ in points}) < 2:
        return 0.0
    A = np.array([[1.0, u] for u, _ in points])
    b = np.array([s for _, s in points])
    scale = np.array([1.0, max(u for u, _ in points)])  # keep the columns comparable for nnls
    x, _ = nnls(A / scale, b)
    return float(x[0])


def rates(jobs: list[dict], work: dict[str, StageWork]) -> dict:
    """{"start": {part: seconds}, "rate": {stage: {part: seconds per unit}}, "fixed": {stage: {part: seconds a
    job}}} from a measured run's jobs and the work (`stage_work` of that run's params and counts)."""
    by: dict[tuple[str, str], list[float]] = {}
    for j in jobs:
        part = _part_of(j["stage"], j["job"])
        if part is not None:
            by.setdefault((j["stage"], part), []).append(j["seconds"])
    units = {(s, p.name): p for s, w in work.items() for p in w.parts}
    start = {}
    for kind in ("generate", "train"):
        points = [(units[k].units / max(len(secs), 1), sec) for k, secs in by.items() if k[1] == kind and k in units
                  and units[k].units for sec in secs]
        start[kind] = round(_fit_start(points), 1)
    rate: dict = {}
    fixed: dict = {}
    for (stage, part), secs in by.items():
        p = units.get((stage, part))
        if p is not None and p.units and (part in start or part == "score"):  # score: no start of its own
            rate.setdefault(stage, {})[part] = max(sum(secs) - len(secs) * start.get(part, 0.0), 0.0) / p.units
        else:  # collect, prepare: seconds a job
            fixed.setdefault(stage, {})[part] = sum(secs) / len(secs)
    return {"start": start, "rate": rate, "fixed": fixed}


# --- the machine ----------------------------------------------------------------------------------------------

# CPU classes by the widest instructions that decide speed and bytes, best first: `inference_dtype: auto` is bf16
# where a CPU computes it natively (selfalign/engine/models.py native_bf16), float32 elsewhere, and the kernels
# torch picks differ by class, so a run on another class takes other times and gives other bytes.
CPU_CLASSES = (("avx512_bf16", ("avx512_bf16", "amx_bf16")), ("avx512", ("avx512f",)), ("avx2", ("avx2",)),
               ("bf16", ("bf16",)))  # the last: Arm's flag


def cpu_class(cpuinfo: str | None = None) -> str:
    """E.g. "x86_64 avx512_bf16" or "x86_64 avx2", from /proc/cpuinfo's flags (or `cpuinfo`'s text)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    level = next((name for name, needs in CPU_CLASSES if flags & set(needs)), "baseline" if flags else "unknown")
    return f"{platform.machine()} {level}"


def machine_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


# --- memory ---------------------------------------------------------------------------------------------------


def trains_bf16(setting: str, device: str | None = None) -> bool:
    """train.mixed_precision resolved for `device` (default: the one models load on), as
    selfalign/train/finetune.py Settings.bf16 resolves it for the device that trains."""
    return setting == "bf16" or (setting == "auto" and native_bf16(device))


# On a GPU, beyond what a stage's tensors take: the CUDA context, NCCL's and ZeRO's buffers, the allocator's
# slack. A rule of thumb, not a measurement.
GPU_RUNTIME = 1 * GiB


@dataclass
class Device:
    """What a plan's memory is checked against: this machine's memory (cpu), or each GPU's (gpu)."""
    kind: str  # cpu | gpu
    memory: int | None  # bytes: the machine's, or one GPU's
    source: str  # where that figure comes from

    @property
    def gpu(self) -> bool:
        return self.kind == "gpu"


def target_device(gpu_memory_gb: float | None = None) -> Device:
    """GPUs of `gpu_memory_gb` GB each (GB as the plan prints them, 1024^3 bytes); without it this machine's
    CUDA device if it has one, else its CPU memory."""
    if gpu_memory_gb is not None:
        if not gpu_memory_gb > 0:
            raise InputError(f"--gpu-memory {gpu_memory_gb:g}: GB per GPU must be above 0")
        return Device("gpu", int(gpu_memory_gb * GiB), f"--gpu-memory {gpu_memory_gb:g}")
    if on_cuda():
        import torch

        props = torch.cuda.get_device_properties(0)
        return Device("gpu", int(props.total_memory), props.name)
    return Device("cpu", machine_memory(), "this machine")


def kv_bytes_per_token(f: ModelFacts, dtype: str, tp: int = 1) -> int:
    """KV cache bytes of one token on one GPU of `tp` (tensor parallelism splits the KV heads; a GPU holds at
    least one, so past kv_heads GPUs they are replicated)."""
    return 2 * f.layers * math.ceil(f.kv_heads / tp) * f.head_dim * BYTES[dtype]


def generation_memory(f: ModelFacts, backend: str, *, seqs: int, dtype: str, tokens_per_seq: int,
                      device: Device | None = None, tensor_parallel: int = 1,
                      gpu_memory_utilization: float = 0.9) -> dict:
    """Bytes of one generation job decoding `seqs` sequences at once: weights, KV cache (what they need, and
    what vLLM allocates), logits; and how many sequences the allocated KV cache holds.

    On GPUs (`device` a gpu): vLLM spreads the weights over `tensor_parallel` GPUs and takes
    `gpu_memory_utilization` of each; what the weights, logits and GPU_RUNTIME leave of that is KV cache
    (`kv_allocated`, `seqs_that_fit`: per GPU). `per_gpu` is what each GPU gives the engine, `peak` all its
    GPUs together. The transformers backend loads the whole model on one GPU."""
    from selfalign.engine.vllm_backend import DEFAULT_CPU_KVCACHE_GIB

    per_seq = tokens_per_seq * kv_bytes_per_token(f, dtype)
    need = seqs * per_seq
    out = {"weights": f.parameters * BYTES[dtype], "kv_needed": need, "logits": seqs * f.vocab * 4}
    if device is not None and device.gpu:
        gpus = max(tensor_parallel, 1) if backend == "vllm" else 1
        weights = out["weights"] / gpus
        overhead = out["logits"] + GPU_RUNTIME
        if backend == "vllm":
            budget = gpu_memory_utilization * device.memory
            per_seq_gpu = tokens_per_seq * kv_bytes_per_token(f, dtype, gpus)
            kv = max(budget - weights - overhead, 0)
            out |= {"gpus": gpus, "weights_per_gpu": int(weights), "budget_per_gpu": int(budget),
                    "kv_allocated": int(kv), "seqs_that_fit": int(kv // per_seq_gpu) if per_seq_gpu else None,
                    "per_gpu": int(max(budget, weights + overhead))}
        else:
            out |= {"gpus": 1, "weights_per_gpu": int(weights), "per_gpu": int(weights + need + overhead)}
        out["peak"] = out["per_gpu"] * out["gpus"]
        return out
    if backend == "vllm" and not on_cuda():
        space = float(os.environ.get("VLLM_CPU_KVCACHE_SPACE", DEFAULT_CPU_KVCACHE_GIB)) * GiB
        out |= {"kv_allocated": int(space), "seqs_that_fit": int(space // per_seq) if per_seq else None}
    out["peak"] = out["weights"] + max(need, out.get("kv_allocated", 0)) + out["logits"]
    return out


def _targeted(f: ModelFacts, lora: dict) -> tuple[int, int]:
    """(in features, out features) summed over the linear modules LoRA adapts."""
    targets = lora["target_modules"]
    if not f.linear:  # an older snapshot's facts: as if every linear module were hidden wide on one side
        side = int(max(f.parameters - f.vocab * f.hidden, 0) / f.hidden)
        return side, side
    if targets == "all-linear":
        chosen = list(f.linear.values())
    elif isinstance(targets, str):  # peft: a regex over module names
        chosen = [io for name, io in f.linear.items() if re.search(targets, name)]
    else:
        chosen = [io for name, io in f.linear.items() if name in targets]
    return sum(i for i, _ in chosen), sum(o for _, o in chosen)


def lora_parameters(f: ModelFacts, lora: dict) -> int:
    """Adapter parameters: r x (in + out) of every linear module LoRA adapts."""
    return lora["r"] * sum(_targeted(f, lora))


def training_memory(f: ModelFacts, train: dict, *, bf16: bool | None = None, device: Device | None = None) -> dict:
    """Bytes of a training job per process (one process per GPU) and in all.

    Full fine-tuning with bf16 (DeepSpeed's bf16): bf16 weights and gradients, and in the optimizer fp32 master
    weights and Adam's two moments (12 bytes a parameter); without (`mixed_precision: fp32`): fp32 weights and
    gradients, and Adam's moments (8 bytes). LoRA: a frozen base (bf16 with mixed precision, else fp32) and fp32
    adapters with their gradients and Adam's moments. ZeRO-2 shards gradients and optimizer state over the
    processes, ZeRO-3 the weights too, and gathers a layer at a time (two: the one computed and the one
    prefetched). `offload: optimizer` moves the optimizer state to host memory, and the gradient shard with it
    (fp32: the host steps on it); `all` with ZeRO-3 the weights too (with ZeRO-2 it acts as `optimizer`).

    Activations of a micro-batch (batch_size x max_length positions): per decoder layer its norms' inputs and
    outputs, q, k, v, the attention output and the MLP's four intermediates (with LoRA dropout also each
    adapter's dropped-out input); with gradient checkpointing only each layer's input is kept, plus one layer's
    activations while it is recomputed. Logits: bf16 (fp32 without mixed precision), their fp32 copy for the
    loss and its gradient. On a GPU, GPU_RUNTIME besides.

    `per_process` is what one process holds on its device (on GPUs also `per_gpu`; on CPU everything, offloaded
    state included, is in the machine's memory); `parts` splits it; on GPUs `offloaded` is one process's host
    bytes and `host_per_node` those of a node's processes; `peak` is all processes together."""
    if bf16 is None:
        bf16 = trains_bf16(train["mixed_precision"])
    gpu = device is not None and device.gpu
    procs, nodes, stage = train["processes"], train.get("nodes", 1), train["zero_stage"]
    offload = train.get("offload", "none")
    if offload == "all" and stage != 3:
        offload = "optimizer"  # ZeRO-2 keeps the weights on the device
    checkpointing = train.get("gradient_checkpointing", False)
    P, wb = f.parameters, (2 if bf16 else 4)
    weights_shard = procs if stage == 3 else 1
    if train["method"] == "full":
        adapters, trained = 0, P
        weights, grads, optimizer = P * wb, P * wb, P * (12 if bf16 else 8)
    else:
        adapters = trained = lora_parameters(f, train["lora"])
        weights, grads, optimizer = P * wb + adapters * 4, adapters * 4, adapters * 8
    weights /= weights_shard
    grads /= procs
    optimizer /= procs
    gathered = 0
    if stage == 3:
        layer = f.layer_parameters or (P - f.vocab * f.hidden) / max(f.layers, 1)
        gathered = 2 * max(layer, f.embedding_parameters or 0) * wb
    # Activations of one micro-batch.
    h, inter = f.hidden, f.intermediate or 4 * f.hidden
    kv_dim = f.kv_heads * f.head_dim
    positions = train["batch_size"] * train["max_length"]
    per_layer = wb * (8 * h + 2 * kv_dim + 4 * inter)
    dropout = 0
    if train["method"] != "full" and train["lora"]["dropout"] > 0:
        dropout = wb * _targeted(f, train["lora"])[0] / max(f.layers, 1)  # a dropped-out copy of each input
    if checkpointing:
        activations = positions * (f.layers * h * wb + per_layer + dropout)
    else:
        activations = positions * f.layers * (per_layer + dropout)
    logits = positions * f.vocab * (wb + 4 + 4)
    on_device = {"weights": weights, "gradients": grads, "optimizer": optimizer, "gathered": gathered,
                 "activations": activations, "logits": logits}
    offloaded = 0.0
    if offload in ("optimizer", "all"):  # the optimizer steps on the host, on an fp32 copy of the gradient shard
        del on_device["gradients"]
        offloaded += on_device.pop("optimizer") + trained * 4 / procs
    if offload == "all":
        offloaded += on_device.pop("weights")
    if gpu:
        on_device["runtime"] = GPU_RUNTIME
    per_process = sum(on_device.values()) + (0 if gpu else offloaded)  # on CPU the host is the device
    out = {"per_process": int(per_process), "processes": procs, "peak": int(per_process * procs),
           "parts": {k: int(v) for k, v in on_device.items()}, "bf16": bf16, "zero_stage": stage, "offload": offload,
           "gradient_checkpointing": checkpointing}
    if train["method"] != "full":
        out["adapter_parameters"] = adapters
    if gpu:
        out |= {"per_gpu": int(per_process), "offloaded": int(offloaded),
                "host_per_node": int(offloaded * math.ceil(procs / max(nodes, 1)))}
    return out


def scoring_memory(f: ModelFacts, dtype: str, *, device: Device | None = None, gpus: int = 1) -> dict:
    """Bytes of multiple-choice scoring: the weights, and the logits of the positions scored at once. On GPUs
    the scorer spreads the model over the job's `gpus` (device_map="auto"); `per_gpu` counts the logits and
    GPU_RUNTIME on each, a bound for the GPU that holds the output layer."""
    from selfalign.engine.scoring import MAX_LOGIT_POSITIONS

    weights = f.parameters * BYTES[dtype]
    logits = MAX_LOGIT_POSITIONS * f.vocab * (BYTES[dtype] + 4)
    out = {"weights": weights, "logits": logits, "peak": weights + logits}
    if device is not None and device.gpu:
        gpus = max(gpus, 1)
        out |= {"gpus": gpus, "per_gpu": int(weights / gpus + logits + GPU_RUNTIME)}
        out["peak"] = weights + gpus * GPU_RUNTIME + logits
    return out


def gb(n: float | None) -> str:
    return "-" if n is None else f"{n / GiB:.1f} GB"


def waves(jobs: int, parallel: int) -> int:
    return math.ceil(jobs / max(parallel, 1)) if jobs else 0

