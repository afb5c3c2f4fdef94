"""Benchmark of the shared generation engine: tokens/s at the default batch size vs one prompt at a time.

Both runs use the same model, prompts and decoding in one process, so the ratio is robust to a noisy
machine. Prompts are the `queries` stage's self-instruct prompts (the real workload).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/generation.py [--model models/base] [--prompts 16] [--batch-size 8]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from selfalign import queries  # noqa: E402
from selfalign.generation import Decoding, generate_batch  # noqa: E402
from selfalign.models import load  # noqa: E402
from selfalign.prompts import Template  # noqa: E402
from selfalign.seeds import load_self_instruct  # noqa: E402


def run(model, tok, prompts, decoding, batch_size):
    t0, tokens = time.perf_counter(), 0
    for i in range(0, len(prompts), batch_size):
        gens = generate_batch(model, tok, prompts[i : i + batch_size], decoding, seed=i)
        tokens += sum(g.new_tokens for g in gens)
    return tokens, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/base")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    a = ap.parse_args()
    root = Path(__file__).resolve().parent.parent
    items = queries.build_items(load_self_instruct(root / "data/seeds/self_instruct.jsonl"), [], [],
                                Template(root / "templates/self_instruct.j2"), Template(root / "templates/red_team_questions.j2"),
                                self_instruct_prompts=a.prompts, demos_per_prompt=3, questions_per_topic_prompt=1, seed=1)
    prompts = [it.prompt for it in items]
    model, tok, manifest = load(a.model)
    # Greedy with no stop: every row makes exactly max_new_tokens, so both runs do the same work.
    decoding = Decoding(temperature=0.0, top_p=1.0, max_new_tokens=a.max_new_tokens)
    model.generation_config.eos_token_id = None
    run(model, tok, prompts[:1], Decoding(0.0, 1.0, 4), 1)  # warm-up
    single = run(model, tok, prompts, decoding, 1)
    batched = run(model, tok, prompts, decoding, a.batch_size)
    s_tps, b_tps = single[0] / single[1], batched[0] / batched[1]
    print(f"machine: {platform.processor() or platform.machine()}, model {manifest['id']}, {len(prompts)} prompts, "
          f"{a.max_new_tokens} new tokens each")
    print(f"batch 1:  {single[0]} tokens in {single[1]:.1f} s = {s_tps:.1f} tokens/s")
    print(f"batch {a.batch_size}:  {batched[0]} tokens in {batched[1]:.1f} s = {b_tps:.1f} tokens/s")
    print(f"ratio: {b_tps / s_tps:.2f}x")


if __name__ == "__main__":
    main()
