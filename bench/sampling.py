"""Micro-benchmark of the two per-step costs this engine cut on Gemma's 262,144-token vocabulary, in one
process (ratios are what to read):

- one sampling step at batch 8: transformers' temperature, top-k and top-p warpers and its multinomial
  draw over the whole vocabulary, against `selfalign.engine.transformers_backend.sampling_candidates` and a draw among
  the candidates (the align stage's decoding from params.yaml);
- the scorer's normalisation of 360 positions' logits (bf16, as the model gives them): one logsumexp
  over all positions in float32, against `selfalign.engine.scoring.token_log_probs` (blocks of 4 positions);
- vLLM's sampling step at 64 and 256 sequences: the draw per request (a seeded generator, a top-k and a
  multinomial per row, as a per-request logits processor runs it) against `selfalign.engine.vllm_sampling.draw`
  (every row at once); without vllm installed this part is skipped.

    .venv/bin/python bench/sampling.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfalign.core.config import load_params  # noqa: E402
from selfalign.engine.scoring import token_log_probs  # noqa: E402
from selfalign.engine.transformers_backend import sampling_candidates  # noqa: E402
from selfalign.engine.types import Decoding

VOCAB = 262_144


def timed(fn, repeat: int = 10) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    d = Decoding.from_params(load_params(ROOT / "params.yaml")["align"]["decoding"])
    g = torch.Generator().manual_seed(0)
    scores = (torch.randn(8, VOCAB, generator=g) * 3).bfloat16().float()  # bf16 values, as the model gives them
    warpers = LogitsProcessorList([TemperatureLogitsWarper(d.temperature), TopKLogitsWarper(d.top_k),
                                   TopPLogitsWarper(d.top_p)])

    def transformers_step():
        return torch.multinomial(torch.softmax(warpers(None, scores.clone()), dim=-1), 1)

    def selfalign_step():
        probs, index = sampling_candidates(scores, d)
        return index.gather(-1, torch.multinomial(probs, 1))

    a, b = timed(transformers_step), timed(selfalign_step)
    print(f"sampling step, batch 8 x {VOCAB:,} (temperature {d.temperature}, top-k {d.top_k}, top-p {d.top_p}): "
          f"transformers {a * 1000:.1f} ms, selfalign {b * 1000:.1f} ms ({a / b:.0f}x)")

    logits = (torch.randn(360, VOCAB, generator=g) * 3).bfloat16()
    targets = torch.randint(0, VOCAB, (360,), generator=g)

    def whole():
        lf = logits.float()
        return lf.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(lf, dim=-1)

    a, b = timed(whole, 3), timed(lambda: token_log_probs(logits, targets), 3)
    diff = float((whole() - token_log_probs(logits, targets)).abs().max())
    print(f"log-probabilities of 360 positions x {VOCAB:,}: one logsumexp {a:.3f} s, blocks of 4 {b:.3f} s "
          f"({a / b:.1f}x), largest difference {diff:.1e}")

    try:
        from selfalign.engine.vllm_sampling import draw, draw_seed, uniform
    except ImportError:
        print("vllm is not installed: the vLLM sampling step is not measured")
        return
    for rows in (64, 256):
        scores = (torch.randn(rows, VOCAB, generator=g) * 3).bfloat16().float()

        def per_request():
            out = []
            for r in range(rows):
                probs, index = sampling_candidates(scores[r : r + 1], d)
                gen = torch.Generator().manual_seed(draw_seed(r, 7))
                out.append(int(index[0, torch.multinomial(probs[0], 1, generator=gen)]))
            return out

        def batch():
            u = torch.tensor([uniform(r, 7) for r in range(rows)])
            full = torch.full((rows,), 1.0)
            return draw(scores, full * d.temperature, full * d.top_p, torch.full((rows,), d.top_k), u)

        a, b = timed(per_request, 3), timed(batch, 3)
        print(f"vLLM sampling step, {rows} sequences x {VOCAB:,}: per request {a * 1000:.0f} ms, "
              f"the batch at once {b * 1000:.0f} ms ({a / b:.1f}x)")


if __name__ == "__main__":
    main()
