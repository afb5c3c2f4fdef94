"""vLLM's scheduler on the align stage's sampling: chunked prefill against whole prompts per step, at 32 and
64 concurrent sequences.

With chunked prefill (vLLM's default, 4,096 tokens a step) a step that cuts a prompt's prefill throws the
token sampled for it away and redraws it later. A request seeded through vLLM would need its torch CPU
generator rewound, which cannot be done ("CPU Generator does not use offset"); the engine's sampler
(selfalign/engine/vllm_sampling.py) draws each position from its own seed, so a redraw is the same draw.
Whether a run cuts prefills depends on how many uncached prompt tokens the requests of a step bring (the
align prompts share ~1,440 tokens, cached after the first). "whole" schedules whole prompts only
(enable_chunked_prefill=False, which needs max_num_batched_tokens >= max_model_len; both 4,096 here). Each
configuration runs in a process of its own; a crash is reported, not raised. tokens/s = new tokens /
generate wall time (engine start excluded).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/vllm_scheduling.py        # after `dvc repro model`
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIGS = [(32, "chunked"), (64, "chunked"), (32, "whole"), (64, "whole")]
WHOLE_BUDGET = 4096  # max_model_len and max_num_batched_tokens of "whole"


def run_one(model: str, seqs: int, mode: str, n: int) -> dict:
    from generation import align_prompts

    from selfalign.core.config import load_params
    from selfalign.engine.backends import open_backend
    from selfalign.engine.models import inference_dtype
    from selfalign.engine.types import Decoding, Engine
    from selfalign.stages import align

    if mode == "whole":
        import vllm

        init = vllm.LLM.__init__
        vllm.LLM.__init__ = lambda self, *a, **k: init(self, *a, **k, enable_chunked_prefill=False,
                                                        max_model_len=WHOLE_BUDGET, max_num_batched_tokens=WHOLE_BUDGET)
    p = load_params(ROOT / "params.yaml")
    texts = align_prompts(p, n, numbered=True)
    engine = Engine(batch_size=p["generation"]["batch_size"], dtype=inference_dtype(p["model"]["inference_dtype"]),
                    prefix_cache=True, backend="vllm", max_num_seqs=seqs)
    start = time.perf_counter()
    b = open_backend(model, engine)
    started = time.perf_counter() - start
    decoding, stop = Decoding.from_params(p["align"]["decoding"]), align.stops(p["align"]["assistant_name"])
    start = time.perf_counter()
    try:
        gens = [g for i in range(0, n, engine.batch_size)
                for g in b.generate(texts[i : i + engine.batch_size], decoding, seed=1, stop=stop)]
    except RuntimeError as e:
        return {"seqs": seqs, "prefill": mode, "error": str(e).splitlines()[0], "engine_start_s": round(started, 1)}
    seconds = time.perf_counter() - start
    tokens = sum(g.new_tokens for g in gens)
    return {"seqs": seqs, "prefill": mode, "prompts": n, "new_tokens": tokens, "seconds": round(seconds, 1),
            "tokens_per_s": round(tokens / seconds, 1), "engine_start_s": round(started, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models/base"))
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # seqs,mode: run one configuration, print JSON
    a = ap.parse_args()
    if a.one:
        seqs, mode = a.one.split(",")
        print("RESULT " + json.dumps(run_one(a.model, int(seqs), mode, a.prompts)))
        return
    for seqs, mode in CONFIGS:
        out = subprocess.run([sys.executable, __file__, "--model", a.model, "--prompts", str(a.prompts), "--one", f"{seqs},{mode}"],
                             capture_output=True, text=True)
        lines = [line[7:] for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if not lines:
            print(f"seqs {seqs:3} prefill {mode:8} failed:\n{out.stderr[-2000:]}", flush=True)
            continue
        r = json.loads(lines[0])
        figures = (f"error: {r['error']}" if "error" in r else
                   f"{r['new_tokens']:6,} tokens  {r['seconds']:6.1f} s  {r['tokens_per_s']:6.1f} tokens/s")
        print(f"seqs {seqs:3} prefill {mode:8} {figures}  engine start {r['engine_start_s']:5.1f} s", flush=True)


if __name__ == "__main__":
    main()
