"""Benchmark of the training stage: tokens/s of full fine-tuning vs LoRA, same model, data and launch.

Both go through the real path (the stage's launcher -> torchrun -> scripts/train.py -> Trainer + DeepSpeed
ZeRO, params.yaml's train settings) in one invocation, so their ratio is robust to a noisy machine. Each
method runs `--steps` and twice as many steps: the difference is the steady speed, without start-up and
set-up ("first step" is the rest of the short run); wall time includes everything.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/train.py [--model models/base] [--data data/aligned/aligned.jsonl]
        [--steps 8] [--processes 2] [--batch-size 4]        # after `dvc repro align`
"""
from __future__ import annotations

import argparse
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


def launch(method: str, a, tmp: Path, steps: int) -> float:
    """Wall seconds of one training run of `steps` steps through the stage's launcher, params.yaml's train
    settings but for the method, the steps and this benchmark's sizes."""
    from selfalign.core.config import load_params

    p = load_params(ROOT / "params.yaml")
    train = p["train"] | {"method": method, "epochs": 1, "max_steps": steps, "batch_size": a.batch_size,
                          "max_length": a.max_length, "zero_stage": a.zero_stage, "processes": a.processes,
                          "save_steps": 10_000, "learning_rate": 1e-5 if method == "full" else p["train"]["learning_rate"]}
    params = {"seed": p["seed"], "align": {"assistant_name": p["align"]["assistant_name"]}, "train": train}
    out = tmp / f"{method}-{steps}"
    cmd = [sys.executable, "-m", "selfalign.train.launch", "--processes", str(a.processes), "--",
           str(ROOT / "scripts/train.py"), "--base", a.model, "--data", a.data,
           "--ds-configs", str(ROOT / "configs/deepspeed"), "--params", json.dumps(params),
           "--out", str(out / "model"), "--metrics", str(out / "m.json"), "--plot", str(out / "loss.csv"),
           "--work-dir", str(out / "work")]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // a.processes))),
                         capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"{method} training failed:\n{run.stderr[-4000:]}")
    return time.perf_counter() - t0


def run(method: str, a, tmp: Path) -> dict:
    """A run of `steps` and one of twice as many: their difference is `steps` steady steps, set-up excluded."""
    short, long = launch(method, a, tmp, a.steps), launch(method, a, tmp, 2 * a.steps)
    steady = (long - short) / a.steps
    return {"wall_s": short, "first_step_s": short - (a.steps - 1) * steady, "steady_s_per_step": steady}


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
