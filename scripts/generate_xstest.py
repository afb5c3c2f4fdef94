"""Stage `eval`, one (checkpoint, shard): the checkpoint answers XSTest's prompts (greedy, dialogue format).

    python scripts/generate_xstest.py --checkpoints base=models/base engraved=models/engraved final=models/final \
        --checkpoint base --prompts data/eval/xstest/xstest_prompts.csv \
        --params "$(python -m selfalign.core.config seed model.inference_dtype generation align.assistant_name eval)" \
        --shard 0 --out data/eval_results/shards/xstest/base/000.jsonl
"""
from selfalign.engine import shards
from selfalign.core import stage
from selfalign.eval import xstest
from selfalign.core.config import parse_slice
from selfalign.data.eval_sets import load_xstest
from selfalign.engine.types import Engine
from selfalign.engine.journal import run_shard, shard_slice
from selfalign.core.files import InputError


def main() -> None:
    ap = shards.shard_parser(__doc__.splitlines()[0], "--checkpoint", "--prompts", journal="xstest")
    ap.add_argument("--checkpoints", nargs="+", required=True, help="NAME=FOLDER ...")
    a = ap.parse_args()
    p = parse_slice(a.params)
    checkpoints = dict(c.split("=", 1) for c in a.checkpoints if "=" in c)
    if a.checkpoint not in checkpoints:
        raise InputError(f"--checkpoint {a.checkpoint!r} is not one of --checkpoints ({', '.join(checkpoints)})")
    prompts = load_xstest(a.prompts, max_prompts=p["eval"]["xstest_prompts"], seed=p["seed"])
    items = xstest.build_items(prompts, p["align"]["assistant_name"])
    run_shard(shard_slice(items, a.shard, p["generation"]["shards"]), model_dir=checkpoints[a.checkpoint],
              decoding=xstest.decoding(p["eval"]["xstest_max_new_tokens"]), seed=p["seed"],
              engine=Engine.from_params(p), out_path=a.out, journal_dir=a.journal_dir, stop=xstest.STOP)


if __name__ == "__main__":
    stage.run(main)
