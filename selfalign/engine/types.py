"""The engine's types, shared by every backend: what to generate (Item), how (Decoding, Engine), what came
back (Generation), and where to stop (stop strings and TextStop rules)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol, Sequence


@dataclass(frozen=True)
class Decoding:
    temperature: float  # 0: greedy
    top_p: float
    max_new_tokens: int
    top_k: int = 50  # 0: no top-k cut (50 is transformers' default, which sampling used before it was a setting)

    @classmethod
    def from_params(cls, d: dict) -> "Decoding":
        return cls(float(d["temperature"]), float(d["top_p"]), int(d["max_new_tokens"]), int(d["top_k"]))


BACKENDS = ("vllm", "transformers")


@dataclass(frozen=True)
class Engine:
    """How the model runs: settings that change the outputs, so they key the journal and travel in every
    record's lineage."""

    batch_size: int  # items per generate call, and per journal entry (what a resumed shard keeps)
    dtype: str  # resolved inference dtype: float32 or bfloat16
    prefix_cache: bool  # reuse the KV states of the prompts' shared prefix (principles, exemplars)
    backend: str = "transformers"  # one of BACKENDS
    max_num_seqs: int = 1  # vllm: sequences decoded together (continuous batching within a call)
    tensor_parallel_size: int = 1  # vllm: GPUs one engine spans
    compile: bool = False  # vllm: torch.compile the model and capture CUDA graphs (faster decoding, a longer start)
    # Where the engine runs, not what it makes (out of the lineage): vLLM's share of each GPU's memory, and the
    # longest sequence it must hold (the job's longest prompt plus max_new_tokens; None: the model's context).
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None

    PLACEMENT = ("gpu_memory_utilization", "max_model_len")

    @classmethod
    def from_params(cls, p: dict) -> "Engine":
        """From a params slice holding the `generation` engine keys and model.inference_dtype."""
        from selfalign.engine.models import inference_dtype

        g = p["generation"]
        return cls(batch_size=int(g["batch_size"]), dtype=inference_dtype(p["model"]["inference_dtype"]),
                   prefix_cache=bool(g["prefix_cache"]), backend=g["backend"], max_num_seqs=int(g["max_num_seqs"]),
                   tensor_parallel_size=int(g["tensor_parallel_size"]), compile=cls.compiles(g))

    @staticmethod
    def compiles(g: dict) -> bool:
        """generation.compile resolved: `auto` compiles (and captures CUDA graphs) with vLLM on CUDA only, where
        decoding gains most; on CPU the compile costs about a minute of every engine start."""
        from selfalign.engine.models import on_cuda

        return bool(g["compile"]) if g["compile"] != "auto" else g["backend"] == "vllm" and on_cuda()

    def lineage(self) -> dict:
        """The settings that shape the outputs: they key the journal and travel in every record."""
        return {k: v for k, v in asdict(self).items() if k not in self.PLACEMENT}


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


class Backend(Protocol):
    """What a generation backend does (selfalign/engine/backends.py opens one)."""

    tokenizer: object

    def generate(self, prompts: Sequence[str], decoding: Decoding, *, seed: int, stop: Sequence = ()) -> list[Generation]:
        """Complete `prompts` under `seed` (one per call: the per-batch seed of selfalign/engine/journal.py)."""

    def reset(self) -> None:
        """Forget any state kept across calls (a shard starts from none)."""

    def replay(self, prompts: Sequence[str]) -> None:
        """Bring the state kept across calls to where an uninterrupted run would have it after `prompts`."""

    def close(self) -> None:
        """Stop the engine and free its memory; it generates no more."""

    def load(self, model_dir) -> None:
        """Put the weights of `model_dir` (same architecture and tokenizer) into the open engine: one engine
        answers for several checkpoints, and its start is paid once. Forgets any state kept across calls."""


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


def finish(decode: Callable[[Sequence[int]], str], ids: Sequence[int], eos: set, stop: Sequence) -> Generation:
    """A Generation from one row's new token ids, as every backend reports it.

    The text is decoded up to the first EOS and cut at the earliest stop; `new_tokens` counts the tokens up to
    the one that completed that stop (or the EOS, not counted), whether the backend stopped there itself or
    generated on (vLLM applies TextStop rules only to its finished text).
    """
    ids = list(ids)
    n = next((i for i, t in enumerate(ids) if t in eos), None)
    hit_eos = n is not None
    ids = ids[:n] if hit_eos else ids
    text, hit_stop = cut_at_stop(decode(ids), stop)
    if hit_stop is not None:
        # The fewest tokens whose text holds a stop: stops are monotone (once in the text, in every longer text).
        lo, hi = 1, len(ids)
        while lo < hi:
            mid = (lo + hi) // 2
            if cut_at_stop(decode(ids[:mid]), stop)[1] is None:
                lo = mid + 1
            else:
                hi = mid
        ids = ids[:lo]
    stopped_by = hit_stop or ("eos" if hit_eos else None)
    return Generation(text=text, finished=stopped_by is not None, new_tokens=len(ids), stopped_by=stopped_by)
