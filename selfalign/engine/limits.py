"""Prompt length against the model's context, checked before a generation stage generates.

A prompt whose tokens plus `max_new_tokens` exceed the model's context cannot be completed as
asked: most models have no positions past it, and generate() fails deep inside or writes garbage.
Each generation script checks its shard's prompts with the model's tokenizer and the context length
from the model folder's config.json (no weights are loaded), and names the input that made the
prompt too long.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable, Sequence

from selfalign.core.files import InputError
from selfalign.engine.models import model_source

log = logging.getLogger(__name__)

# Where configs keep the context length (the first one found wins; multimodal configs nest it in text_config).
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


def context_length(model_dir: str | os.PathLike) -> tuple[int, str] | None:
    """(tokens, where that number comes from) for the model that `model_dir` (a `models/base`-style
    folder) names, or None if its config does not say."""
    src, trust = model_source(model_dir)
    path = Path(src) / "config.json"
    if path.is_file():
        config = json.loads(path.read_text(encoding="utf-8"))
    else:  # a hub id: its config from the Hugging Face cache
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(src, trust_remote_code=trust).to_dict()
        path = Path(f"{src} config")
    for scope, prefix in ((config, ""), (config.get("text_config") or {}, "text_config.")):
        for key in CONTEXT_KEYS:
            value = scope.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value, f"{path}: {prefix}{key}"
    return None


def load_tokenizer(model_dir: str | os.PathLike):
    from transformers import AutoTokenizer

    src, trust = model_source(model_dir)
    return AutoTokenizer.from_pretrained(src, trust_remote_code=trust)


def count_tokens(tokenizer, texts: Sequence[str]) -> list[int]:
    """Tokens of each text as generate() sees it (special tokens included)."""
    return [len(ids) for ids in tokenizer(list(texts))["input_ids"]] if texts else []


def check_prompt_lengths(tokenizer, prompts: Sequence[tuple[str, str]], *, max_new_tokens: int, context: int,
                         context_source: str, setting: str, blame: Callable[[str], str]) -> int:
    """Raise InputError if any (key, prompt) has more than `context` - `max_new_tokens` tokens; else return
    the longest prompt's tokens.

    `setting` names the max_new_tokens param; `blame(key)` names the input that made that prompt long
    ("principles/principles.yaml: principles entry '5' (reasoning) has 151,203 tokens").
    """
    lengths = count_tokens(tokenizer, [p for _, p in prompts])
    over = [i for i, n in enumerate(lengths) if n + max_new_tokens > context]
    if not over:
        return max(lengths, default=0)
    worst = max(over, key=lambda i: lengths[i])
    key = prompts[worst][0]
    raise InputError(f"{blame(key)}: the prompt for {key} is {lengths[worst]:,} tokens, and with {setting}="
                     f"{max_new_tokens} more it exceeds the model's context of {context:,} tokens ({context_source}); "
                     f"{len(over)} of {len(prompts)} prompts are too long")


def check_prompts(items, *, model_dir: str | os.PathLike, max_new_tokens: int, setting: str,
                  blame: Callable[[str], str], tokenizer=None) -> int | None:
    """`check_prompt_lengths` for generation `items` (generation.Item) against the model in `model_dir`:
    the longest prompt's tokens. The tokenizer is loaded from `model_dir` unless given; the check is
    skipped (with a warning, and None returned) when the model's config names no context length."""
    if not items:
        return 0
    found = context_length(model_dir)
    if found is None:
        log.warning("%s: the model's config names no context length (%s); prompt lengths are not checked",
                    model_dir, ", ".join(CONTEXT_KEYS))
        return None
    context, where = found
    return check_prompt_lengths(tokenizer or load_tokenizer(model_dir), [(it.key, it.prompt) for it in items],
                         max_new_tokens=max_new_tokens, context=context, context_source=where, setting=setting,
                         blame=blame)


# vLLM sizes its engine for max_model_len; rounded up to this many tokens (a multiple of its KV block sizes).
MODEL_LEN_STEP = 256


def model_len(model_dir: str | os.PathLike, longest: int | None, max_new_tokens: int) -> int | None:
    """vLLM's max_model_len for a job whose longest prompt has `longest` tokens: that plus `max_new_tokens`,
    rounded up, never past the model's context. By default vLLM sizes itself for the model's whole context,
    and a long-context model (128k tokens) may not start on a GPU that holds every sequence the job needs.
    None (the model's context) when the length is unknown."""
    found = context_length(model_dir)
    if longest is None or found is None:
        return None
    need = -(-(longest + max_new_tokens) // MODEL_LEN_STEP) * MODEL_LEN_STEP
    return min(need, found[0])
