"""How long each part of the `eval` stage takes per checkpoint, so the eval set sizes can be chosen for a
time budget. Times one checkpoint (the base model by default) on the full sets:

    HF_HUB_OFFLINE=1 .venv/bin/python bench/eval_parts.py --model models/base [--xstest 450] [--repeat 1]

Parts: model load; HHH (all 221 items, 2 candidates each); BIG-bench TruthfulQA MC1 (all 299, published
format); CSV-derived TruthfulQA MC1/MC2 (a sample, --truthfulqa); XSTest answers (--xstest prompts, greedy,
eval.xstest_max_new_tokens tokens, through the generation engine); detector and statistics.
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

from selfalign import eval_data, evaluate, xstest
from selfalign.config import load_params
from selfalign.generation import Engine, run_shard
from selfalign.models import inference_dtype, load

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "data" / "eval"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models/base"))
    ap.add_argument("--truthfulqa", type=int, default=100, help="CSV TruthfulQA questions to time (of 817)")
    ap.add_argument("--xstest", type=int, default=450, help="XSTest prompts to time (of 450)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: eval.xstest_max_new_tokens")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    p = load_params(ROOT / "params.yaml")
    dtype = inference_dtype(p["model"]["inference_dtype"])
    max_new = a.max_new_tokens or p["eval"]["xstest_max_new_tokens"]
    parts = {
        "hhh (221)": eval_data.load_hhh(EVAL / "hhh"),
        "truthfulqa_mc published MC1 (299)": eval_data.load_truthfulqa_mc(EVAL / "truthfulqa_bigbench/task_mc.json"),
        f"truthfulqa CSV MC1/MC2 ({a.truthfulqa})": eval_data.load_truthfulqa(
            EVAL / "truthfulqa/TruthfulQA.csv", max_questions=a.truthfulqa, seed=p["seed"]),
    }
    results: dict[str, list[float]] = {}
    for _ in range(a.repeat):
        t = time.perf_counter()
        model, tok, _ = load(a.model, dtype=dtype)
        results.setdefault("load model", []).append(time.perf_counter() - t)
        for name, items in parts.items():
            reqs = [r for it in items for r in evaluate.requests(it, p["align"]["assistant_name"])]
            t = time.perf_counter()
            evaluate.score(model, tok, reqs, prefix_cache=p["generation"]["prefix_cache"], desc=name)
            results.setdefault(f"score {name}: {len(reqs)} candidates", []).append(time.perf_counter() - t)
        prompts = eval_data.load_xstest(EVAL / "xstest/xstest_prompts.csv", max_prompts=a.xstest, seed=p["seed"])
        items = xstest.build_items(prompts, p["align"]["assistant_name"])
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            rows = run_shard(items, model_dir=a.model, decoding=xstest.decoding(max_new), seed=p["seed"],
                             engine=Engine.from_params(p), out_path=Path(tmp) / "x.jsonl", journal_dir=Path(tmp) / "j",
                             stop=xstest.STOP, model_and_tokenizer=(model, tok))
            results.setdefault(f"generate xstest ({len(items)} prompts, {max_new} new tokens, "
                               f"batch {p['generation']['batch_size']})", []).append(time.perf_counter() - t)
        t = time.perf_counter()
        recs = xstest.collect("base", rows)
        xstest.summarize(recs)
        graded = evaluate.grade(parts["hhh (221)"], [(-1.0, 1)] * sum(len(i.choices) for i in parts["hhh (221)"]))
        evaluate.summarize(graded, seed=1, n_boot=p["eval"]["bootstrap_samples"])
        evaluate.compare(graded, graded, seed=1, n_boot=p["eval"]["bootstrap_samples"])
        results.setdefault("detector + HHH statistics", []).append(time.perf_counter() - t)
        refused = sum(r["refusal"] for r in recs)
        print(f"xstest: {refused} of {len(recs)} answers classified as refusals; "
              f"{sum(not r['finished'] for r in recs)} hit max_new_tokens")
        del model
    print(json.dumps({k: [round(x, 1) for x in v] for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
