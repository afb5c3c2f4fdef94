"""Stage `eval`, one (checkpoint, shard): the checkpoint answers XSTest's prompts and the held-out queries
(greedy, dialogue format).

    python scripts/generate_xstest.py --model models/base --checkpoint base --prompts data/eval/xstest/xstest_prompts.csv \
        --queries data/queries/queries.jsonl --hhh data/eval/hhh --truthfulqa data/eval/truthfulqa/TruthfulQA.csv \
        --truthfulqa-mc data/eval/truthfulqa_bigbench/task_mc.json \
        --params "$(python -m selfalign.core.config seed model.inference_dtype generation align eval)" \
        --shard 0 --out data/eval_results/shards/xstest/base/000.jsonl
"""
from pathlib import Path

from selfalign.core import stage
from selfalign.core.config import parse_slice
from selfalign.core.files import InputError
from selfalign.core.files import read_jsonl
from selfalign.data.eval_sets import eval_questions, load_xstest
from selfalign.engine import shards
from selfalign.engine.journal import run_shard, shard_slice
from selfalign.engine.types import Engine
from selfalign.eval import fidelity, xstest


def main() -> None:
    a = shards.shard_parser(__doc__.splitlines()[0], "--model", "--checkpoint", "--prompts", "--queries", "--hhh",
                           "--truthfulqa", "--truthfulqa-mc", journal="xstest").parse_args()
    # evaluate.py takes a shard's checkpoint from its folder's name: one written elsewhere would count for another.
    if Path(a.out).parent.name != a.checkpoint:
        raise InputError(f"--out {a.out}: a shard of --checkpoint {a.checkpoint!r} belongs in a folder named {a.checkpoint!r}")
    p = parse_slice(a.params)
    prompts = load_xstest(a.prompts, max_prompts=p["eval"]["xstest_prompts"], seed=p["seed"])
    heldout = fidelity.heldout_queries(read_jsonl(a.queries, required=("id", "query", "source")),
                                       eval_questions(a.hhh, a.truthfulqa, truthfulqa_mc=a.truthfulqa_mc, xstest=a.prompts), p)
    items = xstest.build_items(prompts, p["align"]["assistant_name"]) + fidelity.student_items(
        heldout, p["align"]["assistant_name"])
    run_shard(shard_slice(items, a.shard, p["generation"]["shards"]), model_dir=a.model,
              decoding=xstest.decoding(p["eval"]["xstest_max_new_tokens"]), seed=p["seed"],
              engine=Engine.from_params(p), out_path=a.out, journal_dir=a.journal_dir, stop=xstest.STOP)


if __name__ == "__main__":
    stage.run(main)
