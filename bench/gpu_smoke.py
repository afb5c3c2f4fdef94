"""The GPU paths, run and timed on a machine with CUDA GPUs: what the CPU tests cannot show.

    .venv/bin/python bench/gpu_smoke.py                      # prints figures, writes bench/gpu_smoke.json
    .venv/bin/python bench/gpu_smoke.py --out $OUT/gpu_smoke.json --skip-align

Each part says what it measured, or why it was skipped (no vLLM, no DeepSpeed, no model):
1. GPUs: what this process sees, and two jobs started together taking one GPU each (selfalign/engine/devices.py).
2. The vLLM sampler's step on the GPU, 64 and 256 sequences over Gemma's 262,144 tokens: the draw per request
   (a seeded generator, a top-k and a multinomial per row, as a per-request processor runs it) against
   `selfalign.engine.vllm_sampling.draw` (the batch at once, one host sync), and vLLM's own sampler (temperature,
   top-k, top-p) on the same logits: the cost each adds to a decode step.
3. The align stage's shard on the GPU: scripts/generate_aligned.py on models/base and data/queries/queries.jsonl
   of a run here (`dvc repro queries` first), one shard on one GPU, vLLM with compile auto (CUDA graphs), timed,
   with its answers per second. Skipped where the run's files are not there.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VOCAB = 262_144
CLAIM = """
import sys, time
from selfalign.engine import devices
print(",".join(devices.claim(1, setting="generation.gpus_per_shard")), flush=True)
time.sleep(2)
"""


def gpus() -> dict:
    import torch

    from selfalign.engine.devices import visible_gpus

    out = {"visible": visible_gpus(), "cuda": torch.cuda.is_available()}
    if out["cuda"]:
        out["names"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if len(out["visible"]) >= 2:
        with tempfile.TemporaryDirectory() as locks:
            env = dict(os.environ, SELFALIGN_GPU_LOCKS=locks)
            jobs = [subprocess.Popen([sys.executable, "-c", CLAIM], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
                    for _ in range(2)]
            out["two_jobs_took"] = [j.communicate()[0].strip() for j in jobs]
    return out


def sampler() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    try:
        from selfalign.engine.vllm_sampling import draw, draw_seed, uniform
    except ImportError:
        return {"skipped": "vllm is not installed"}
    from selfalign.core.config import load_params
    from selfalign.engine.transformers_backend import sampling_candidates
    from selfalign.engine.types import Decoding

    d = Decoding.from_params(load_params(ROOT / "params.yaml")["align"]["decoding"])
    out = {}

    def timed(fn, repeat=10):
        fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        torch.cuda.synchronize()
        return round((time.perf_counter() - t0) / repeat * 1000, 2)

    for rows in (64, 256):
        logits = (torch.randn(rows, VOCAB, device="cuda") * 3).bfloat16().float()
        full = torch.ones(rows, device="cuda")

        def per_request():
            for r in range(rows):
                probs, index = sampling_candidates(logits[r : r + 1], d)
                gen = torch.Generator(device="cuda").manual_seed(draw_seed(r, 7))
                int(index[0, torch.multinomial(probs[0], 1, generator=gen)])

        def batch():
            u = torch.tensor([uniform(r, 7) for r in range(rows)]).cuda(non_blocking=True)
            draw(logits, full * d.temperature, full * d.top_p, torch.full((rows,), d.top_k, device="cuda"), u)

        def vllm_own():  # what vLLM's sampler does with temperature, top-k and top-p (a sort of the vocabulary)
            from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p

            probs = torch.softmax(apply_top_k_top_p(logits / d.temperature, torch.full((rows,), d.top_k, device="cuda"),
                                                    full * d.top_p), dim=-1)
            torch.multinomial(probs, 1)

        out[rows] = {"per_request_ms": timed(per_request, 3), "batch_ms": timed(batch), "vllm_own_ms": timed(vllm_own)}
    return out


def align_shard() -> dict:
    model, queries = ROOT / "models/base", ROOT / "data/queries/queries.jsonl"
    if not (model / "selfalign_model.json").exists() or not queries.exists():
        return {"skipped": "no models/base or data/queries/queries.jsonl here (run `dvc repro queries` first)"}
    params = subprocess.run([sys.executable, "-m", "selfalign.core.config", "seed", "model", "generation", "principles",
                             "align"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    p = json.loads(params)
    p["generation"] |= {"backend": "vllm", "compile": "auto", "shards": 1, "gpus_per_shard": 1}
    with tempfile.TemporaryDirectory() as tmp:
        eval_data = ROOT / "data/eval"
        cmd = [sys.executable, "scripts/generate_aligned.py", "--model", str(model), "--queries", str(queries),
               "--principles", "principles/principles.yaml", "--exemplars", "principles/exemplars.yaml",
               "--template", "templates/align.j2", "--hhh", str(eval_data / "hhh"),
               "--truthfulqa", str(eval_data / "truthfulqa/TruthfulQA.csv"),
               "--truthfulqa-mc", str(eval_data / "truthfulqa_bigbench/task_mc.json"),
               "--xstest", str(eval_data / "xstest/xstest_prompts.csv"), "--params", json.dumps(p), "--gpus", "1",
               "--shard", "0", "--out", f"{tmp}/000.jsonl", "--journal-dir", f"{tmp}/journal"]
        t0 = time.monotonic()
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        seconds = time.monotonic() - t0
        if run.returncode:
            return {"failed": run.stderr[-3000:]}
        rows = [json.loads(line) for line in Path(f"{tmp}/000.jsonl").read_text().splitlines()]
    tokens = sum(r["new_tokens"] for r in rows)
    return {"answers": len(rows), "new_tokens": tokens, "seconds": round(seconds, 1),
            "answers_per_s": round(len(rows) / seconds, 2), "new_tokens_per_s": round(tokens / seconds, 1),
            "engine": rows[0]["engine"] if rows else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench/gpu_smoke.json"))
    ap.add_argument("--skip-align", action="store_true")
    a = ap.parse_args()
    result = {"gpus": gpus(), "sampler": sampler()}
    if not a.skip_align:
        result["align_shard"] = align_shard()
    print(json.dumps(result, indent=2))
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
