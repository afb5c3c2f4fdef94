"""The two steps of a generation stage, as its scripts share them: generate one shard (journaled,
resumable), and collect the shards into the stage's validated outputs."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses

from selfalign.core.config import get_key
from selfalign.core.files import replace_together
from selfalign.data import paths
from selfalign.engine import devices, limits
from selfalign.engine.journal import clear_journals, run_shard, shard_slice
from selfalign.engine.types import Decoding, Engine


def shard_parser(description: str, *flags: str, journal: str):
    """The command line of a generation shard: the stage's own required `flags`, then --params, --shard,
    --out, --journal-dir (by default the journal's folder, selfalign/data/paths.py journal_dir) and --gpus.
    Read it with `parse_args`."""
    ap = argparse.ArgumentParser(description=description)
    for flag in (*flags, "--params", "--out"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--shard", type=int, required=True)
    ap.add_argument("--journal-dir", default=paths.journal_dir(journal))
    return with_gpus(ap)


def with_gpus(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Where a generation job computes (rules/common.smk PLACEMENT): not params, they change no output."""
    ap.add_argument("--gpus", type=int, default=0, help="GPUs this job takes for itself (generation.gpus_per_shard)")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.9,
                    help="the share of each GPU vLLM takes (generation.gpu_memory_utilization)")
    return ap


def placed(engine: Engine, a: argparse.Namespace, max_model_len: int | None) -> Engine:
    """`engine` sized for this job: its longest sequence, and the share of each GPU it may take."""
    return dataclasses.replace(engine, max_model_len=max_model_len, gpu_memory_utilization=a.gpu_memory_utilization)


def parse_args(ap: argparse.ArgumentParser) -> argparse.Namespace:
    """A generation job's arguments; its GPUs are claimed before anything touches CUDA."""
    a = ap.parse_args()
    devices.claim(a.gpus, setting="generation.gpus_per_shard")
    return a


def generate_shard(items, a, p: dict, *, decoding: str, stop, blame=None, tokenizer=None, **run_kw) -> None:
    """Shard `a.shard` of a stage's items: check that its prompts fit the model's context (where `blame`
    says what to name when one does not), then generate it with the journal and write `a.out`.
    `decoding`: the params key of the stage's decoding, e.g. "align.decoding"."""
    shard = shard_slice(items, a.shard, p["generation"]["shards"])
    settings = get_key(p, decoding)
    longest = limits.check_prompts(shard, model_dir=a.model, max_new_tokens=settings["max_new_tokens"],
                                   setting=f"{decoding}.max_new_tokens", blame=blame or default_blame,
                                   tokenizer=tokenizer)
    engine = placed(Engine.from_params(p), a, limits.model_len(a.model, longest, settings["max_new_tokens"]))
    run_shard(shard, model_dir=a.model, decoding=Decoding.from_params(settings), seed=p["seed"],
              engine=engine, out_path=a.out, journal_dir=a.journal_dir, stop=stop, **run_kw)


def default_blame(key: str) -> str:
    return f"the prompt of {key}"


def collect_parser(description: str, *flags: str, rule: str, journal: str):
    """The command line of a collect step: --shards, the step's own required `flags`, --rule and --journal-dir."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--shards", nargs="+", required=True)
    for flag in flags:
        ap.add_argument(flag, required=True)
    ap.add_argument("--rule", default=rule)
    ap.add_argument("--journal-dir", default=paths.journal_dir(journal))
    return ap


@contextlib.contextmanager
def collecting(journal_dir: str):
    """A collect step's writes: they replace the old outputs together or not at all; once they have, the
    stage's journals are cleared (the shards they resume are merged)."""
    with replace_together():
        yield
    clear_journals(journal_dir)
