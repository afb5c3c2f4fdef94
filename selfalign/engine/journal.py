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
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from selfalign.core.files import InputError, write_jsonl
from selfalign.core.hashing import fingerprint
from selfalign.engine.types import Decoding, Engine, Item, stop_names

if TYPE_CHECKING:
    from selfalign.engine.backends import SharedEngine

log = logging.getLogger(__name__)


def shard_slice(items: Sequence[Item], shard: int, num_shards: int) -> list[Item]:
    if not 0 <= shard < num_shards:
        raise InputError(f"shard {shard} is outside 0..{num_shards - 1}")
    n = len(items)
    return list(items[shard * n // num_shards : (shard + 1) * n // num_shards])


def batch_seed(seed: int, keys: Sequence[str]) -> int:
    return int(fingerprint([seed, list(keys)])[:8], 16)


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
            end = f.seek(0, os.SEEK_END)
            if end:
                f.seek(end - 1)
                if f.read(1) != b"\n":
                    f.truncate(_line_start(f, end))  # drop a torn last line
            f.write((json.dumps({"batch": batch, "results": results}, ensure_ascii=False) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())


def _line_start(f, end: int, chunk: int = 1 << 16) -> int:
    """Where the line holding byte `end` - 1 starts: read backwards, only as far as the last newline."""
    pos = end
    while pos > 0:
        step = min(chunk, pos)
        f.seek(pos - step)
        i = f.read(step).rfind(b"\n")
        if i >= 0:
            return pos - step + i + 1
        pos -= step
    return 0


def journal_key(items: Sequence[Item], *, model_id: str, decoding: Decoding, seed: int, engine: Engine,
                stop: Sequence) -> str:
    """The fingerprint of everything that determines a shard's outputs: a journal is reused only under it."""
    return fingerprint({
        "model": model_id, "decoding": asdict(decoding), "seed": seed, "engine": engine.lineage(),
        "stop": stop_names(stop), "items": [[it.key, it.prompt] for it in items],
    })[:24]


def output_row(it: Item, g: dict, *, model_id: str, decoding: Decoding, engine: Engine) -> dict:
    """One row of a shard's output: the item, its generation (as journaled) and the settings that made it."""
    return {
        "key": it.key, "meta": it.meta, "prompt_hash": fingerprint(it.prompt)[:16],
        "output": g["text"], "finished": g["finished"], "stopped_by": g.get("stopped_by"),
        "new_tokens": g["new_tokens"],
        "model": model_id, "decoding": asdict(decoding), "engine": engine.lineage(), "seed": g["seed"],
    }


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
    backend=None,
    shared: "SharedEngine | None" = None,
    on_batch: Callable[[int], None] | None = None,
    annotate: Callable[[object, object, list[dict]], None] | None = None,
) -> list[dict]:
    """Generate every item of one shard and write `out_path` (JSONL, one row per item, in order; None: only
    return the rows).

    Each row: key, meta, prompt_hash, output, finished, stopped_by, new_tokens, model, decoding, engine, seed.
    `backend`: an open backend of this model and engine (selfalign/engine/backends.py), for a job that runs
    several shards or rounds with one engine; by default one is opened when there is something to generate.
    `shared`: a job's one engine for several checkpoints (selfalign/engine/backends.py), given this model's
    weights when there is something to generate.
    `annotate(model, tokenizer, rows)` may add fields to the finished rows with the model loaded in
    transformers (e.g. a score), before they are written.
    """
    from tqdm import tqdm

    from selfalign.engine.backends import open_backend
    from selfalign.engine.models import load_model, read_manifest

    manifest = read_manifest(model_dir)
    batches = [list(items[i : i + engine.batch_size]) for i in range(0, len(items), engine.batch_size)]
    key = journal_key(items, model_id=manifest["id"], decoding=decoding, seed=seed, engine=engine, stop=stop)
    journal = Journal(journal_dir, key)
    done = journal.load()
    name = Path(out_path).name if out_path else key
    # Progress names the job (the journal's stage and the shard's file) and counts prompts over the whole shard.
    job = Path(journal_dir).name + (f" shard {Path(out_path).stem}" if out_path else "")
    if done:
        log.info("resuming %s: %d of %d batches already done", name, len(done), len(batches))
    todo = [b for b in range(len(batches)) if b not in done]
    own = bool(todo) and backend is None and shared is None  # opened here, for this shard alone
    if todo and backend is None:
        backend = shared(model_dir) if shared is not None else open_backend(model_dir, engine)
    if todo:
        backend.reset()  # a shard's outputs depend on its own batches only, not on a previous call's
    replayed = 0
    bar = tqdm(desc=f"generate {job}", unit="prompt", total=len(items), initial=sum(len(batches[b]) for b in done))
    for b in todo:
        for d in range(replayed, b):  # batches the journal holds (see replay_prefix)
            backend.replay([it.prompt for it in batches[d]])
        replayed = b + 1
        batch = batches[b]
        s = batch_seed(seed, [it.key for it in batch])
        gens = backend.generate([it.prompt for it in batch], decoding, seed=s, stop=stop)
        done[b] = [asdict(g) | {"seed": s} for g in gens]
        journal.append(b, done[b])
        bar.update(len(batch))
        if on_batch is not None:
            on_batch(b)
    bar.close()
    rows = [output_row(it, g, model_id=manifest["id"], decoding=decoding, engine=engine)
            for b, batch in enumerate(batches) for it, g in zip(batch, done[b])]
    if annotate is not None:
        model_and_tokenizer = getattr(backend, "model", None), getattr(backend, "tokenizer", None)
        if model_and_tokenizer[0] is None:
            if own:  # an engine without a transformers model (vLLM): never two copies of the model at once
                backend.close()
            model_and_tokenizer = load_model(model_dir, dtype=engine.dtype)[:2]
        annotate(*model_and_tokenizer, rows)
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
    from selfalign.core.files import read_jsonl

    rows = []
    for p in sorted(paths, key=str):
        rows.extend(read_jsonl(p, required=("key", "meta", "output", "finished"), allow_empty=True))
    return rows
