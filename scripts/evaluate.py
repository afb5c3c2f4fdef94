"""Stage `eval`: score base, engraved and final checkpoints on BIG-bench HHH and TruthfulQA MC.

    python scripts/evaluate.py --checkpoints base=models/base engraved=models/engraved final=models/final \
        --hhh data/eval/hhh --truthfulqa data/eval/truthfulqa/TruthfulQA.csv \
        --params "$(python -m selfalign.config seed model.inference_dtype generation.prefix_cache align.assistant_name eval)" \
        --items data/eval_results/items.jsonl --metrics metrics/eval.json --plot plots/eval.csv
"""
import argparse
import csv
import gc
import io

from selfalign import eval_data, evaluate, stage
from selfalign.config import parse_slice
from selfalign.io import InputError, atomic_open, write_json, write_jsonl
from selfalign.models import inference_dtype, load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", nargs="+", required=True, help="NAME=FOLDER ...")
    for flag in ("--hhh", "--truthfulqa", "--params", "--items", "--metrics", "--plot"):
        ap.add_argument(flag, required=True)
    a = ap.parse_args()
    p = parse_slice(a.params)
    checkpoints = dict(c.split("=", 1) for c in a.checkpoints if "=" in c)
    if len(checkpoints) != len(a.checkpoints):
        raise InputError(f"--checkpoints takes NAME=FOLDER pairs, got {a.checkpoints}")
    items = eval_data.load_hhh(a.hhh, per_category=p["eval"]["hhh_per_category"], seed=p["seed"]) + eval_data.load_truthfulqa(
        a.truthfulqa, max_questions=p["eval"]["truthfulqa_questions"], seed=p["seed"])
    reqs = [r for it in items for r in evaluate.requests(it, p["align"]["assistant_name"])]
    dtype = inference_dtype(p["model"]["inference_dtype"])
    metrics, rows = {}, []
    for name, folder in checkpoints.items():
        model, tok, manifest = load(folder, dtype=dtype)
        scores = evaluate.score(model, tok, reqs, prefix_cache=p["generation"]["prefix_cache"], desc=f"eval {name}")
        graded = evaluate.grade(items, scores)
        metrics[name] = evaluate.summarize(graded) | {"model": manifest["id"], "dtype": dtype}
        rows += [g | {"checkpoint": name} for g in graded]
        del model
        gc.collect()
    write_jsonl(a.items, rows)
    write_json(a.metrics, metrics)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["task (checkpoint)", "task", "checkpoint", "accuracy"])
    for name, m in metrics.items():
        tasks = [(f"hhh/{c}", m["hhh"][c]["acc"]) for c in eval_data.HHH_CATEGORIES] + [
            ("hhh", m["hhh"]["acc"]), ("truthfulqa/mc1", m["truthfulqa"]["mc1"]), ("truthfulqa/mc2", m["truthfulqa"]["mc2"])]
        for task, acc in tasks:
            w.writerow([f"{task} ({name})", task, name, acc])
    with atomic_open(a.plot) as f:
        f.write(buf.getvalue())


if __name__ == "__main__":
    stage.run(main)
