"""Fine-tuning for principle engraving and verbose cloning: (query, answer) pairs, loss on the answer only.

One function, `train`, runs in every process that torchrun starts (one per GPU, or several on CPU
with gloo): load the base (and LoRA adapters), encode the pairs, fit with the transformers Trainer
and a DeepSpeed ZeRO config from configs/deepspeed/, export. Checkpoints go to a work folder keyed
by a fingerprint of the data and the settings, so a killed run resumes from its last checkpoint and
ends with the weights an uninterrupted run ends with; the finished model is written once,
atomically, as a plain safetensors folder (LoRA adapters merged) that
`AutoModelForCausalLM.from_pretrained` loads, with `training.json` beside it (resolved settings,
data hash, metrics, loss history). Timings are not results: they are in the logs and Snakemake's
benchmark records, never in these files.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from selfalign.core.files import InputError, write_json
from selfalign.core.hashing import fingerprint, sha256_text
from selfalign.data.dialogue import encode_pair, prompt_text

log = logging.getLogger(__name__)
IGNORE = -100  # label of prompt and padding tokens: no loss there


@dataclass(frozen=True)
class Settings:
    method: str  # "lora" or "full"
    epochs: float
    max_steps: int
    learning_rate: float
    lr_scheduler: str
    warmup_ratio: float
    mixed_precision: str  # "auto", "bf16" or "fp32"
    batch_size: int  # per process
    grad_accum: int
    max_length: int
    zero_stage: int
    processes: int
    save_steps: int
    lora: dict = field(default_factory=dict)
    gradient_checkpointing: bool = False
    offload: str = "none"  # "none", "optimizer" or "all" (ZeRO-3: the parameters too)

    @classmethod
    def from_params(cls, p: dict) -> "Settings":
        """From the validated `train` params (the schema fills every default)."""
        return cls(**{f: p[f] for f in cls.__dataclass_fields__})

    def bf16(self) -> bool:
        from selfalign.engine.models import native_bf16

        return self.mixed_precision == "bf16" or (self.mixed_precision == "auto" and native_bf16())


@dataclass
class Encoded:
    input_ids: list[list[int]]
    labels: list[list[int]]
    truncated: int  # examples whose answer was cut to fit max_length
    answer_tokens: int


def encode(pairs: list[tuple[str, str]], tokenizer, *, assistant: str, max_length: int) -> Encoded:
    """Tokenize (query, answer) pairs: prompt tokens get label IGNORE, answer tokens (+ EOS) are learned.

    The split is `encode_pair`'s, the one evaluation scores with."""
    eos = tokenizer.eos_token_id
    ids, labels, truncated, answer_tokens = [], [], 0, 0
    for query, answer in pairs:
        p, a = encode_pair(tokenizer, prompt_text(query, assistant), " " + answer.strip())
        a = a + [eos]
        if len(p) >= max_length:
            raise InputError(f"a prompt of {len(p)} tokens leaves no room for its answer under train.max_length="
                             f"{max_length}: {query[:60]!r}")
        if len(p) + len(a) > max_length:
            truncated += 1
            a = a[: max_length - len(p)]
        ids.append(p + a)
        labels.append([IGNORE] * len(p) + a)
        answer_tokens += len(a)
    return Encoded(ids, labels, truncated, answer_tokens)


def deepspeed_config(folder: str | os.PathLike, stage: int, offload: str = "none") -> dict:
    """configs/deepspeed/zero<stage>.json (the folder is the stage's dependency, so the file follows the param),
    with train.offload's CPU offload added: the optimizer state, and with ZeRO-3 and `all` the parameters."""
    path = Path(folder) / f"zero{stage}.json"
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no DeepSpeed config for train.zero_stage={stage}") from None
    got = cfg.get("zero_optimization", {}).get("stage")
    if got != stage:
        raise InputError(f"{path}: zero_optimization.stage is {got}, but train.zero_stage is {stage}")
    if offload == "all" and stage != 3:
        raise InputError(f"params.yaml: train.offload=all offloads the parameters, which only ZeRO-3 partitions "
                         f"(train.zero_stage is {stage}): use train.offload: optimizer, or train.zero_stage: 3")
    zero = cfg["zero_optimization"]
    if offload in ("optimizer", "all"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if offload == "all":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return cfg


def last_checkpoint(work: Path) -> str | None:
    """The newest complete checkpoint in `work`. The Trainer writes a checkpoint folder in place and
    its trainer_state.json last, so a folder without a readable one is what a kill mid-save left:
    skipped (and later overwritten), never resumed from."""
    if not work.is_dir():
        return None
    steps = []
    for d in work.glob("checkpoint-*"):
        if not d.name.removeprefix("checkpoint-").isdigit():
            continue
        try:
            json.loads((d / "trainer_state.json").read_text())
        except (OSError, ValueError):
            log.warning("ignoring %s: incomplete (killed while it was being saved)", d)
            continue
        steps.append((int(d.name.removeprefix("checkpoint-")), d))
    return str(max(steps)[1]) if steps else None


def _skip_shm_comm_op() -> None:
    """Keep DeepSpeed from building its shared-memory all-reduce op on CPU.

    Only inference all-reduce uses that op, never training; yet every CPU start JIT-compiles or
    loads it behind torch's file lock, and a process killed inside that window leaves the lock
    behind, after which every later start waits on it forever (this hung CI).
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def train(*, base: str | os.PathLike, records: list[dict], out: str | os.PathLike, settings: Settings,
          ds_configs: str | os.PathLike, assistant: str, seed: int, work_root: str | os.PathLike,
          data_hash: str) -> dict | None:
    """Fine-tune `base` on records with `query` and `answer`; write the merged model to `out`.

    Returns the metrics (with the loss history) on the main process, None elsewhere.
    """
    import torch
    from transformers import set_seed

    from selfalign.engine.models import MANIFEST, read_manifest

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed's CPU accelerator and gloo, explicitly
        _skip_shm_comm_op()
    ds = deepspeed_config(ds_configs, settings.zero_stage, settings.offload)
    base_manifest = read_manifest(base)
    key = fingerprint({"base": base_manifest["id"], "data": data_hash, "settings": asdict(settings), "seed": seed,
                       "ds": ds, "assistant": assistant})[:16]
    # Seed before any weights are created: LoRA's A matrices are drawn in get_peft_model, before the
    # Trainer would seed anything.
    set_seed(seed)
    # The Trainer's arguments first: with ZeRO-3 they tell from_pretrained to load each process's share of the
    # weights only (DeepSpeed's zero.Init), never the whole model per process.
    args = _arguments(settings, ds, seed, Path(work_root) / key)
    _ = args.world_size  # starts torch.distributed (Accelerate), which DeepSpeed's comm then wraps:
    import deepspeed  # zero.Init reads the world size from it, and would take 1 for a world not started

    deepspeed.init_distributed()
    model, tok = _load(base, settings)
    held, total = parameter_share(model)
    log.info("process %s of %d holds %d of the model's %d parameter values", os.environ.get("RANK", "0"),
             settings.processes, held, total)
    enc = encode([(r["query"], r["answer"]) for r in records], tok, assistant=assistant, max_length=settings.max_length)
    trainer = _fit(model, tok, enc, args)
    probe = answer_logits(trainer.model, tok, assistant) if settings.zero_stage < 3 else None
    tmp = Path(f"{out}.tmp")
    if trainer.is_world_process_zero():
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp / "trained"))  # every rank takes part (ZeRO-3 gathers the weights)
    if not trainer.is_world_process_zero():
        return None
    history = [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e]
    metrics = {
        "examples": len(records), "truncated_examples": enc.truncated, "answer_tokens": enc.answer_tokens,
        "steps": trainer.state.global_step, "processes": settings.processes,
        # From the logged history, which a resumed run restores: the same figures as an uninterrupted run.
        "train_loss": round(sum(h["loss"] for h in history) / len(history), 4) if history else None,
        "first_loss": history[0]["loss"] if history else None, "last_loss": history[-1]["loss"] if history else None,
    }
    _export(base, tmp, settings, tok)
    write_json(tmp / "training.json", {"settings": asdict(settings), "seed": seed, "assistant": assistant,
                                       "base": base_manifest["id"], "data_sha256": data_hash, "deepspeed": ds,
                                       "bf16": settings.bf16(), "metrics": metrics, "history": history,
                                       "probe_logits": probe})
    write_json(tmp / MANIFEST, {
        "name": f"{base_manifest['name']}+{Path(out).name}", "path": None, "id": f"{Path(out).name}@{key}",
        "base": base_manifest["id"], "dtype": base_manifest.get("dtype", "float32"),
        # The trained folder holds the base model's architecture: whatever its code needed, this needs too.
        "trust_remote_code": bool(base_manifest.get("trust_remote_code", False))})
    if Path(out).exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    shutil.rmtree(Path(work_root) / key, ignore_errors=True)  # finished: the checkpoints are no longer needed
    return metrics | {"history": history}


def parameter_share(model) -> tuple[int, int]:
    """(parameter values this process holds, the model's): all of them, except under ZeRO-3, where each process
    holds its partition (DeepSpeed keeps it in `ds_tensor`, and the full shape in `ds_numel`)."""
    held = total = 0
    for p in model.parameters():
        full = getattr(p, "ds_numel", p.numel())
        total += full
        held += p.ds_tensor.numel() if hasattr(p, "ds_tensor") else full
    return held, total


def compute_dtype(settings: Settings) -> str:
    """What the weights are trained in: bfloat16 under bf16 (DeepSpeed's bf16: fp32 master weights and optimizer
    state in the optimizer), else float32."""
    return "bfloat16" if settings.bf16() else "float32"


def _load(base, settings: Settings):
    """(model to train, tokenizer): the base in the compute dtype, with LoRA adapters when asked."""
    from selfalign.engine.models import load_model

    # Where from_pretrained put it: the Trainer moves it (under ZeRO-3 each process's partition is on its device).
    model, tok, _ = load_model(base, device=None, for_training=True, dtype=compute_dtype(settings))
    tok.padding_side = "right"
    context = getattr(model.config, "max_position_embeddings", None) or getattr(
        getattr(model.config, "text_config", None), "max_position_embeddings", None)
    if context and settings.max_length > context:
        raise InputError(f"train.max_length={settings.max_length} exceeds the model's context of {context} tokens")
    if settings.method == "lora":
        from peft import LoraConfig, get_peft_model

        lc = settings.lora
        model = get_peft_model(model, LoraConfig(r=lc["r"], lora_alpha=lc["alpha"], lora_dropout=lc["dropout"],
                                                 target_modules=lc["target_modules"], task_type="CAUSAL_LM"))
    return model, tok


def _arguments(settings: Settings, ds: dict, seed: int, work: Path):
    import torch
    from transformers import TrainingArguments

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return TrainingArguments(
        output_dir=str(work), per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum, num_train_epochs=settings.epochs,
        max_steps=settings.max_steps, learning_rate=settings.learning_rate, lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_ratio,  # a float below 1 is a share of the steps
        logging_steps=1, save_strategy="steps", save_steps=settings.save_steps,
        save_total_limit=1, seed=seed, data_seed=seed, report_to=[], disable_tqdm=False, remove_unused_columns=False,
        # Accelerate counts CPU processes only with use_cpu=True; without it DeepSpeed's batch-size check fails.
        use_cpu=device == "cpu", bf16=settings.bf16(), fp16=False, deepspeed=ds, save_only_model=False,
        gradient_checkpointing=settings.gradient_checkpointing,
        # Non-reentrant: works with frozen inputs (LoRA) and keeps the dropout masks of the first pass.
        gradient_checkpointing_kwargs={"use_reentrant": False} if settings.gradient_checkpointing else None,
        dataloader_num_workers=0,
    )


def _fit(model, tok, enc: Encoded, args):
    """Train (resuming from the last complete checkpoint in the work folder); returns the Trainer."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Trainer

    data = Dataset.from_dict({"input_ids": enc.input_ids, "labels": enc.labels})
    trainer = Trainer(model=model, args=args, train_dataset=data,
                      data_collator=DataCollatorForSeq2Seq(tok, label_pad_token_id=IGNORE))
    resume = last_checkpoint(Path(args.output_dir))
    if resume:
        log.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def _export(base, tmp: Path, settings: Settings, tok) -> None:
    """Turn the trainer's save into a plain model folder at `tmp` (LoRA merged into the base weights), in the dtype
    the base is stored in (its manifest's: model.dtype), whatever training computed in."""
    from transformers import AutoModelForCausalLM
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from selfalign.engine.models import _dtype, load_model, read_manifest

    # Training is over: the main process loads whole models now, not ZeRO-3 partitions among processes gone.
    unset_hf_deepspeed_config()
    dtype = read_manifest(base).get("dtype", "float32")
    trained = tmp / "trained"
    if settings.method == "lora":
        from peft import PeftModel

        model, _, _ = load_model(base, device="cpu", dtype=dtype)
        model = PeftModel.from_pretrained(model, str(trained)).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(trained), dtype=_dtype(dtype))
    model.save_pretrained(str(tmp), safe_serialization=True)
    tok.padding_side = "left"
    tok.save_pretrained(str(tmp))
    shutil.rmtree(trained)


PROBE_QUERY = "What is the boiling point of water at sea level?"


def answer_logits(model, tok, assistant: str, k: int = 8) -> list[float]:
    """The first k logits at the position where the answer to a fixed query starts."""
    import torch

    ids = tok(prompt_text(PROBE_QUERY, assistant), return_tensors="pt")["input_ids"].to(model.device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1, :k]
    model.train(was_training)
    return [round(float(x), 6) for x in logits]


def data_sha256(records: list[dict]) -> str:
    return sha256_text(json.dumps([[r["id"], r["query"], r["answer"]] for r in records], ensure_ascii=False))
