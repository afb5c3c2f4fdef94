"""Temperature, top-k and top-p sampling on vLLM as the transformers backend samples: the nucleus is taken
among the top-k candidates (selfalign/engine/transformers_backend.py `sampling_candidates`).

vLLM's CPU sampler sorts the whole vocabulary of every row at every step whenever top-p is set: for
Gemma's 262k tokens at 32 sequences that is about a second a step, several times the model's own work.
This per-request logits processor leaves only the candidates finite, so vLLM samples with temperature
alone (no sort) from the same distribution. Imported only by the vllm backend (it needs vllm).
"""
from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from selfalign.engine.transformers_backend import sampling_candidates
from selfalign.engine.types import Decoding

KEY = "selfalign_sampling"  # SamplingParams.extra_args key: [temperature, top_p, top_k]


def extra_args(decoding: Decoding) -> dict:
    return {KEY: [decoding.temperature, decoding.top_p, decoding.top_k]}


class CandidatesOnly(AdapterLogitsProcessor):
    def is_argmax_invariant(self) -> bool:
        return True  # the most likely token is always a candidate

    def new_req_logits_processor(self, params):
        spec = (params.extra_args or {}).get(KEY)
        if not spec:
            return None
        decoding = Decoding(temperature=spec[0], top_p=spec[1], max_new_tokens=1, top_k=spec[2])

        def keep_candidates(output_ids, logits: torch.Tensor) -> torch.Tensor:
            probs, index = sampling_candidates(logits.unsqueeze(0), decoding)
            kept = index[probs > 0]
            out = torch.full_like(logits, float("-inf"))
            out[kept] = logits[kept]
            return out

        return keep_candidates
