"""The transformers backend of the engine: one batch of prompts through `model.generate()`, with the
project's sampler, stop rules and shared-prefix cache (selfalign/engine/prefix_cache.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from selfalign.engine.types import Decoding, Generation, find_stop, finish

if TYPE_CHECKING:
    from selfalign.engine.prefix_cache import PrefixCache


def _stop_criteria(tokenizer, prompt_len: int, stop: Sequence):
    """Stop a row once its decoded continuation contains a stop (a string or a TextStop).

    One criterion for both kinds: transformers' own `stop_strings` builds a table over the whole
    vocabulary on every generate() call (about 4 s for Gemma's 262k tokens), which costs more than
    decoding the few rows of a batch at each step.
    """
    import torch
    from transformers import StoppingCriteria

    class Stops(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=True)
            done = [any(find_stop(t, s) is not None for s in stop) for t in texts]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return Stops()


def sampling_candidates(scores, decoding: Decoding):
    """(probabilities, token ids) of the tokens that temperature, top-k and top-p sampling can draw, per row.

    The same distribution as transformers' temperature, top-k and top-p warpers, computed on the top-k
    candidates only: transformers sorts the whole vocabulary and draws over it at every step, and with
    Gemma's 262k tokens that took about 60 ms of a ~220 ms decode step at batch 8 on 2 CPU cores.
    """
    import torch

    scores = scores.float() / decoding.temperature
    vocab = scores.shape[-1]
    k = decoding.top_k if 0 < decoding.top_k < vocab else vocab
    top, index = torch.topk(scores, k, dim=-1)  # sorted, largest first
    if k < vocab:
        # As transformers does, a token tied with the k-th stays in (bf16 logits tie often).
        kth = top[:, -1:]
        tied = int((scores >= kth).sum(dim=-1).max())
        if tied > k:
            top, index = torch.topk(scores, tied, dim=-1)
            top = top.masked_fill(top < kth, float("-inf"))
    probs = torch.softmax(top, dim=-1)
    # Nucleus: keep a candidate while the mass ranked above it is below top_p (the first is always kept).
    probs = probs.masked_fill(torch.cumsum(probs, dim=-1) - probs >= decoding.top_p, 0.0)
    return probs / probs.sum(dim=-1, keepdim=True), index


def _sampler(decoding: Decoding):
    """Sampling as the last logits processor of a greedy generate(): it draws a token from
    `sampling_candidates` (torch's global generator, seeded per batch) and leaves every other token at -inf."""
    import torch
    from transformers import LogitsProcessor

    class Sample(LogitsProcessor):
        def __call__(self, input_ids, scores):
            probs, index = sampling_candidates(scores, decoding)
            token = index.gather(-1, torch.multinomial(probs, 1))
            return torch.full_like(scores, float("-inf")).scatter_(-1, token, 0.0)

    return Sample()


def _shared_prefix(rows) -> int:
    """Tokens every row shares and the prefix cache prefills once (every row keeps at least its last token
    to prefill inside generate())."""
    from selfalign.engine.prefix_cache import common_prefix_len

    return min(common_prefix_len(rows), min(len(r) for r in rows) - 1)


def replay_prefix(tokenizer, prompts: Sequence[str], prefix: "PrefixCache") -> None:
    """Extend `prefix` as `generate_batch` would for `prompts`, without generating.

    The cache extends the kept prefix from batch to batch, and a prefix computed in pieces rounds
    differently from one computed at once (bf16 especially). A resumed shard replays the batches its
    journal holds, so that its cache, and so its samples, are those of an uninterrupted run.
    """
    rows = tokenizer(list(prompts))["input_ids"]
    shared = _shared_prefix(rows)
    if shared > 0:
        prefix.states(rows[0][:shared])


def generate_batch(model, tokenizer, prompts: Sequence[str], decoding: Decoding, *, seed: int,
                   stop: Sequence = (), prefix: "PrefixCache | None" = None) -> list[Generation]:
    """Complete `prompts` in one generate() call (left padded). `stop`: strings and TextStops.

    With `prefix` (a PrefixCache of this model), the tokens the prompts share are prefilled once and
    reused (see selfalign/prefix_cache.py); without it, every row is prefilled in full.
    """
    import torch

    from selfalign.engine.prefix_cache import generation_cache, left_padded

    rows = tokenizer(list(prompts))["input_ids"]
    pad = tokenizer.pad_token_id
    ids, mask = left_padded(rows, pad, model.device)
    torch.manual_seed(seed)
    # Greedy generate(); sampling, when asked for, is the last logits processor (see _sampler).
    kwargs = dict(do_sample=False, max_new_tokens=decoding.max_new_tokens, pad_token_id=pad,
                  temperature=None, top_p=None, top_k=None)
    if decoding.temperature > 0:
        kwargs.update(logits_processor=[_sampler(decoding)])
    if stop:
        kwargs.update(stopping_criteria=[_stop_criteria(tokenizer, ids.shape[1], stop)])
    if prefix is not None:
        shared = _shared_prefix(rows)
        if shared > 0:
            kwargs.update(past_key_values=generation_cache(model, prefix, rows, shared, pad))
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    new = out[:, ids.shape[1] :]
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])

    def decode(row):
        return tokenizer.decode(row, skip_special_tokens=True)

    results = []
    for row in new.tolist():
        n = len(row)
        while n and row[n - 1] == pad and pad not in eos:
            n -= 1  # trailing padding after this row finished
        results.append(finish(decode, row[:n], eos, stop))
    return results


class TransformersBackend:
    """The engine on transformers: a loaded model, and its shared-prefix cache kept across batches."""

    def __init__(self, model, tokenizer, engine):
        self.model, self.tokenizer, self.cached, self.dtype = model, tokenizer, engine.prefix_cache, engine.dtype
        self.reset()

    def reset(self) -> None:
        from selfalign.engine.prefix_cache import PrefixCache

        self.prefix = PrefixCache(self.model) if self.cached else None

    def generate(self, prompts, decoding: Decoding, *, seed: int, stop=()) -> list[Generation]:
        return generate_batch(self.model, self.tokenizer, prompts, decoding, seed=seed, stop=stop, prefix=self.prefix)

    def close(self) -> None:
        self.model = self.prefix = None

    def replay(self, prompts) -> None:
        if self.prefix is not None:
            replay_prefix(self.tokenizer, prompts, self.prefix)

    def load(self, model_dir) -> None:
        from selfalign.engine.models import load_model

        self.model = load_model(model_dir, dtype=self.dtype)[0]
        self.reset()
