"""Benchmark of the pipeline's own overhead, on the tiny config the tests use (embedded SmolLM2).

Times, in one throwaway copy of the repository: the first `dvc repro` (every stage), a no-op
`dvc repro`, a `dvc repro` after a principle edit (align and what follows it run; topics and queries
do not), and a `dvc repro` after reverting the edit (every stage restored from the run cache).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/pipeline.py [--keep DIR]
"""
from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from pipeline import Pipeline  # noqa: E402


def timed(pipe: Pipeline, label: str, results: list) -> None:
    t0 = time.perf_counter()
    p = pipe.repro()
    seconds = time.perf_counter() - t0
    ran = Pipeline.ran(p)
    cached = [line.split("'")[1] for line in p.stdout.splitlines() if "is cached - skipping run" in line]
    results.append((label, seconds, ran, cached))
    print(f"{label:38s} {seconds:7.1f} s  ran: {', '.join(ran) or '-'}"
          + (f"  restored from run cache: {', '.join(cached)}" if cached else ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", help="build the copy here and keep it (default: a temp folder, removed)")
    a = ap.parse_args()
    from selfalign.engine.models import materialize

    tmp = Path(a.keep or tempfile.mkdtemp(prefix="selfalign-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    model = tmp / "smollm2"
    if not (model / "config.json").exists():
        materialize("smollm2-135m-instruct", model)
    print(f"machine: {platform.processor() or platform.machine()}; tiny config of tests/pipeline.py, SmolLM2-135M")
    pipe = Pipeline(tmp / "pipeline", str(model))
    results: list = []
    timed(pipe, "first dvc repro (every stage)", results)
    timed(pipe, "no-op dvc repro", results)
    path = pipe.path / "principles/principles.yaml"
    original = path.read_text()
    path.write_text(original.replace("thinks carefully and draws conclusions", "reasons with care and draws conclusions"))
    timed(pipe, "dvc repro after a principle edit", results)
    path.write_text(original)
    timed(pipe, "dvc repro after reverting the edit", results)
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
