"""How much an answer depends on its query, by the model's own likelihood.

relevance = (log p(answer | query) - log p(answer | no query)) / answer tokens, in the plain dialogue
format: the pointwise mutual information of query and answer per token, the idea behind the
instruction-following difficulty score of "From Quantity to Quality" (Li et al. 2023). An answer
the model finds about as likely without its query ("I can't help with this.") is generic; an answer
that only makes sense after its query scores high. Scored with the eval scorer, so the answer's
tokens and its split from the prompt are the ones training uses.
"""
from __future__ import annotations

from typing import Sequence

from selfalign.data.dialogue import assistant_turn, prompt_text


def no_query_context(assistant: str) -> str:
    """The dialogue with the user's turn left out: what the answer's likelihood is compared against."""
    return assistant_turn(assistant)


def relevance(model, tok, pairs: Sequence[tuple[str, str]], assistant: str, *, prefix_cache: bool = True,
              desc: str = "relevance") -> list[float]:
    """Per (query, answer) pair, the per-token PMI of query and answer (see the module docstring)."""
    from selfalign.engine.scoring import score

    reqs = []
    for query, answer in pairs:
        cont = " " + answer.strip()
        reqs += [(prompt_text(query, assistant), cont), (no_query_context(assistant), cont)]
    scores = score(model, tok, reqs, prefix_cache=prefix_cache, desc=desc)
    out = []
    for k in range(0, len(scores), 2):
        (own, n), (alone, _) = scores[k], scores[k + 1]
        out.append(round((own - alone) / max(n, 1), 4))
    return out
