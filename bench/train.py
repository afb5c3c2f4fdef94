"""Benchmark of the training stage: tokens/s of full fine-tuning vs LoRA, same model, data and launch.

Both runs go through the real path (torchrun -> scripts/train.py -> Trainer + DeepSpeed ZeRO) in one
invocation, so their ratio is robust to a noisy machine. Steady-state speed skips the first step
(DeepSpeed and autograd set-up); wall time includes everything.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/train.py [--model models/base] [--data data/aligned/aligned.jsonl]
        [--steps 8] [--processes 2] [--batch-size 4]        # after `dvc repro align`
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfalign.core.files import read_jsonl  # noqa: E402
from selfalign.train.finetune import encode  # noqa: E402


def run(method: str, a, tmp: Path) -> dict:
    params = {"seed": 1234, "align": {"assistant_name": "Sage"},
              "train": {"method": method, "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
                        "epochs": 1, "max_steps": a.steps, "learning_rate": 1e-5 if method == "full" else 2e-4,
                        "batch_size": a.batch_size, "grad_accum": 1, "max_length": a.max_length, "zero_stage": a.zero_stage,
                        "processes": a.processes, "save_steps": 10_000}}
    out = tmp / method
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(a.processes),
           str(ROOT / "scripts/train.py"), "--base", a.model, "--data", a.data,
           "--ds-config", str(ROOT / f"configs/deepspeed/zero{a.zero_stage}.json"), "--params", json.dumps(params),
           "--out", str(out / "model"), "--metrics", str(out / "m.json"), "--plot", str(out / "loss.csv"),
           "--work-dir", str(out / "work")]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // a.processes))),
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{method} training failed:\n{p.stderr[-4000:]}")
    with (out / "loss.csv").open() as f:
        seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
    steady = (seconds[-1] - seconds[0]) / (len(seconds) - 1)
    return {"wall_s": wall, "first_step_s": seconds[0], "steady_s_per_step": steady}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/base")
    ap.add_argument("--data", default="data/aligned/aligned.jsonl")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=384)
    ap.add_argument("--zero-stage", type=int, default=2)
    a = ap.parse_args()
    from transformers import AutoTokenizer

    records = read_jsonl(a.data, required=("query", "answer"))
    tok = AutoTokenizer.from_pretrained(a.model)
    enc = encode([(r["query"], r["answer"]) for r in records], tok, assistant="Sage", max_length=a.max_length)
    # Tokens one step processes, on average: every rank takes batch_size examples.
    per_step = sum(map(len, enc.input_ids)) / len(enc.input_ids) * a.batch_size * a.processes
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("lora", "full"):
            results[method] = run(method, a, Path(tmp))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; model {a.model}; "
          f"{a.processes} processes x batch {a.batch_size}, ZeRO-{a.zero_stage}, {a.steps} steps, "
          f"{per_step:.0f} tokens per step on average")
    for method, r in results.items():
        print(f"{method:5s} wall {r['wall_s']:6.1f} s  first step {r['first_step_s']:5.1f} s  "
              f"steady {r['steady_s_per_step']:5.2f} s/step = {per_step / r['steady_s_per_step']:7.1f} tokens/s")
    ratio = results["full"]["steady_s_per_step"] / results["lora"]["steady_s_per_step"]
    print(f"ratio (LoRA tokens/s over full): {ratio:.2f}x")


if __name__ == "__main__":
    main()
