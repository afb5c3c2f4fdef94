"""The generation engine every stage shares: batched, sharded, seeded, resumable.

A stage builds its full list of `Item`s deterministically; shard k of n takes a contiguous slice.
Each batch is sampled under a seed derived from the global seed and the batch's item keys, so a
shard gives the same text whether it runs alone, on another node, or resumes after a kill.
Finished batches are appended to a journal keyed by a fingerprint of everything that determines
the output (model, decoding, seed, batch size, prompts); a rerun replays the journal and generates
only what is missing. The journal is the only place partial work lives: outputs are written once,
atomically, when a shard is complete.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .io import InputError, write_jsonl
from .records import fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decoding:
    temperature: float  # 0: greedy
    top_p: float
    max_new_tokens: int
    top_k: int = 50  # 0: no top-k cut (50 is transformers' default, which sampling used before it was a setting)

    @classmethod
    def from_params(cls, d: dict) -> "Decoding":
        return cls(float(d["temperature"]), float(d["top_p"]), int(d["max_new_tokens"]), int(d["top_k"]))


@dataclass(frozen=True)
class Engine:
    """How the model runs: settings that change the outputs, so they key the journal and travel in every
    record's lineage."""

    batch_size: int
    dtype: str  # resolved inference dtype: float32 or bfloat16
    prefix_cache: bool  # prefill the prompts' shared prefix once (selfalign/prefix_cache.py)

    @classmethod
    def from_params(cls, p: dict) -> "Engine":
        """From a params slice holding generation.batch_size, generation.prefix_cache and model.inference_dtype."""
        from .models import inference_dtype

        return cls(batch_size=int(p["generation"]["batch_size"]), dtype=inference_dtype(p["model"]["inference_dtype"]),
                   prefix_cache=bool(p["generation"]["prefix_cache"]))


@dataclass(frozen=True)
class Item:
    """One prompt to complete. `key` is unique within a stage; `meta` travels to the output."""

    key: str
    prompt: str
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Generation:
    text: str  # the continuation, cut at the first stop string
    finished: bool  # ended by EOS or a stop string, not by max_new_tokens
    new_tokens: int
    stopped_by: str | None = None  # "eos", the stop string that ended it, or None (max_new_tokens)


@dataclass(frozen=True)
class TextStop:
    """A stop condition on the decoded continuation, for ends a fixed string cannot express.

    `find(text)` returns where to cut the continuation, or None to go on; `name` identifies the rule
    in journals and in `Generation.stopped_by`.
    """

    name: str
    find: Callable[[str], "int | None"]


Stop = "str | TextStop"


def _stop_names(stop) -> list[str]:
    return [s if isinstance(s, str) else s.name for s in stop]


def shard_slice(items: Sequence[Item], shard: int, num_shards: int) -> list[Item]:
    if not 0 <= shard < num_shards:
        raise InputError(f"shard {shard} is outside 0..{num_shards - 1}")
    n = len(items)
    return list(items[shard * n // num_shards : (shard + 1) * n // num_shards])


def batch_seed(seed: int, keys: Sequence[str]) -> int:
    return int(fingerprint([seed, list(keys)])[:8], 16)


def _find(text: str, s) -> int | None:
    if isinstance(s, str):
        i = text.find(s)
        return i if i >= 0 else None
    return s.find(text)


def _cut(text: str, stop: Sequence) -> tuple[str, str | None]:
    """Text up to the earliest stop, and that stop's name (None when no stop matched)."""
    cuts = [(i, name) for s, name in zip(stop, _stop_names(stop)) if (i := _find(text, s)) is not None]
    if not cuts:
        return text, None
    i, name = min(cuts)
    return text[:i], name


def _stop_criteria(tokenizer, prompt_len: int, stop: Sequence):
    """Stop a row once its decoded continuation contains a stop (a string or a TextStop).

    One criterion for both kinds: transformers' own `stop_strings` builds a table over the whole
    vocabulary on every generate() call (about 4 s for Gemma's 262k tokens), which costs more than
    decoding the few rows of a batch at each step.
    """
    import torch
    from transformers import StoppingCriteria

    class Stops(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=True)
            done = [any(_find(t, s) is not None for s in stop) for t in texts]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return Stops()


def sampling_candidates(scores, decoding: Decoding):
    """(probabilities, token ids) of the tokens that temperature, top-k and top-p sampling can draw, per row.

    The same distribution as transformers' temperature, top-k and top-p warpers, computed on the top-k
    candidates only: transformers sorts the whole vocabulary and draws over it at every step, and with
    Gemma's 262k tokens that took about 60 ms of a ~220 ms decode step at batch 8 on 2 CPU cores.
    """
    import torch

    scores = scores.float() / decoding.temperature
    vocab = scores.shape[-1]
    k = decoding.top_k if 0 < decoding.top_k < vocab else vocab
    top, index = torch.topk(scores, k, dim=-1)  # sorted, largest first
    if k < vocab:
        # As transformers does, a token tied with the k-th stays in (bf16 logits tie often).
        kth = top[:, -1:]
        tied = int((scores >= kth).sum(dim=-1).max())
        if tied > k:
            top, index = torch.topk(scores, tied, dim=-1)
            top = top.masked_fill(top < kth, float("-inf"))
    probs = torch.softmax(top, dim=-1)
    # Nucleus: keep a candidate while the mass ranked above it is below top_p (the first is always kept).
    probs = probs.masked_fill(torch.cumsum(probs, dim=-1) - probs >= decoding.top_p, 0.0)
    return probs / probs.sum(dim=-1, keepdim=True), index


def _sampler(decoding: Decoding):
    """Sampling as the last logits processor of a greedy generate(): it draws a token from
    `sampling_candidates` (torch's global generator, seeded per batch) and leaves every other token at -inf."""
    import torch
    from transformers import LogitsProcessor

    class Sample(LogitsProcessor):
        def __call__(self, input_ids, scores):
            probs, index = sampling_candidates(scores, decoding)
            token = index.gather(-1, torch.multinomial(probs, 1))
            return torch.full_like(scores, float("-inf")).scatter_(-1, token, 0.0)

    return Sample()


def _shared_prefix(rows) -> int:
    """Tokens every row shares and the prefix cache prefills once (every row keeps at least its last token
    to prefill inside generate())."""
    from .prefix_cache import common_prefix_len

    return min(common_prefix_len(rows), min(len(r) for r in rows) - 1)


def replay_prefix(tokenizer, prompts: Sequence[str], prefix: "PrefixCache") -> None:
    """Extend `prefix` as `generate_batch` would for `prompts`, without generating.

    The cache extends the kept prefix from batch to batch, and a prefix computed in pieces rounds
    differently from one computed at once (bf16 especially). A resumed shard replays the batches its
    journal holds, so that its cache, and so its samples, are those of an uninterrupted run.
    """
    rows = tokenizer(list(prompts))["input_ids"]
    shared = _shared_prefix(rows)
    if shared > 0:
        prefix.states(rows[0][:shared])


def generate_batch(model, tokenizer, prompts: Sequence[str], decoding: Decoding, *, seed: int,
                   stop: Sequence = (), prefix: "PrefixCache | None" = None) -> list[Generation]:
    """Complete `prompts` in one generate() call (left padded). `stop`: strings and TextStops.

    With `prefix` (a PrefixCache of this model), the tokens the prompts share are prefilled once and
    reused (see selfalign/prefix_cache.py); without it, every row is prefilled in full.
    """
    import torch

    from .prefix_cache import generation_cache, left_padded

    rows = tokenizer(list(prompts))["input_ids"]
    pad = tokenizer.pad_token_id
    ids, mask = left_padded(rows, pad, model.device)
    torch.manual_seed(seed)
    # Greedy generate(); sampling, when asked for, is the last logits processor (see _sampler).
    kwargs = dict(do_sample=False, max_new_tokens=decoding.max_new_tokens, pad_token_id=pad,
                  temperature=None, top_p=None, top_k=None)
    if decoding.temperature > 0:
        kwargs.update(logits_processor=[_sampler(decoding)])
    if stop:
        kwargs.update(stopping_criteria=[_stop_criteria(tokenizer, ids.shape[1], stop)])
    if prefix is not None:
        shared = _shared_prefix(rows)
        if shared > 0:
            kwargs.update(past_key_values=generation_cache(model, prefix, rows, shared, pad))
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    new = out[:, ids.shape[1] :]
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    results = []
    for row in new.tolist():
        n = len(row)
        while n and row[n - 1] == pad and pad not in eos:
            n -= 1  # trailing padding after this row finished
        hit_eos = any(t in eos for t in row[:n])
        if hit_eos:
            n = next(i for i, t in enumerate(row) if t in eos)
        text = tokenizer.decode(row[:n], skip_special_tokens=True)
        text, hit_stop = _cut(text, stop)
        stopped_by = hit_stop or ("eos" if hit_eos else None)
        results.append(Generation(text=text, finished=stopped_by is not None, new_tokens=n, stopped_by=stopped_by))
    return results


class Journal:
    """Append-only record of finished batches for one shard, valid for one fingerprint.

    A kill can cut the last line short; that batch is generated again, and the torn tail is dropped
    before the next append so that later batches start on a line of their own.
    """

    def __init__(self, directory: str | os.PathLike, key: str):
        self.path = Path(directory) / f"{key}.jsonl"

    def load(self) -> dict[int, list[dict]]:
        done: dict[int, list[dict]] = {}
        if not self.path.exists():
            return done
        with open(self.path, "rb") as f:
            for line in f:
                try:
                    entry = json.loads(line) if line.endswith(b"\n") else None
                except json.JSONDecodeError:
                    entry = None
                if entry is None:
                    break  # the tail of a write cut short by a kill: redo that batch
                done[entry["batch"]] = entry["results"]
        return done

    def append(self, batch: int, results: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            f.seek(0)
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)  # drop a torn last line
            f.seek(0, os.SEEK_END)
            f.write((json.dumps({"batch": batch, "results": results}, ensure_ascii=False) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())


def run_shard(
    items: Sequence[Item],
    *,
    model_dir: str | os.PathLike,
    decoding: Decoding,
    seed: int,
    engine: Engine,
    out_path: str | os.PathLike | None,
    journal_dir: str | os.PathLike,
    stop: Sequence = (),
    model_and_tokenizer=None,
    on_batch: Callable[[int], None] | None = None,
    annotate: Callable[[object, object, list[dict]], None] | None = None,
) -> list[dict]:
    """Generate every item of one shard and write `out_path` (JSONL, one row per item, in order; None: only
    return the rows).

    Each row: key, meta, prompt_hash, output, finished, stopped_by, new_tokens, model, decoding, engine, seed.
    `model_and_tokenizer`: an already loaded pair (tests), used as it is. `annotate(model, tokenizer, rows)`
    may add fields to the finished rows with the same model (e.g. a score), before they are written.
    """
    from tqdm import tqdm

    from .models import load_model, read_manifest
    from .prefix_cache import PrefixCache

    manifest = read_manifest(model_dir)
    size = engine.batch_size
    batches = [list(items[i : i + size]) for i in range(0, len(items), size)]
    key = fingerprint({
        "model": manifest["id"], "decoding": asdict(decoding), "seed": seed, "engine": asdict(engine),
        "stop": _stop_names(stop), "items": [[it.key, it.prompt] for it in items],
    })[:24]
    journal = Journal(journal_dir, key)
    done = journal.load()
    name = Path(out_path).name if out_path else key
    if done:
        log.info("resuming %s: %d of %d batches already done", name, len(done), len(batches))
    todo = [b for b in range(len(batches)) if b not in done]
    if (todo or annotate) and model_and_tokenizer is None:
        model, tok, _ = load_model(model_dir, dtype=engine.dtype)
    elif todo or annotate:
        model, tok = model_and_tokenizer
    prefix = PrefixCache(model) if todo and engine.prefix_cache else None
    replayed = 0
    for b in tqdm(todo, desc=f"generate {name}", unit="batch", initial=len(done), total=len(batches)):
        if prefix is not None:
            for d in range(replayed, b):  # batches the journal holds (see replay_prefix)
                replay_prefix(tok, [it.prompt for it in batches[d]], prefix)
        replayed = b + 1
        batch = batches[b]
        s = batch_seed(seed, [it.key for it in batch])
        gens = generate_batch(model, tok, [it.prompt for it in batch], decoding, seed=s, stop=stop, prefix=prefix)
        journal.append(b, [asdict(g) | {"seed": s} for g in gens])
        done[b] = [asdict(g) | {"seed": s} for g in gens]
        if on_batch is not None:
            on_batch(b)
    rows = []
    for b, batch in enumerate(batches):
        for it, g in zip(batch, done[b]):
            rows.append({
                "key": it.key, "meta": it.meta, "prompt_hash": fingerprint(it.prompt)[:16],
                "output": g["text"], "finished": g["finished"], "stopped_by": g.get("stopped_by"),
                "new_tokens": g["new_tokens"],
                "model": manifest["id"], "decoding": asdict(decoding), "engine": asdict(engine), "seed": g["seed"],
            })
    if annotate is not None:
        annotate(model, tok, rows)
    if out_path is not None:
        write_jsonl(out_path, rows)
    return rows


def clear_journals(journal_dir: str | os.PathLike) -> None:
    """Called by a stage's collect step once its output is written: partial work is no longer needed."""
    d = Path(journal_dir)
    if d.is_dir():
        for p in d.glob("*.jsonl"):
            p.unlink()


def read_shards(paths: Sequence[str | os.PathLike]) -> list[dict]:
    from .io import read_jsonl

    rows = []
    for p in sorted(paths, key=str):
        rows.extend(read_jsonl(p, required=("key", "meta", "output", "finished"), allow_empty=True))
    return rows
