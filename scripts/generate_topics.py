"""Stage `topics`, one shard: the model proposes topics for each red-teaming question type.

    python scripts/generate_topics.py --model models/base --types data/seeds/red_team_types.jsonl \
        --template templates/topics.j2 --params "$(python -m selfalign.config seed generation topics)" \
        --shard 0 --out data/topics/shards/000.jsonl
"""
import argparse

from selfalign import limits, stage, topics
from selfalign.config import parse_slice
from selfalign.generation import Decoding, Engine, run_shard, shard_slice
from selfalign.prompts import Template
from selfalign.seeds import load_question_types


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--types", required=True)
    ap.add_argument("--template", required=True)
    ap.add_argument("--params", required=True, help="JSON slice of params.yaml: seed, generation, topics")
    ap.add_argument("--shard", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--journal-dir", default=".selfalign/journal/topics")
    a = ap.parse_args()
    p = parse_slice(a.params)
    items = topics.build_items(load_question_types(a.types), Template(a.template), p["topics"]["samples_per_type"])
    shard = shard_slice(items, a.shard, p["generation"]["shards"])
    limits.check_prompts(shard, model_dir=a.model, max_new_tokens=p["topics"]["decoding"]["max_new_tokens"],
                         setting="topics.decoding.max_new_tokens",
                         blame=lambda key: f"{a.types} (id={key.split('#')[0]}) in {a.template}")
    run_shard(shard, model_dir=a.model,
              decoding=Decoding.from_params(p["topics"]["decoding"]), seed=p["seed"],
              engine=Engine.from_params(p), out_path=a.out, journal_dir=a.journal_dir, stop=topics.STOP)


if __name__ == "__main__":
    stage.run(main)
