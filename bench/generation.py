"""Benchmark of the generation engine and the eval scorer on the default model: fp32 vs bf16, with and
without the shared-prefix KV cache, in one process (so the ratios are robust to a noisy machine).

Align: the align stage's real prompts (principles, exemplars; the seed instructions as queries), its
decoding and stops from params.yaml, at `generation.batch_size`; tokens/s = new tokens / wall time,
prefill included. Prefill/decode split: one batch's prefill (whole prompts, or the shared prefix once
plus the suffixes) and one decode step, timed alone. Eval: HHH and TruthfulQA items scored per second.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/generation.py            # after `dvc repro model`
    HF_HUB_OFFLINE=1 .venv/bin/python bench/generation.py --batch-sizes 32 64 128 --prompts 128   # on a GPU
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfalign import align, eval_data, evaluate, principles  # noqa: E402
from selfalign.config import load_params  # noqa: E402
from selfalign.generation import Decoding, generate_batch  # noqa: E402
from selfalign.models import inference_dtype, load  # noqa: E402
from selfalign.prefix_cache import PrefixCache, common_prefix_len, generation_cache, left_padded  # noqa: E402
from selfalign.prompts import Template  # noqa: E402
from selfalign.seeds import load_self_instruct  # noqa: E402


def align_prompts(params: dict, n: int) -> list[str]:
    cfg = params["align"]
    active, exemplars, version = principles.load(ROOT / "principles/principles.yaml", ROOT / "principles/exemplars.yaml")
    seeds = load_self_instruct(ROOT / "data/seeds/self_instruct.jsonl")
    queries = [{"id": s["id"], "query": s["instruction"]} for s in (seeds * (n // len(seeds) + 1))[:n]]
    items = align.build_items(queries, Template(ROOT / "templates/align.j2"), assistant=cfg["assistant_name"],
                              identity=cfg["identity"], principles=active, exemplars=exemplars, principles_version=version)
    return [it.prompt for it in items]


def sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def generate(model, tok, prompts, decoding, stop, batch_size, cached):
    prefix = PrefixCache(model) if cached else None
    sync()
    t0, tokens = time.perf_counter(), 0
    for i in range(0, len(prompts), batch_size):
        gens = generate_batch(model, tok, prompts[i : i + batch_size], decoding, seed=i, stop=stop, prefix=prefix)
        tokens += sum(g.new_tokens for g in gens)
    sync()
    return tokens, time.perf_counter() - t0


def split(model, tok, prompts, batch_size, cached):
    """(seconds to prefill one batch, seconds per decode step at that batch and context)."""
    import torch

    rows = tok(prompts[:batch_size])["input_ids"]
    pad = tok.pad_token_id
    ids, mask = left_padded(rows, pad, model.device)
    with torch.inference_mode():
        sync()
        t0 = time.perf_counter()
        if cached:
            prefix = PrefixCache(model)
            shared = min(common_prefix_len(rows), min(len(r) for r in rows) - 1)
            cache = generation_cache(model, prefix, rows, shared, pad)
            out = model(input_ids=ids[:, -1:], attention_mask=mask, past_key_values=cache, use_cache=True, logits_to_keep=1)
        else:
            out = model(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1)
        sync()
        prefill = time.perf_counter() - t0
        cache, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        steps = 8
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
            out = model(input_ids=nxt, attention_mask=mask, past_key_values=cache, use_cache=True, logits_to_keep=1)
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        sync()
    return prefill, (time.perf_counter() - t0) / steps


def score(model, tok, reqs, cached):
    sync()
    t0 = time.perf_counter()
    evaluate.score(model, tok, reqs, prefix_cache=cached, desc="eval")
    sync()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models/base"))
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--batch-sizes", type=int, nargs="+", help="default: generation.batch_size")
    ap.add_argument("--eval-items", type=int, default=12, help="HHH items (3 per category) + as many TruthfulQA")
    a = ap.parse_args()
    params = load_params(ROOT / "params.yaml")
    cfg = params["align"]
    decoding = Decoding.from_params(cfg["decoding"])
    stop = align.stops(cfg["assistant_name"])
    prompts = align_prompts(params, a.prompts)
    fast = inference_dtype("auto")
    configs = [("float32", False), (fast, False), ("float32", True), (fast, True)] if fast != "float32" else \
        [("float32", False), ("float32", True)]
    # One copy per dtype: casting a model back from bf16 would round its fp32 weights.
    models = {}
    for dtype in dict.fromkeys(d for d, _ in configs):
        models[dtype], tok, manifest = load(a.model, dtype=dtype)
    device = str(models["float32"].device)
    print(f"machine: {platform.processor() or platform.machine()} ({device}), model {manifest['id']}, "
          f"{len(prompts)} align prompts of ~{len(tok(prompts[0])['input_ids'])} tokens, decoding {cfg['decoding']}")
    items = eval_data.load_hhh(ROOT / "data/eval/hhh", per_category=max(1, a.eval_items // 4), seed=1) + \
        eval_data.load_truthfulqa(ROOT / "data/eval/truthfulqa/TruthfulQA.csv", max_questions=a.eval_items, seed=1)
    reqs = [r for it in items for r in evaluate.requests(it, cfg["assistant_name"])]
    for batch_size in a.batch_sizes or [params["generation"]["batch_size"]]:
        print(f"\nalign generation, batch {batch_size}:")
        print("| dtype | prefix cache | tokens | seconds | tokens/s | vs fp32 no cache | prefill of a batch | decode step |")
        print("|---|---|---|---|---|---|---|---|")
        base = None
        for dtype, cached in configs:
            model = models[dtype]
            generate(model, tok, prompts[:1], Decoding(0.0, 1.0, 2), stop, 1, cached)  # warm-up
            tokens, seconds = generate(model, tok, prompts, decoding, stop, batch_size, cached)
            prefill, step = split(model, tok, prompts, batch_size, cached)
            tps = tokens / seconds
            base = base or tps
            print(f"| {dtype} | {'yes' if cached else 'no'} | {tokens} | {seconds:.1f} | {tps:.1f} | {tps / base:.2f}x "
                  f"| {prefill:.2f} s | {step * 1000:.0f} ms |", flush=True)
    print(f"\neval: {len(items)} items ({len(reqs)} candidates):")
    print("| dtype | prefix cache | seconds | items/s | vs fp32 no cache |")
    print("|---|---|---|---|---|")
    base = None
    for dtype, cached in (configs[0], configs[-1]):
        seconds = score(models[dtype], tok, reqs, cached)
        ips = len(items) / seconds
        base = base or ips
        print(f"| {dtype} | {'yes' if cached else 'no'} | {seconds:.1f} | {ips:.2f} | {ips / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
