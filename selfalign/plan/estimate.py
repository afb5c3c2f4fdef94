"""Time and memory of the stages a run would run, and the settings that cannot run, before anything runs.

Time is `jobs x start + units x rate` per kind of job (selfalign/plan/work.py says what a unit is). The
rates come from a run that was measured: this folder's last run (its Snakemake `benchmark:` records in
benchmarks/, the params dvc.lock recorded and metrics/), else a timings snapshot (`selfalign timings
--write`, e.g. bench/pipeline_timings.json, or another machine's given with `--rates`). The engine start
is fitted over every generation job of that run (seconds = start + rate x budget, least squares with
both non-negative), each stage then gets its own rate; training likewise. Where the model differs from
the one the rates were measured on, rates scale with the parameter count (decoding and training are
compute-bound) and say so.

Memory is modelled from the model's config.json (no weights are loaded): weights in the dtype a stage
runs in, the KV cache for the planned concurrency (vLLM on CPU allocates `VLLM_CPU_KVCACHE_SPACE`),
the logits of the positions computed at once, and training state by ZeRO stage.
"""
from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from selfalign.core.files import InputError
from selfalign.plan.work import StageWork

GiB = 1024 ** 3
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
CHARS_PER_TOKEN = 4.0  # without a tokenizer (before the `model` stage has run): a common rule of thumb
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


def model_facts(root: Path, params: dict) -> tuple[ModelFacts | None, object | None]:
    """(facts, tokenizer) of the model params.yaml names, read from its config; (None, None) while that
    model has no folder yet (an embedded model before the `model` stage has run, a hub id not cached)."""
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
        parameters = sum(p.numel() for p in AutoModelForCausalLM.from_config(config, trust_remote_code=trust).parameters())
    text = config.get_text_config()
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    found = limits.context_length(model_dir) if model_dir else None
    context = found[0] if found else getattr(text, "max_position_embeddings", None)
    tok = limits.load_tokenizer(model_dir) if model_dir else None
    if tok is None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(src, trust_remote_code=trust)
    return ModelFacts(src, parameters, text.num_hidden_layers, getattr(text, "num_key_value_heads", heads) or heads,
                      head_dim, text.hidden_size, text.vocab_size, context), tok


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


def kv_bytes_per_token(f: ModelFacts, dtype: str) -> int:
    return 2 * f.layers * f.kv_heads * f.head_dim * BYTES[dtype]


def generation_memory(f: ModelFacts, backend: str, *, seqs: int, dtype: str, tokens_per_seq: int) -> dict:
    """Bytes of one generation job decoding `seqs` sequences at once: weights, KV cache (what they need, and
    what vLLM allocates), logits; and how many sequences the allocated KV cache holds."""
    from selfalign.engine.vllm_backend import DEFAULT_CPU_KVCACHE_GIB

    per_seq = tokens_per_seq * kv_bytes_per_token(f, dtype)
    need = seqs * per_seq
    out = {"weights": f.parameters * BYTES[dtype], "kv_needed": need, "logits": seqs * f.vocab * 4}
    if backend == "vllm" and not _cuda():
        space = float(os.environ.get("VLLM_CPU_KVCACHE_SPACE", DEFAULT_CPU_KVCACHE_GIB)) * GiB
        out |= {"kv_allocated": int(space), "seqs_that_fit": int(space // per_seq) if per_seq else None}
    out["peak"] = out["weights"] + max(need, out.get("kv_allocated", 0)) + out["logits"]
    return out


def training_memory(f: ModelFacts, train: dict) -> dict:
    """Bytes of a training job, all processes: fp32 master weights, gradients and Adam's two moments by
    ZeRO stage (2: gradients and optimizer state sharded over the processes; 3: the weights too; LoRA
    trains a few adapters, so only the weights count), and activations: the logits of a batch (bf16,
    their fp32 copy and its gradient) and the hidden states of every layer."""
    procs, full = train["processes"], train["method"] == "full"
    weights = f.parameters * 4 / (procs if train["zero_stage"] == 3 else 1)
    states = (12 * f.parameters / procs) if full else 0
    positions = train["batch_size"] * train["max_length"]
    activations = positions * f.vocab * (2 + 4 + 4) + positions * f.hidden * f.layers * 2 * 16
    per_process = weights + states + activations
    return {"per_process": int(per_process), "processes": procs, "peak": int(per_process * procs)}


def scoring_memory(f: ModelFacts, dtype: str) -> dict:
    from selfalign.engine.scoring import MAX_LOGIT_POSITIONS

    weights = f.parameters * BYTES[dtype]
    return {"weights": weights, "logits": MAX_LOGIT_POSITIONS * f.vocab * (BYTES[dtype] + 4),
            "peak": weights + MAX_LOGIT_POSITIONS * f.vocab * (BYTES[dtype] + 4)}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def gb(n: float | None) -> str:
    return "-" if n is None else f"{n / GiB:.1f} GB"


def waves(jobs: int, parallel: int) -> int:
    return math.ceil(jobs / max(parallel, 1)) if jobs else 0

