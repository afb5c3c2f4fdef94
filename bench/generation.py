"""Benchmark of the generation engine and the eval scorer on the default model: fp32 vs bf16, with and
without the shared-prefix KV cache, in one process (so the ratios are robust to a noisy machine).

Align: the align stage's real prompts (principles, exemplars; the seed instructions as queries), its
decoding and stops from params.yaml, at `generation.batch_size`; tokens/s = new tokens / wall time,
prefill included. The baseline is the engine before this work: fp32, no cache, transformers' own
sampling (a sort and a draw over the whole vocabulary every step). Prefill/decode split: one batch's
prefill (whole prompts, or the shared prefix once plus the suffixes) and one decode step, timed alone.
What bf16 costs: greedy outputs of the align prompts, bf16 vs fp32 (how many identical), and eval
log-likelihoods bf16 vs fp32 (largest difference, decisions that flip). Eval: HHH and TruthfulQA
items scored per second.

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

from selfalign.core.config import load_params  # noqa: E402
from selfalign.data import eval_sets, principles
from selfalign.data.seeds import load_self_instruct  # noqa: E402
from selfalign.data.templates import Template  # noqa: E402
from selfalign.engine import scoring  # noqa: E402
from selfalign.engine.models import inference_dtype, load_model  # noqa: E402
from selfalign.engine.prefix_cache import PrefixCache, common_prefix_len, generation_cache, left_padded  # noqa: E402
from selfalign.engine.transformers_backend import _stop_criteria, generate_batch  # noqa: E402
from selfalign.engine.types import Decoding, Generation
from selfalign.eval import multiple_choice  # noqa: E402
from selfalign.stages import align


def align_prompts(params: dict, n: int, *, numbered: bool = False) -> list[str]:
    """n align prompts of the seed instructions, built as the align stage builds them; past the seeds they
    repeat, unless `numbered` makes every query distinct (no prompt then wholly in a prefix cache)."""
    cfg = params["align"]
    active, exemplars, version = principles.load_alignment_text(ROOT / "principles/principles.yaml", ROOT / "principles/exemplars.yaml")
    seeds = load_self_instruct(ROOT / "data/seeds/self_instruct.jsonl")
    queries = [{"id": s["id"], "query": s["instruction"]} for s in (seeds * (n // len(seeds) + 1))[:n]]
    if numbered:
        queries = [{"id": f"{q['id']}-{i}", "query": f"{q['query']} (Request {i + 1}.)"} for i, q in enumerate(queries)]
    items = align.build_items(queries, Template(ROOT / "templates/align.j2"), assistant=cfg["assistant_name"],
                              identity=cfg["identity"], principles=active, exemplars=exemplars, principles_version=version)
    return [it.prompt for it in items]


def sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def transformers_sampling(model, tok, prompts, decoding, *, seed, stop, prefix=None):
    """The engine before its own sampler: generate() sampling with transformers' warpers (top-k 50 by
    default), every row prefilled in full. For the baseline row only."""
    import torch

    ids, mask = left_padded(tok(list(prompts))["input_ids"], tok.pad_token_id, model.device)
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=decoding.temperature,
                             top_p=decoding.top_p, max_new_tokens=decoding.max_new_tokens, pad_token_id=tok.pad_token_id,
                             stopping_criteria=[_stop_criteria(tok, ids.shape[1], stop)])
    return [Generation(text="", finished=True, new_tokens=int((row != tok.pad_token_id).sum()))
            for row in out[:, ids.shape[1]:]]


def generate(model, tok, prompts, decoding, stop, batch_size, cached, engine=generate_batch):
    """(new tokens, seconds, outputs) of the prompts in batches."""
    prefix = PrefixCache(model) if cached else None
    sync()
    t0, tokens, texts = time.perf_counter(), 0, []
    for i in range(0, len(prompts), batch_size):
        gens = engine(model, tok, prompts[i : i + batch_size], decoding, seed=i, stop=stop, prefix=prefix)
        tokens += sum(g.new_tokens for g in gens)
        texts += [g.text for g in gens]
    sync()
    return tokens, time.perf_counter() - t0, texts


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
    scores = scoring.score(model, tok, reqs, prefix_cache=cached, desc="eval")
    sync()
    return time.perf_counter() - t0, scores


def generation_table(models, tok, prompts, decoding, stop, configs, batch_sizes) -> None:
    """tokens/s of each (dtype, prefix cache) against transformers' own sampler, per batch size."""
    for batch_size in batch_sizes:
        print(f"\nalign generation, batch {batch_size}:")
        print("| dtype | prefix cache | sampler | tokens | seconds | tokens/s | vs baseline | prefill of a batch | decode step |")
        print("|---|---|---|---|---|---|---|---|---|")
        base = None
        for dtype, cached, engine in [("float32", False, transformers_sampling)] + [(d, c, generate_batch) for d, c in configs]:
            model = models[dtype]
            generate(model, tok, prompts[:1], Decoding(0.0, 1.0, 2), stop, 1, cached)  # warm-up
            tokens, seconds, _ = generate(model, tok, prompts, decoding, stop, batch_size, cached, engine)
            prefill, step = split(model, tok, prompts, batch_size, cached)
            tps = tokens / seconds
            base = base or tps
            sampler = "transformers (baseline)" if engine is transformers_sampling else "selfalign"
            print(f"| {dtype} | {'yes' if cached else 'no'} | {sampler} | {tokens} | {seconds:.1f} | {tps:.1f} | "
                  f"{tps / base:.2f}x | {prefill:.2f} s | {step * 1000:.0f} ms |", flush=True)


def greedy_agreement(models, tok, prompts, decoding, stop, fast, batch) -> None:
    """How many greedy outputs each fast setting shares with fp32 without the cache."""
    greedy = Decoding(0.0, 1.0, decoding.max_new_tokens, 0)
    outputs = {(d, c): generate(models[d], tok, prompts, greedy, stop, batch, c)[2]
               for d, c in dict.fromkeys([("float32", False), ("float32", True), (fast, True)])}
    reference = outputs[("float32", False)]
    print(f"\ngreedy align outputs ({len(prompts)} prompts, {greedy.max_new_tokens} new tokens) identical to fp32 without the cache:")
    for (dtype, cached), texts in outputs.items():
        print(f"- {dtype}, prefix cache {'yes' if cached else 'no'}: {sum(x == y for x, y in zip(texts, reference))} of {len(texts)}")


def eval_table(models, tok, items, reqs, configs, fast) -> None:
    """items/s of the scorer per setting, and what bf16 changes in the log-likelihoods and decisions."""
    print(f"\neval: {len(items)} items ({len(reqs)} candidates):")
    print("| dtype | prefix cache | seconds | items/s | vs fp32 no cache |")
    print("|---|---|---|---|---|")
    base, scored = None, {}
    for dtype, cached in configs:
        seconds, scored[dtype, cached] = score(models[dtype], tok, reqs, cached)
        ips = len(items) / seconds
        base = base or ips
        print(f"| {dtype} | {'yes' if cached else 'no'} | {seconds:.1f} | {ips:.2f} | {ips / base:.2f}x |", flush=True)
    if fast == "float32":
        return
    # the default (bf16 with the cache) against fp32 without it
    scored = {"float32": scored["float32", False], fast: scored[fast, True]}
    diffs = [abs(x - y) for (x, _), (y, _) in zip(scored["float32"], scored[fast])]
    per_token = [abs(x - y) / n for (x, n), (y, _) in zip(scored["float32"], scored[fast])]
    graded = {d: multiple_choice.grade(items, s) for d, s in scored.items()}
    print(f"\n{fast} vs float32 log-likelihoods of the {len(reqs)} candidates: largest difference {max(diffs):.3f} "
          f"(mean {sum(diffs) / len(diffs):.3f}; per token: largest {max(per_token):.4f}, mean {sum(per_token) / len(per_token):.4f})")
    for field in ("acc", "acc_mean", "acc_norm", "mc1", "mc1_mean", "mc1_norm"):
        pairs = [(a[field], b[field]) for a, b in zip(graded["float32"], graded[fast]) if field in a]
        if pairs:
            print(f"- `{field}`: {sum(x != y for x, y in pairs)} of {len(pairs)} decisions flip "
                  f"(accuracy {sum(x for x, _ in pairs) / len(pairs):.3f} in float32, {sum(y for _, y in pairs) / len(pairs):.3f} in {fast})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models/base"))
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--batch-sizes", type=int, nargs="+", help="default: generation.batch_size")
    ap.add_argument("--eval-items", type=int, default=40,
                    help="HHH items (a quarter per category), as many published-format MC1 questions, half as many CSV TruthfulQA")
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
        models[dtype], tok, manifest = load_model(a.model, dtype=dtype)
    device = str(models["float32"].device)
    print(f"machine: {platform.processor() or platform.machine()} ({device}), model {manifest['id']}, "
          f"{len(prompts)} align prompts of ~{len(tok(prompts[0])['input_ids'])} tokens, decoding {cfg['decoding']}")
    items = eval_sets.load_hhh(ROOT / "data/eval/hhh", per_category=max(1, a.eval_items // 4), seed=1) + \
        eval_sets.load_truthfulqa_mc(ROOT / "data/eval/truthfulqa_bigbench/task_mc.json", max_questions=a.eval_items, seed=1) + \
        eval_sets.load_truthfulqa(ROOT / "data/eval/truthfulqa/TruthfulQA.csv", max_questions=a.eval_items // 2, seed=1)
    reqs = [r for it in items for r in multiple_choice.requests(it, cfg["assistant_name"])]
    batch_sizes = a.batch_sizes or [params["generation"]["batch_size"]]
    generation_table(models, tok, prompts, decoding, stop, configs, batch_sizes)
    greedy_agreement(models, tok, prompts, decoding, stop, fast, max(batch_sizes))
    eval_table(models, tok, items, reqs, configs, fast)


if __name__ == "__main__":
    main()
