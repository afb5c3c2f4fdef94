"""What a generation job pays before its first token: a fresh process imports the engine and opens it on the
model, as every generation job of the pipeline does. Each backend in processes of its own, alternating, in
one run; the transformers backend (load the model, nothing more) is the baseline of the ratio.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/engine_start.py            # after `dvc repro model`
    HF_HUB_OFFLINE=1 .venv/bin/python bench/engine_start.py --repeats 3 --model models/base
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# One process: import, open the backend, one short greedy generation (so a start that defers work is counted).
CHILD = """
import json, sys, time
t0 = time.monotonic()
from selfalign.engine.backends import open_backend
from selfalign.engine.models import inference_dtype
from selfalign.engine.types import Decoding, Engine
t1 = time.monotonic()
engine = Engine(batch_size=8, dtype=inference_dtype("auto"), prefix_cache=True, backend=sys.argv[2], max_num_seqs=32)
backend = open_backend(sys.argv[1], engine)
t2 = time.monotonic()
backend.generate(["User: Name a colour.\\n\\nSage:"], Decoding(0.0, 1.0, 4), seed=0)
t3 = time.monotonic()
print(json.dumps({"import_s": round(t1 - t0, 2), "open_s": round(t2 - t1, 2), "first_generate_s": round(t3 - t2, 2)}))
"""


def measure(model: str, backend: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, model, backend], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/base")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    runs = {"transformers": [], "vllm": []}
    for _ in range(a.repeats):
        for backend in runs:
            runs[backend].append(measure(a.model, backend))
    median = {b: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for b, rs in runs.items()}
    for b, m in median.items():
        total = sum(m.values())
        print(f"{b:12s} import {m['import_s']:5.1f} s  open {m['open_s']:5.1f} s  first generate "
              f"{m['first_generate_s']:4.1f} s  total {total:5.1f} s  (median of {a.repeats})")
    ratio = sum(median["vllm"].values()) / sum(median["transformers"].values())
    print(f"vllm / transformers: {ratio:.2f}x")


if __name__ == "__main__":
    main()
