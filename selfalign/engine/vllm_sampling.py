"""Temperature, top-k and top-p sampling on vLLM as the transformers backend samples: the nucleus is taken
among the top-k candidates, a token tied with the k-th staying in (selfalign/engine/transformers_backend.py
`sampling_candidates`).

vLLM's CPU sampler sorts the whole vocabulary of every row at every step whenever top-p is set: for
Gemma's 262k tokens at 32 sequences that is about a second a step, several times the model's own work.
This logits processor draws each sampled row's token itself and leaves only it finite, so vLLM's sampler
(temperature alone, no sort, no seed) can only pick it. It works on the whole batch at once: one top-k, one
cumulative sum and one inverse-CDF draw for every sampled row, and one host sync a step (for the top-k's
width when tokens tie), on CPU and GPU alike.

Each draw is seeded by (request seed, position), not by a generator that advances per step: when a step
cuts a prompt's prefill in chunks, vLLM discards the token it sampled and redraws that position later,
which a CPU generator cannot be rewound for ("CPU Generator does not use offset"). A redrawn position here
draws the same token again, whatever else is in the batch. Imported only by the vllm backend (it needs vllm).
"""
from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from selfalign.engine.types import Decoding

KEY = "selfalign_sampling"  # SamplingParams.extra_args key: [temperature, top_p, top_k, seed]
MASK64 = (1 << 64) - 1
TIE_MARGIN = 64  # candidates beyond the widest top-k, where a row's ties with its k-th are looked for


def extra_args(decoding: Decoding, seed: int) -> dict:
    return {KEY: [decoding.temperature, decoding.top_p, decoding.top_k, seed]}


def draw_seed(seed: int, position: int) -> int:
    """The seed of the token at `position` of a request's output."""
    return (seed << 16) + position


def uniform(seed: int, position: int) -> float:
    """A number in [0, 1) from (request seed, position): splitmix64's output function, exact on any device
    because it runs here, on the host, in Python integers."""
    z = (draw_seed(seed, position) + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return ((z ^ (z >> 31)) >> 11) / float(1 << 53)


def draw(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor, top_k: torch.Tensor,
         u: torch.Tensor) -> torch.Tensor:
    """One token per row of `logits` [rows, vocab], drawn by inverse CDF at `u` [rows] from the distribution of
    `sampling_candidates` with each row's own temperature, top-p and top-k (0: all).

    Candidates are ordered by logit, ties by token id, and a row's weights are cumulated from its most likely
    candidate on: a row draws the same token whatever rows run beside it (nothing a row computes depends on
    the width the batch needs)."""
    rows, vocab = logits.shape
    k = torch.where((top_k > 0) & (top_k < vocab), top_k, torch.full_like(top_k, vocab))
    # The candidates come from one top-k of the raw logits (temperature keeps their order), a few wider than the
    # widest k so that tokens tied with a row's k-th are among them; only where a tie fills that margin is the
    # top-k taken again, as wide as the ties need (counted over the whole vocabulary).
    window = min(int(k.max()) + TIE_MARGIN, vocab)
    top = torch.topk(logits, window, dim=-1)
    values = top.values.float() / temperature[:, None]
    kth = values.gather(1, (k - 1)[:, None])
    tied = (values >= kth).sum(dim=-1)  # a token tied with the k-th stays in, as transformers keeps it
    width = int(tied.max())  # the step's one host sync
    if width == window < vocab:
        scores = logits.float() / temperature[:, None]
        tied = (scores >= kth).sum(dim=-1)
        width = int(tied.max())
        top = torch.topk(scores, width, dim=-1)
        values = top.values
    index, values = top.indices[:, :width], values[:, :width]
    by_id = index.sort(dim=-1)
    index, values = by_id.values, values.gather(1, by_id.indices)
    order = values.sort(dim=-1, descending=True, stable=True).indices  # by logit, ties by token id
    index, values = index.gather(1, order), values.gather(1, order)
    ranks = torch.arange(width, device=logits.device)[None, :]
    weights = torch.exp(values - values[:, :1]) * (ranks < tied[:, None])
    cdf = torch.cumsum(weights, dim=-1)
    # Nucleus: keep a candidate while the mass ranked above it is below top_p of the top-k's (the first always).
    kept = ((cdf - weights) < top_p[:, None] * cdf[:, -1:]) & (ranks < tied[:, None])
    last = kept.sum(dim=-1, keepdim=True) - 1
    target = u[:, None] * cdf.gather(1, last)
    choice = torch.minimum((cdf < target).sum(dim=-1, keepdim=True), last)
    return index.gather(1, choice).squeeze(1)


class CandidatesOnly(LogitsProcessor):
    """The batch's sampled rows get the token `draw` picks, every other token -inf; greedy rows are left alone."""

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        self.device = device
        self.rows: dict[int, tuple[list, list[int]]] = {}  # batch row -> (spec, the request's output tokens so far)

    def is_argmax_invariant(self) -> bool:
        return False  # it picks the token

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        def state(params, _prompt, output_ids):
            spec = (params.extra_args or {}).get(KEY)
            return (spec, output_ids) if spec else None

        process_dict_updates(self.rows, batch_update, state)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.rows:
            return logits
        rows = sorted(self.rows)
        specs = [self.rows[r] for r in rows]

        def column(values, dtype):
            return torch.tensor(values, dtype=dtype).to(logits.device, non_blocking=True)

        at = column(rows, torch.long)
        tokens = draw(logits[at], column([s[0] for s, _ in specs], torch.float32),
                      column([s[1] for s, _ in specs], torch.float32), column([int(s[2]) for s, _ in specs], torch.long),
                      column([uniform(int(s[3]), len(out)) for s, out in specs], torch.float32))
        picked = torch.full((len(rows), logits.shape[1]), float("-inf"), dtype=logits.dtype, device=logits.device)
        logits[at] = picked.scatter_(1, tokens[:, None], 0.0)
        return logits
