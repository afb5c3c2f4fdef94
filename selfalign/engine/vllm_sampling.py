"""Temperature, top-k and top-p sampling on vLLM as the transformers backend samples: the nucleus is taken
among the top-k candidates (selfalign/engine/transformers_backend.py `sampling_candidates`).

vLLM's CPU sampler sorts the whole vocabulary of every row at every step whenever top-p is set: for
Gemma's 262k tokens at 32 sequences that is about a second a step, several times the model's own work.
This per-request logits processor draws the token itself and leaves only it finite, so vLLM's sampler
(temperature alone, no sort, no seed) can only pick it.

Each draw is seeded by (request seed, position), not by a generator that advances per step: when a step
cuts a prompt's prefill in chunks, vLLM discards the token it sampled and rewinds the request's generator,
which a CPU generator cannot do ("CPU Generator does not use offset"). A redrawn position here draws the
same token again, so nothing needs rewinding. Imported only by the vllm backend (it needs vllm).
"""
from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from selfalign.engine.transformers_backend import sampling_candidates
from selfalign.engine.types import Decoding

KEY = "selfalign_sampling"  # SamplingParams.extra_args key: [temperature, top_p, top_k, seed]


def extra_args(decoding: Decoding, seed: int) -> dict:
    return {KEY: [decoding.temperature, decoding.top_p, decoding.top_k, seed]}


def draw_seed(seed: int, position: int) -> int:
    """The generator seed of the token at `position` of a request's output."""
    return (seed << 16) + position


class CandidatesOnly(AdapterLogitsProcessor):
    def is_argmax_invariant(self) -> bool:
        return False  # it picks the token: greedy requests have no spec and are left alone

    def new_req_logits_processor(self, params):
        spec = (params.extra_args or {}).get(KEY)
        if not spec:
            return None
        decoding = Decoding(temperature=spec[0], top_p=spec[1], max_new_tokens=1, top_k=spec[2])
        seed = int(spec[3])

        def draw(output_ids, logits: torch.Tensor) -> torch.Tensor:
            probs, index = sampling_candidates(logits.unsqueeze(0), decoding)
            generator = torch.Generator(device=logits.device).manual_seed(draw_seed(seed, len(output_ids)))
            token = index[0, torch.multinomial(probs[0], 1, generator=generator)]
            out = torch.full_like(logits, float("-inf"))
            out[token] = 0.0
            return out

        return draw
