"""Shared-prefix KV cache: prefill the tokens that many rows share once, and reuse their key/value states.

An align prompt is ~1,460 tokens, ~1,440 of them (identity, principles, exemplars) the same for every
query; an eval item's answer candidates share its question. Causal attention makes the states of a
token depend only on the tokens before it, so the shared prefix's states are the same whatever
follows, and computing them once is exact (up to float rounding of different matrix shapes).

Layout. A batch of rows `prefix + suffix_r` is laid out as the no-cache path lays it out, left-padded
so that every row's last token is in the last column: `[pad * k_r][prefix][suffix_r]`. With the pads
in front, every row's real tokens are contiguous, so a sliding-window layer (Gemma 3: 512 tokens on
15 of 18 layers) sees the same tokens as it would without the cache; pads between prefix and suffix
would eat into the window. To get there, the suffixes are prefilled right-padded on top of the
batch-expanded prefix (pads after the real tokens are invisible to them under causal attention),
and each row's states are then rotated so that its pads move to the front. While the prefix and suffixes
are prefilled every layer keeps all its tokens (the attention mask applies the window); the cache
handed to generate() keeps only the window on sliding layers, as the model's own cache would.
"""
from __future__ import annotations

from typing import Sequence


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of token sequences."""
    if not seqs:
        return 0
    n = min(len(s) for s in seqs)
    first = seqs[0]
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs[1:]):
            return i
    return n


def _dynamic_cache(layers, config=None):
    """A DynamicCache holding `layers` ((keys, values) per layer). Without `config` every layer keeps all its
    tokens (and the attention mask applies any sliding window); with it, sliding-window layers keep only
    their window, as the model's own cache would."""
    from transformers.cache_utils import DynamicCache

    return DynamicCache(ddp_cache_data=list(layers), config=config) if layers else DynamicCache(config=config)


def forward(model, ids, *, positions, past_layers, attention_mask=None, logits_to_keep=1):
    """One forward pass over `ids` (batch x tokens) on top of `past_layers` ((keys, values) per layer, or []);
    returns (logits of the last `logits_to_keep` positions, the layers with `ids` added)."""
    import torch

    cache = _dynamic_cache(past_layers)
    past = past_layers[0][0].shape[-2] if past_layers else 0
    if attention_mask is None:
        attention_mask = torch.ones(ids.shape[0], past + ids.shape[1], dtype=torch.long, device=ids.device)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=attention_mask, position_ids=positions, past_key_values=cache,
                    use_cache=True, logits_to_keep=logits_to_keep)
    return out.logits, [(layer.keys, layer.values) for layer in cache.layers]


class PrefixCache:
    """The key/value states of the last prefix computed, kept across batches and extended as needed.

    `states(ids)` returns the states of `ids` (batch 1). When the kept prefix and `ids` share a head,
    only the rest is computed: consecutive align batches share ~1,440 tokens and differ in a few, and
    the items of an eval benchmark share its primer but not their questions.
    """

    def __init__(self, model):
        self.model = model
        self.ids: list[int] = []
        self.layers: list = []
        self.computed_tokens = 0  # prefix tokens actually prefilled (for benchmarks)

    def states(self, ids: Sequence[int]) -> list:
        import torch

        ids = list(ids)
        m = common_prefix_len([self.ids, ids])
        if m < len(ids):
            past = [(k[..., :m, :], v[..., :m, :]) for k, v in self.layers] if m else []
            device = self.model.device
            new = torch.tensor([ids[m:]], device=device)
            positions = torch.arange(m, len(ids), device=device).unsqueeze(0)
            _, self.layers = forward(self.model, new, positions=positions, past_layers=past)
            self.ids = ids
            self.computed_tokens += len(ids) - m
            return self.layers
        return [(k[..., : len(ids), :], v[..., : len(ids), :]) for k, v in self.layers]


def expand(layers, rows: int) -> list:
    return [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in layers]


def left_padded(rows: Sequence[Sequence[int]], pad_id: int, device):
    """(input_ids, attention_mask) with every row's last token in the last column."""
    import torch

    n = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (n - len(r)) + list(r) for r in rows], device=device)
    mask = torch.tensor([[0] * (n - len(r)) + [1] * len(r) for r in rows], device=device)
    return ids, mask


def right_padded(rows: Sequence[Sequence[int]], pad_id: int, device, *, past: int):
    """(input_ids, attention_mask over past + rows, position_ids) of rows continuing a `past`-token prefix."""
    import torch

    n = max(len(r) for r in rows)
    ids = torch.tensor([list(r) + [pad_id] * (n - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * (past + len(r)) + [0] * (n - len(r)) for r in rows], device=device)
    positions = torch.arange(past, past + n, device=device).unsqueeze(0).expand(len(rows), -1)
    return ids, mask, positions


def generation_cache(model, prefix: PrefixCache, rows: Sequence[Sequence[int]], prefix_len: int, pad_id: int):
    """A DynamicCache holding every row but its last token, left-padded as `left_padded(rows)` lays the rows
    out, so that `model.generate(*left_padded(rows), past_key_values=cache)` prefills only the last column.

    Every row must start with the same `prefix_len` tokens and have at least one token after them.
    """
    import torch

    device = model.device
    layers = expand(prefix.states(rows[0][:prefix_len]), len(rows))
    heads = [list(r[prefix_len:-1]) for r in rows]  # suffixes without their last token
    width = max(len(h) for h in heads)
    if width:
        ids, mask, positions = right_padded(heads, pad_id, device, past=prefix_len)
        _, layers = forward(model, ids, positions=positions, past_layers=layers, attention_mask=mask)
        # Rotate each row right by its padding, so the pads sit in front (see the module docstring).
        total = prefix_len + width
        shift = torch.tensor([width - len(h) for h in heads], device=device)
        src = (torch.arange(total, device=device).unsqueeze(0) - shift.unsqueeze(1)) % total
        keep = (torch.arange(total, device=device).unsqueeze(0) >= shift.unsqueeze(1))
        rotated = []
        for k, v in layers:
            index = src[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
            m = keep[:, None, :, None].to(k.dtype)
            rotated.append((k.gather(2, index) * m, v.gather(2, index) * m))  # pads' states zeroed
        layers = rotated
    else:
        layers = [(k.contiguous(), v.contiguous()) for k, v in layers]
    return _dynamic_cache(layers, model.config)
