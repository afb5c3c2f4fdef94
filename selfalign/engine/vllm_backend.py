"""The vLLM backend of the engine: one `vllm.LLM` per job (its start costs tens of seconds), continuous
batching over `max_num_seqs` sequences and vLLM's own prefix caching.

The same contract as the transformers backend (selfalign/engine/types.py `finish`): string stops are vLLM's
own; TextStop rules cut the finished text, and `new_tokens` counts up to the token that completed the stop.
The model's generation_config decides EOS and the suppressed tokens, as it does for transformers.
Sampling is seeded per request, from the batch's seed and the request's place in the batch.
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Sequence

from selfalign.core.hashing import fingerprint
from selfalign.data.dialogue import TURN_SEP, assistant_turn, user_turn
from selfalign.engine.types import Decoding, Engine, Generation, finish

# KV cache for the CPU backend, in GiB (vLLM's own variable; a user's setting wins). 1 GiB holds ~200k tokens
# of Gemma 3 270M, four times what 32 sequences of an align prompt need; each GiB more costs ~3 s of engine start.
DEFAULT_CPU_KVCACHE_GIB = "1"
SUPPRESS_BIAS = -100.0  # the most negative logit bias vLLM accepts: a suppressed token is never drawn
# The dialogue format (selfalign/data/dialogue.py) as a chat template. Nothing here renders chats; given one,
# vLLM does not load the tokenizer once more at start to look for the model's own (about 4 s per engine).
CHAT_TEMPLATE = ("{% for m in messages %}{{ " + json.dumps(user_turn("")) + " if m['role'] == 'user' else "
                 + json.dumps(assistant_turn("Assistant") + " ") + " }}{{ m['content'] }}{{ " + json.dumps(TURN_SEP)
                 + " }}{% endfor %}")


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def request_seed(seed: int, index: int) -> int:
    return int(fingerprint([seed, index])[:8], 16)


def stop_and_suppress(src, tokenizer) -> tuple[set, dict]:
    """(EOS ids, logit bias of the suppressed tokens) from the model's generation_config, as transformers'
    generate() reads them."""
    from transformers import GenerationConfig

    gen = GenerationConfig.from_pretrained(src)
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    eos = {e for e in [*eos, tokenizer.eos_token_id] if e is not None}
    return eos, {int(t): SUPPRESS_BIAS for t in (gen.suppress_tokens or [])}


@contextlib.contextmanager
def _one_tokenizer():
    """vLLM's renderer makes its tokenizer thread-safe for the async server by deep-copying it into a pool (two
    copies of Gemma's 262k-token tokenizer: ~8 s of every engine start). The offline LLM renders on the
    calling thread only (vLLM says so where it builds the pool), so here the tokenizer stays as it is."""
    try:
        from vllm.renderers import hf
    except ImportError:
        hf = None
    if hf is None or not hasattr(hf, "maybe_make_thread_pool"):
        yield
        return
    pool = hf.maybe_make_thread_pool
    hf.maybe_make_thread_pool = lambda tokenizer, copies=1: tokenizer
    try:
        yield
    finally:
        hf.maybe_make_thread_pool = pool


class VllmBackend:
    def __init__(self, model_dir, engine: Engine):
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", DEFAULT_CPU_KVCACHE_GIB)
        if engine.tensor_parallel_size == 1:
            # The engine core in this process: no spawned process to re-import the calling script (a test, a
            # notebook), and nothing to gain from one on a single device.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            # vLLM keeps a core for the engine-core process it would otherwise start: here that core computes.
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        from vllm import LLM

        from selfalign.engine.models import model_source
        from selfalign.engine.vllm_sampling import CandidatesOnly

        src, trust = model_source(model_dir)
        with _one_tokenizer():
            self.llm = LLM(model=src, dtype=engine.dtype, seed=0, trust_remote_code=trust,
                           enable_prefix_caching=engine.prefix_cache, max_num_seqs=engine.max_num_seqs,
                           tensor_parallel_size=engine.tensor_parallel_size, enforce_eager=not engine.compile,
                           max_model_len=engine.max_model_len, gpu_memory_utilization=engine.gpu_memory_utilization,
                           generation_config="vllm", logits_processors=[CandidatesOnly], chat_template=CHAT_TEMPLATE)
        self.tokenizer = self.llm.get_tokenizer()  # the engine's own (each load of Gemma's costs about 3 s)
        self.eos, self.suppress = stop_and_suppress(src, self.tokenizer)

    def _params(self, decoding: Decoding, seed: int, stop: Sequence):
        from vllm import SamplingParams

        from selfalign.engine.vllm_sampling import extra_args

        greedy = decoding.temperature == 0
        # top-k and top-p are applied by the CandidatesOnly logits processor, not by vLLM (see vllm_sampling.py).
        return SamplingParams(
            temperature=decoding.temperature, top_p=1.0, top_k=0, max_tokens=decoding.max_new_tokens,
            extra_args=None if greedy else extra_args(decoding, seed), stop=[s for s in stop if isinstance(s, str)] or None,
            stop_token_ids=sorted(self.eos), logit_bias=self.suppress or None, skip_special_tokens=True,
            detokenize=True)

    def generate(self, prompts: Sequence[str], decoding: Decoding, *, seed: int, stop: Sequence = ()) -> list[Generation]:
        params = [self._params(decoding, request_seed(seed, i), stop) for i in range(len(prompts))]
        outs = self.llm.generate(list(prompts), params, use_tqdm=False)

        def decode(ids):
            return self.tokenizer.decode(ids, skip_special_tokens=True)

        return [finish(decode, o.outputs[0].token_ids, self.eos, stop) for o in outs]

    def reset(self) -> None:
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        """Stop the engine and give back its memory (on a GPU, the share it took), for a model loaded after it."""
        import gc

        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        gc.collect()
        cleanup_dist_env_and_memory()

    def load(self, model_dir) -> None:
        """vLLM's in-place weight reload (the one RL trainers use between rollouts): no new engine."""
        import logging

        from selfalign.engine.models import model_source

        src = model_source(model_dir)[0]
        # A reload warns for every float32 tensor cast to the engine's dtype, and for every module without weights.
        quiet = [logging.getLogger(f"vllm.model_executor.{m}") for m in ("models.utils", "model_loader.reload.layerwise")]
        levels = [q.level for q in quiet]
        for q in quiet:
            q.setLevel(logging.ERROR)
        try:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": src})
        finally:
            for q, level in zip(quiet, levels):
                q.setLevel(level)
        self.reset()

    def replay(self, prompts: Sequence[str]) -> None:
        """Not replayed: a resumed shard's prefix cache is rebuilt by its first batch (see README, Resuming)."""
