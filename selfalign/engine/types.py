"""The engine's types, shared by every backend: what to generate (Item), how (Decoding, Engine), what came
back (Generation), and where to stop (stop strings and TextStop rules)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence


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
        from selfalign.engine.models import inference_dtype

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


def stop_names(stop) -> list[str]:
    return [s if isinstance(s, str) else s.name for s in stop]


def find_stop(text: str, s) -> int | None:
    if isinstance(s, str):
        i = text.find(s)
        return i if i >= 0 else None
    return s.find(text)


def cut_at_stop(text: str, stop: Sequence) -> tuple[str, str | None]:
    """Text up to the earliest stop, and that stop's name (None when no stop matched)."""
    cuts = [(i, name) for s, name in zip(stop, stop_names(stop)) if (i := find_stop(text, s)) is not None]
    if not cuts:
        return text, None
    i, name = min(cuts)
    return text[:i], name
