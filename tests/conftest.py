"""Shared fixtures: a real tokenizer (from the embedded SmolLM2 GGUF) and tiny random models built from a config.

A tiny random model proves the plumbing, not the model; tests marked `slow` run the real embedded model.
"""
from __future__ import annotations

import os
import runpy
import shutil
import sys
import time
from pathlib import Path

import pytest

from pipeline import committed_tree

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
# Converting the GGUF tokenizer takes ~10 s; keep the result across test sessions.
CACHE = Path(os.environ.get("SELFALIGN_TEST_CACHE", ROOT / ".selfalign" / "test-cache"))


@pytest.fixture(scope="session")
def committed(tmp_path_factory) -> Path:
    """The repo as committed (tests/pipeline.py committed_tree): the committed run's metrics, timings and README,
    whatever a run of `make repro` here has written since."""
    return committed_tree(tmp_path_factory.mktemp("committed"))


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    out = CACHE / "smollm2-tokenizer"
    if not (out / "tokenizer_config.json").exists():
        from transformers import AutoTokenizer

        from selfalign.engine.models import EMBEDDED

        gguf = EMBEDDED["smollm2-135m-instruct"].gguf(CACHE)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tmp = out.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tok.save_pretrained(tmp)
        tmp.rename(out)
    return out


def build_tiny_model(tokenizer_dir: Path, out: Path, *, seed: int = 0, layers: int = 2, hidden: int = 64) -> Path:
    """A random Llama (~3M parameters, most of them the embedding) saved as a plain HF folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_tiny_gemma3(tokenizer_dir: Path, out: Path, *, seed: int = 0, window: int = 8) -> Path:
    """A random Gemma 3 with sliding-window attention (window `window`) on 2 of its 3 layers, as the default
    model has on 15 of 18: prompts longer than the window exercise the sliding-window paths."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                           num_attention_heads=4, num_key_value_heads=1, head_dim=16, sliding_window=window,
                           layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                           max_position_embeddings=2048, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                           pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    Gemma3ForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_gemma_materialized(tokenizer_dir, tmp_path_factory) -> Path:
    """A `models/base`-style folder pointing at a tiny random Gemma 3 (sliding window 8)."""
    from selfalign.engine.models import materialize

    folder = build_tiny_gemma3(tokenizer_dir, tmp_path_factory.mktemp("tiny-gemma3"))
    out = tmp_path_factory.mktemp("gemma-base")
    materialize(str(folder), out)
    return out


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The embedded SmolLM2-135M, materialized once (about 30 s) and kept across test sessions."""
    from selfalign.engine.models import MANIFEST, materialize

    out = CACHE / "smollm2-135m-instruct"
    if not (out / MANIFEST).exists():
        tmp = out.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        materialize("smollm2-135m-instruct", tmp)
        tmp.rename(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tokenizer_dir, tmp_path_factory) -> Path:
    return build_tiny_model(tokenizer_dir, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_materialized(tiny_model_dir, tmp_path_factory) -> Path:
    """A `models/base`-style folder (manifest pointing at the tiny model), as the `model` stage writes it."""
    from selfalign.engine.models import materialize

    out = tmp_path_factory.mktemp("model-base")
    materialize(str(tiny_model_dir), out)
    return out


@pytest.fixture(scope="session")
def tiny_pipeline(smollm2_dir, tmp_path_factory):
    """The whole pipeline run once with `dvc repro` on the embedded SmolLM2 at the tiny scale (minutes).

    Shared by test_pipeline.py (which then edits and reruns it) and test_slurm.py (which compares a
    run on SLURM with it): `first_outputs` and `first_seconds` are taken right after the first run.
    """
    from pipeline import Pipeline

    p = Pipeline(tmp_path_factory.mktemp("pipeline"), str(smollm2_dir))
    start = time.monotonic()
    p.first_run = p.repro()
    p.first_seconds = time.monotonic() - start
    p.first_outputs = p.outputs()
    return p


def run_script(name: str, *args: str) -> int:
    """The exit code of `python scripts/<name> <args>`, run in this process."""
    argv = sys.argv
    sys.argv = [str(ROOT / "scripts" / name), *args]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
        return 0
    except SystemExit as e:
        return int(e.code or 0)
    finally:
        sys.argv = argv
