"""The two generation backends side by side: the same align prompts, the same greedy decoding and stops.

Each configuration runs in a process of its own (a vLLM engine per process, as in the pipeline), one
after another in this run, so the ratios compare like with like on a noisy machine. tokens/s = new
tokens / generate wall time (prefill included, engine start excluded); engine start is timed apart.
Writes bench/backends.json: {"transformers": tok/s, "vllm": tok/s (the best configuration), "runs": [...]}.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/backends.py            # after `dvc repro model`
    HF_HUB_OFFLINE=1 .venv/bin/python bench/backends.py --prompts 32 --write bench/backends.json
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (backend, concurrent sequences, prefix cache, compiled, sampling): the transformers backend batches `seqs`
# prompts per call; vllm compiled: torch.compile (faster decoding, a longer start) instead of eager mode.
# sampling: greedy; "align" (the align stage's temperature, top-k and top-p) through the backend; "vllm-own":
# the same decoding through vLLM's own top-k/top-p sampler, which sorts the vocabulary every step.
CONFIGS = [("transformers", 8, True, False, "greedy"), ("vllm", 8, True, False, "greedy"),
           ("vllm", 32, True, False, "greedy"), ("vllm", 32, False, False, "greedy"), ("vllm", 32, True, True, "greedy"),
           ("transformers", 8, True, False, "align"), ("vllm", 32, True, False, "align"),
           ("vllm", 32, True, False, "vllm-own")]


def _vllm_own_sampler(b, prompts, decoding, stop):
    """The align decoding through vLLM's own sampler (what the backend avoids), for comparison."""
    from vllm import SamplingParams

    from selfalign.engine.types import finish

    params = SamplingParams(temperature=decoding.temperature, top_p=decoding.top_p, top_k=decoding.top_k,
                            max_tokens=decoding.max_new_tokens, seed=1, stop=[s for s in stop if isinstance(s, str)],
                            stop_token_ids=sorted(b.eos), logit_bias=b.suppress or None)
    outs = b.llm.generate(list(prompts), params, use_tqdm=False)
    return [finish(lambda ids: b.tokenizer.decode(ids, skip_special_tokens=True), o.outputs[0].token_ids, b.eos, stop)
            for o in outs]


def run_one(model: str, backend: str, seqs: int, cached: bool, compiled: bool, sampling: str, n: int,
            max_new: int) -> dict:
    from generation import align_prompts

    from selfalign.core.config import load_params
    from selfalign.engine.backends import open_backend
    from selfalign.engine.models import inference_dtype
    from selfalign.engine.types import Decoding, Engine
    from selfalign.stages import align

    p = load_params(ROOT / "params.yaml")
    prompts = align_prompts(p, n)
    engine = Engine(batch_size=seqs if backend == "transformers" else n, dtype=inference_dtype(p["model"]["inference_dtype"]),
                    prefix_cache=cached, backend=backend, max_num_seqs=seqs, compile=compiled)
    start = time.perf_counter()
    b = open_backend(model, engine)
    started = time.perf_counter() - start
    decoding = Decoding(0.0, 1.0, max_new) if sampling == "greedy" else \
        Decoding.from_params(p["align"]["decoding"] | {"max_new_tokens": max_new})
    stop = align.stops(p["align"]["assistant_name"])
    start = time.perf_counter()
    if sampling == "vllm-own":
        gens = _vllm_own_sampler(b, prompts, decoding, stop)
    else:
        gens = [g for i in range(0, n, engine.batch_size)
                for g in b.generate(prompts[i : i + engine.batch_size], decoding, seed=1, stop=stop)]
    seconds = time.perf_counter() - start
    tokens = sum(g.new_tokens for g in gens)
    return {"backend": backend, "seqs": seqs, "prefix_cache": cached, "compiled": compiled, "sampling": sampling,
            "prompts": n, "new_tokens": tokens,
            "seconds": round(seconds, 1), "tokens_per_s": round(tokens / seconds, 1),
            "engine_start_s": round(started, 1), "texts": [g.text for g in gens]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models/base"))
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--write", help="write the figures as JSON here (e.g. bench/backends.json)")
    ap.add_argument("--configs", help="comma-separated indexes into CONFIGS to run (default: all)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # backend,seqs,cached,compiled: run one configuration, print JSON
    a = ap.parse_args()
    if a.one:
        backend, seqs, cached, compiled, sampling = a.one.split(",")
        print("RESULT " + json.dumps(run_one(a.model, backend, int(seqs), cached == "1", compiled == "1", sampling,
                                             a.prompts, a.max_new_tokens)))
        return
    runs = []
    only = set(a.configs.split(",")) if a.configs else None
    for i, (backend, seqs, cached, compiled, sampling) in enumerate(CONFIGS):
        if only is not None and str(i) not in only:
            continue
        out = subprocess.run([sys.executable, __file__, "--model", a.model, "--prompts", str(a.prompts),
                              "--max-new-tokens", str(a.max_new_tokens), "--one", f"{backend},{seqs},{int(cached)},{int(compiled)},{sampling}"],
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(next(line[7:] for line in out.stdout.splitlines() if line.startswith("RESULT "))))
        r = runs[-1]
        print(f"{backend:12} {sampling:8} seqs {seqs:3} prefix cache {str(cached):5} compiled {str(compiled):5}  {r['new_tokens']:6,} tokens  {r['seconds']:6.1f} s"
              f"  {r['tokens_per_s']:6.1f} tokens/s  engine start {r['engine_start_s']:5.1f} s", flush=True)
    greedy = [r for r in runs if r["sampling"] == "greedy"]
    if not greedy or not any(r["backend"] == "vllm" for r in greedy):
        return
    base = greedy[0]
    best = max((r for r in greedy if r["backend"] == "vllm"), key=lambda r: r["tokens_per_s"])
    same = sum(x == y for x, y in zip(base["texts"], best["texts"]))
    print(f"vllm (best) / transformers: {best['tokens_per_s'] / base['tokens_per_s']:.2f}x; "
          f"identical greedy outputs: {same} of {a.prompts}")
    if a.write:
        summary = {"transformers": base["tokens_per_s"], "vllm": best["tokens_per_s"],
                   "ratio": round(best["tokens_per_s"] / base["tokens_per_s"], 2), "identical_outputs": same,
                   "prompts": a.prompts, "max_new_tokens": a.max_new_tokens, "machine": platform.processor() or platform.machine(),
                   "runs": [{k: v for k, v in r.items() if k != "texts"} for r in runs]}
        Path(a.write).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
