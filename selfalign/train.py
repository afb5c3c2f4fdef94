"""Fine-tuning for principle engraving and verbose cloning: (query, answer) pairs, loss on the answer only.

One function, `train`, runs in every process that torchrun starts (one per GPU, or several on CPU
with gloo). It uses the transformers Trainer with a DeepSpeed ZeRO config from configs/deepspeed/.
Checkpoints go to a work folder keyed by a fingerprint of the data and the settings, so a killed run
resumes from its last checkpoint; the finished model is written once, atomically, as a plain
safetensors folder (LoRA adapters merged) that `AutoModelForCausalLM.from_pretrained` loads, with
`training.json` beside it (resolved settings, data hash, metrics).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .dialogue import prompt_text
from .io import InputError, write_json
from .records import fingerprint, sha256_text

log = logging.getLogger(__name__)
IGNORE = -100  # label of prompt and padding tokens: no loss there


@dataclass(frozen=True)
class Settings:
    method: str  # "lora" or "full"
    epochs: float
    learning_rate: float
    batch_size: int  # per process
    grad_accum: int
    max_length: int
    zero_stage: int
    processes: int
    save_steps: int
    lora: dict = field(default_factory=dict)
    max_steps: int = -1

    @classmethod
    def from_params(cls, p: dict) -> "Settings":
        return cls(method=p["method"], epochs=float(p["epochs"]), learning_rate=float(p["learning_rate"]),
                   batch_size=int(p["batch_size"]), grad_accum=int(p["grad_accum"]), max_length=int(p["max_length"]),
                   zero_stage=int(p["zero_stage"]), processes=int(p["processes"]), save_steps=int(p["save_steps"]),
                   lora=dict(p.get("lora", {})), max_steps=int(p.get("max_steps", -1)))


@dataclass
class Encoded:
    input_ids: list[list[int]]
    labels: list[list[int]]
    truncated: int  # examples whose answer was cut to fit max_length
    answer_tokens: int


def encode(pairs: list[tuple[str, str]], tokenizer, *, assistant: str, max_length: int) -> Encoded:
    """Tokenize (query, answer) pairs: prompt tokens get label IGNORE, answer tokens (+ EOS) are learned."""
    eos = tokenizer.eos_token_id
    ids, labels, truncated, answer_tokens = [], [], 0, 0
    for query, answer in pairs:
        p = tokenizer(prompt_text(query, assistant))["input_ids"]
        a = tokenizer(" " + answer.strip(), add_special_tokens=False)["input_ids"] + [eos]
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


def collate(pad_id: int):
    import torch

    def fn(batch: list[dict]) -> dict:
        n = max(len(b["input_ids"]) for b in batch)
        ids = [b["input_ids"] + [pad_id] * (n - len(b["input_ids"])) for b in batch]
        labels = [b["labels"] + [IGNORE] * (n - len(b["labels"])) for b in batch]
        mask = [[1] * len(b["input_ids"]) + [0] * (n - len(b["input_ids"])) for b in batch]
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}

    return fn


def deepspeed_config(path: str | os.PathLike, stage: int) -> dict:
    cfg = json.loads(Path(path).read_text())
    got = cfg.get("zero_optimization", {}).get("stage")
    if got != stage:
        raise InputError(f"{path}: zero_optimization.stage is {got}, but train.zero_stage is {stage}")
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


def train(*, base: str | os.PathLike, records: list[dict], out: str | os.PathLike, settings: Settings,
          ds_config: str | os.PathLike, assistant: str, seed: int, work_root: str | os.PathLike,
          data_hash: str) -> dict | None:
    """Fine-tune `base` on records with `query` and `answer`; write the merged model to `out`.

    Returns the metrics on the main process (None elsewhere).
    """
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

    from .models import MANIFEST, load, read_manifest

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed's CPU accelerator and gloo, explicitly
    base_manifest = read_manifest(base)
    # Seed before any weights are created: LoRA's A matrices are drawn in get_peft_model, before the
    # Trainer would seed anything.
    set_seed(seed)
    model, tok, _ = load(base, device="cpu", for_training=True)
    tok.padding_side = "right"
    context = getattr(model.config, "max_position_embeddings", None) or getattr(
        getattr(model.config, "text_config", None), "max_position_embeddings", None)
    if context and settings.max_length > context:
        raise InputError(f"train.max_length={settings.max_length} exceeds the model's context of {context} tokens")
    enc = encode([(r["query"], r["answer"]) for r in records], tok, assistant=assistant, max_length=settings.max_length)
    data = Dataset.from_dict({"input_ids": enc.input_ids, "labels": enc.labels})
    key = fingerprint({"base": base_manifest["id"], "data": data_hash, "settings": asdict(settings), "seed": seed,
                       "ds": json.loads(Path(ds_config).read_text()), "assistant": assistant})[:16]
    work = Path(work_root) / key
    if settings.method == "lora":
        from peft import LoraConfig, get_peft_model

        lc = settings.lora
        model = get_peft_model(model, LoraConfig(r=int(lc.get("r", 16)), lora_alpha=int(lc.get("alpha", 32)),
                                                 lora_dropout=float(lc.get("dropout", 0.0)),
                                                 target_modules=lc.get("target_modules", "all-linear"),
                                                 task_type="CAUSAL_LM"))
    elif settings.method != "full":
        raise InputError(f"train.method must be 'lora' or 'full', not {settings.method!r}")
    cpu = not torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(work), per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum, num_train_epochs=settings.epochs,
        max_steps=settings.max_steps, learning_rate=settings.learning_rate, lr_scheduler_type="constant",
        logging_steps=1, save_strategy="steps", save_steps=settings.save_steps, save_total_limit=1,
        seed=seed, data_seed=seed, report_to=[], disable_tqdm=False, remove_unused_columns=False,
        # Accelerate counts CPU processes only with use_cpu=True; without it DeepSpeed's batch-size check fails.
        use_cpu=cpu, bf16=False, fp16=False,
        deepspeed=deepspeed_config(ds_config, settings.zero_stage), save_only_model=False,
        dataloader_num_workers=0,
    )
    history: list[dict] = []
    t0 = time.perf_counter()

    class StepLog(TrainerCallback):
        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                history.append({"step": state.global_step, "loss": float(logs["loss"]),
                                "seconds": round(time.perf_counter() - t0, 3)})

    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collate(tok.pad_token_id),
                      callbacks=[StepLog()])
    resume = last_checkpoint(work)
    if resume:
        log.info("resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=resume)
    # Logits of the model as trained (ZeRO-2 keeps whole weights on every rank), to prove that the saved
    # folder reloads into the same model.
    probe = answer_logits(trainer.model, tok, assistant) if settings.zero_stage < 3 else None
    tmp = Path(f"{out}.tmp")
    if trainer.is_world_process_zero():
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp / "trained"))  # every rank takes part (ZeRO-3 gathers the weights)
    if not trainer.is_world_process_zero():
        return None
    _finalize(base, tmp, settings, tok)
    runtime = result.metrics.get("train_runtime") or (time.perf_counter() - t0)
    steps = result.global_step
    tokens = enc.answer_tokens * settings.epochs if settings.max_steps < 0 else None
    metrics = {
        "examples": len(records), "truncated_examples": enc.truncated, "answer_tokens": enc.answer_tokens,
        "steps": steps, "train_loss": round(float(result.training_loss), 4),
        "first_loss": history[0]["loss"] if history else None, "last_loss": history[-1]["loss"] if history else None,
        "runtime_s": round(runtime, 2), "processes": settings.processes,
        "answer_tokens_per_s": round(tokens / runtime, 2) if tokens else None,
        "resumed_from": Path(resume).name if resume else None,
    }
    write_json(tmp / "training.json", {"settings": asdict(settings), "seed": seed, "assistant": assistant,
                                       "base": base_manifest["id"], "data_sha256": data_hash, "deepspeed": args.deepspeed,
                                       "metrics": metrics, "history": history, "probe_logits": probe})
    write_json(tmp / MANIFEST, {"name": f"{base_manifest['name']}+{Path(out).name}", "path": None,
                                "id": f"{Path(out).name}@{key}", "base": base_manifest["id"],
                                "dtype": base_manifest.get("dtype", "float32"), "trust_remote_code": False})
    if Path(out).exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    shutil.rmtree(work, ignore_errors=True)  # finished: the checkpoints are no longer needed
    metrics["history"] = history
    return metrics


def _finalize(base, tmp: Path, settings: Settings, tok) -> None:
    """Turn the trainer's save into a plain model folder at `tmp` (LoRA merged into the base weights)."""
    from transformers import AutoModelForCausalLM

    from .models import load

    trained = tmp / "trained"
    if settings.method == "lora":
        from peft import PeftModel

        model, _, _ = load(base, device="cpu")
        model = PeftModel.from_pretrained(model, str(trained)).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(trained))
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
