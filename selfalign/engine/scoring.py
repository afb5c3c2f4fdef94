"""Log-likelihood scoring: the log-probability a model gives each continuation after its context, with
the contexts that rows share prefilled once. Eval's multiple-choice grading and align's relevance score
use it."""
from __future__ import annotations

from selfalign.data.dialogue import encode_pair

# A forward pass asks for at most this many positions' logits: with a 262k vocabulary (Gemma) logits
# dominate memory (512 positions x 262k x 4 bytes = 0.5 GB).
MAX_LOGIT_POSITIONS = 512


# A shared context shorter than this is not worth a forward pass of its own: such rows are batched
# together whole, longest first, as an uncached scorer would.
MIN_SHARED_TOKENS = 32


def _groups(reqs: list[tuple[str, str]]) -> list[list[int]]:
    """Request indices by context, in order of first appearance: one item's candidates."""
    groups: dict[str, list[int]] = {}
    for i, (context, _) in enumerate(reqs):
        groups.setdefault(context, []).append(i)
    return list(groups.values())


def _chunks(idx: list[int], lengths: dict[int, int], first: dict[int, int]) -> list[list[int]]:
    """Split rows so that rows x logit positions stays under MAX_LOGIT_POSITIONS."""
    chunks: list[list[int]] = []
    cur: list[int] = []
    for i in idx:
        rows = cur + [i]
        keep = max(lengths[j] for j in rows) - min(first[j] for j in rows)
        if cur and len(rows) * keep > MAX_LOGIT_POSITIONS:
            chunks.append(cur)
            rows = [i]
        cur = rows
    return chunks + [cur] if cur else chunks


def token_log_probs(logits, targets):
    """log_softmax(logits)[targets] in float32, a few positions at a time: with a 262k vocabulary, a float32
    copy of all positions' logits outgrows the CPU caches, and one pass over it took 5x as long as these
    blocks (same values)."""
    import torch

    out = torch.empty(len(targets), dtype=torch.float32, device=logits.device)
    for i in range(0, len(targets), 4):
        block = logits[i : i + 4].float()
        out[i : i + 4] = block.gather(-1, targets[i : i + 4, None]).squeeze(-1) - torch.logsumexp(block, dim=-1)
    return out


def score(model, tok, reqs: list[tuple[str, str]], *, prefix_cache: bool = True, desc: str = "score") -> list[tuple[float, int]]:
    """(sum of log-probs, number of tokens) of each continuation given its context.

    An item's candidates share its question: with `prefix_cache`, the tokens they share are prefilled
    once (selfalign/prefix_cache.py) and each candidate runs only its own tokens, right-padded (pads
    after a row's tokens are invisible to it under causal attention). Rows whose shared context is short
    (and every row, without `prefix_cache`) run in full, batched with others of similar length.
    """
    import torch
    from tqdm import tqdm

    from selfalign.engine.prefix_cache import PrefixCache, common_prefix_len, expand, forward, right_padded

    encoded = [encode_pair(tok, c, x) for c, x in reqs]
    rows = [c + x for c, x in encoded]
    start = [len(c) for c, _ in encoded]  # where each continuation starts
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    cache = PrefixCache(model) if prefix_cache else None
    out: list[tuple[float, int] | None] = [None] * len(encoded)

    def run(chunk: list[int], shared: int, layers: list) -> None:
        ids, mask, positions = right_padded([rows[i][shared:] for i in chunk], pad, model.device, past=shared)
        first = {i: start[i] - 1 - shared for i in chunk}  # suffix index of the logits for the first token
        lo = min(first.values())
        logits, _ = forward(model, ids, positions=positions, past_layers=expand(layers, len(chunk)),
                            attention_mask=mask, logits_to_keep=ids.shape[1] - lo)
        for row, i in enumerate(chunk):
            cont = encoded[i][1]
            at = first[i] - lo
            picked = token_log_probs(logits[row, at : at + len(cont)], torch.tensor(cont, device=logits.device))
            out[i] = (float(picked.sum()), len(cont))

    plain: list[int] = []  # rows that run in full
    cached: list[tuple[list[int], int]] = []  # (group, tokens its rows share)
    for group in _groups(reqs):
        # The logits at the last context token predict the first continuation token: keep it out of the prefix.
        shared = min(common_prefix_len([rows[i] for i in group]), min(start[i] for i in group) - 1) if cache else 0
        if shared >= MIN_SHARED_TOKENS:
            cached.append((group, shared))
        else:
            plain += group
    with tqdm(total=len(reqs), desc=desc, unit="answer") as bar:
        for group, shared in cached:
            layers = cache.states(rows[group[0]][:shared])
            for chunk in _chunks(group, {i: len(rows[i]) - shared for i in group}, {i: start[i] - 1 - shared for i in group}):
                run(chunk, shared, layers)
                bar.update(len(chunk))
        plain.sort(key=lambda i: (-len(rows[i]), i))
        for chunk in _chunks(plain, {i: len(rows[i]) for i in plain}, {i: start[i] - 1 for i in plain}):
            run(chunk, 0, [])
            bar.update(len(chunk))
    return out  # type: ignore[return-value]
