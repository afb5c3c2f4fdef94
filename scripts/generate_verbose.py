"""Stage `verbose`, one shard: the engraved model, told to be detailed, answers the aligned queries.

    python scripts/generate_verbose.py --model models/engraved --aligned data/aligned/aligned.jsonl \
        --template templates/verbose.j2 --params "$(python -m selfalign.config seed generation align verbose)" \
        --shard 0 --out data/verbose/shards/000.jsonl
"""
import argparse

from selfalign import limits, stage, verbose
from selfalign.config import parse_slice
from selfalign.generation import Decoding, Engine, run_shard, shard_slice
from selfalign.io import read_jsonl
from selfalign.prompts import Template


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--model", "--aligned", "--template", "--params", "--out"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--shard", type=int, required=True)
    ap.add_argument("--journal-dir", default=".selfalign/journal/verbose")
    a = ap.parse_args()
    p = parse_slice(a.params)
    items = verbose.build_items(read_jsonl(a.aligned, required=("id", "query")), Template(a.template),
                                assistant=p["align"]["assistant_name"], instruction=p["verbose"]["instruction"])
    shard = shard_slice(items, a.shard, p["generation"]["shards"])
    limits.check_prompts(shard, model_dir=a.model, max_new_tokens=p["verbose"]["decoding"]["max_new_tokens"],
                         setting="verbose.decoding.max_new_tokens",
                         blame=lambda key: f"{a.aligned} (id={key}) with verbose.instruction in {a.template}")
    run_shard(shard, model_dir=a.model,
              decoding=Decoding.from_params(p["verbose"]["decoding"]), seed=p["seed"],
              engine=Engine.from_params(p), out_path=a.out, journal_dir=a.journal_dir, stop=verbose.STOP)


if __name__ == "__main__":
    stage.run(main)
