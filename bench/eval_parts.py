"""How long each part of the `eval` stage takes per checkpoint, so the eval set sizes can be chosen for a
time budget. Times one checkpoint (the base model by default) on the full sets:

    HF_HUB_OFFLINE=1 .venv/bin/python bench/eval_parts.py --model models/base [--hhh 10 --mc 60 --xstest 90]

Each part is timed on a seeded sample and reported as wall seconds, CPU seconds of this process (steadier
than wall time on a shared machine), and both extrapolated per item to the full set.

Parts: model load; HHH (221 items, 2 candidates each); BIG-bench TruthfulQA MC1 (299, published format);
CSV-derived TruthfulQA MC1/MC2 (817, ~12 candidates each); XSTest answers (450 prompts, greedy,
eval.xstest_max_new_tokens tokens, through the generation engine); detector and statistics.
"""
import argparse
import tempfile
import time
from pathlib import Path

from selfalign.core.config import load_params
from selfalign.data import eval_sets
from selfalign.engine import scoring
from selfalign.engine.journal import run_shard
from selfalign.engine.backends import open_backend
from selfalign.engine.models import inference_dtype, load_model
from selfalign.engine.types import Engine
from selfalign.eval import multiple_choice, xstest

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "data" / "eval"


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models/base"))
    ap.add_argument("--hhh", type=int, default=None, help="HHH items per category (default: all 221)")
    ap.add_argument("--mc", type=int, default=None, help="BIG-bench MC1 questions (default: all 299)")
    ap.add_argument("--truthfulqa", type=int, default=60, help="CSV TruthfulQA questions (of 817)")
    ap.add_argument("--xstest", type=int, default=None, help="XSTest prompts (default: all 450)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: eval.xstest_max_new_tokens")
    a = ap.parse_args()
    p = load_params(ROOT / "params.yaml")
    dtype = inference_dtype(p["model"]["inference_dtype"])
    max_new = a.max_new_tokens or p["eval"]["xstest_max_new_tokens"]
    assistant = p["align"]["assistant_name"]
    parts = {
        "hhh": (eval_sets.load_hhh(EVAL / "hhh", per_category=a.hhh, seed=p["seed"]), 221),
        "truthfulqa_mc (published MC1)": (eval_sets.load_truthfulqa_mc(
            EVAL / "truthfulqa_bigbench/task_mc.json", max_questions=a.mc, seed=p["seed"]), 299),
        "truthfulqa (CSV MC1/MC2)": (eval_sets.load_truthfulqa(
            EVAL / "truthfulqa/TruthfulQA.csv", max_questions=a.truthfulqa, seed=p["seed"]), 817),
    }
    rows = []
    (model, tok, _), w, c = _timed(lambda: load_model(a.model, dtype=dtype))
    rows.append(("load model", 1, 1, w, c))
    for name, (items, full) in parts.items():
        reqs = [r for it in items for r in multiple_choice.requests(it, assistant)]
        _, w, c = _timed(lambda: scoring.score(model, tok, reqs, prefix_cache=p["generation"]["prefix_cache"], desc=name))
        rows.append((f"score {name} ({len(reqs)} candidates)", len(items), full, w, c))
    prompts = eval_sets.load_xstest(EVAL / "xstest/xstest_prompts.csv", max_prompts=a.xstest, seed=p["seed"])
    items = xstest.build_items(prompts, assistant)
    with tempfile.TemporaryDirectory() as tmp:
        gen, w, c = _timed(lambda: run_shard(
            items, model_dir=a.model, decoding=xstest.decoding(max_new), seed=p["seed"], engine=Engine.from_params(p),
            out_path=Path(tmp) / "x.jsonl", journal_dir=Path(tmp) / "j", stop=xstest.STOP,
            backend=open_backend(a.model, Engine.from_params(p), model_and_tokenizer=(model, tok))))
    rows.append((f"generate xstest ({max_new} new tokens, batch {p['generation']['batch_size']})", len(items), 450, w, c))
    hhh = parts["hhh"][0]
    graded = multiple_choice.grade(hhh, [(-1.0, 1)] * sum(len(i.choices) for i in hhh))
    recs, w, c = _timed(lambda: (xstest.summarize(xstest.collect("base", gen)),
                                 multiple_choice.summarize(graded, seed=1, n_boot=p["eval"]["bootstrap_samples"]),
                                 multiple_choice.compare_to_base(graded, graded, seed=1, n_boot=p["eval"]["bootstrap_samples"])))
    rows.append(("detector + HHH statistics", 1, 1, w, c))
    x = xstest.collect("base", gen)
    print(f"xstest: {sum(r['refusal'] for r in x)} of {len(x)} answers classified as refusals, "
          f"{sum(r['empty'] for r in x)} empty, {sum(not r['finished'] for r in x)} hit max_new_tokens")
    print(f"{'part':58s} {'items':>6s} {'wall s':>8s} {'cpu s':>8s} {'full set':>9s} {'wall s (full)':>14s} {'cpu s (full)':>13s}")
    for name, n, full, w, c in rows:
        print(f"{name:58s} {n:6d} {w:8.1f} {c:8.1f} {full:9d} {w * full / n:14.0f} {c * full / n:13.0f}")


if __name__ == "__main__":
    main()
