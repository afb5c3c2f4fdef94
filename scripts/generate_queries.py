"""Stage `queries`, one shard: self-instruct instructions and red-teaming questions per (type, topic).

    python scripts/generate_queries.py --model models/base --seeds data/seeds/self_instruct.jsonl \
        --types data/seeds/red_team_types.jsonl --topics data/topics/topics.jsonl \
        --si-template templates/self_instruct.j2 --rt-template templates/red_team_questions.j2 \
        --params '{"seed": 1, "generation": {...}, "queries": {...}}' --shard 0 --out data/queries/shards/000.jsonl
"""
import argparse

from selfalign import limits, queries, stage
from selfalign.config import parse_slice
from selfalign.generation import Decoding, Engine, run_shard, shard_slice
from selfalign.io import read_jsonl
from selfalign.prompts import Template
from selfalign.seeds import load_question_types, load_self_instruct


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--model", "--seeds", "--types", "--topics", "--si-template", "--rt-template", "--params", "--out"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--shard", type=int, required=True)
    ap.add_argument("--journal-dir", default=".selfalign/journal/queries")
    a = ap.parse_args()
    p = parse_slice(a.params)
    q = p["queries"]
    items = queries.build_items(
        load_self_instruct(a.seeds), load_question_types(a.types), read_jsonl(a.topics),
        Template(a.si_template), Template(a.rt_template), self_instruct_prompts=q["self_instruct_prompts"],
        demos_per_prompt=q["demos_per_prompt"], questions_per_topic_prompt=q["questions_per_topic_prompt"],
        seed=p["seed"])
    shard = shard_slice(items, a.shard, p["generation"]["shards"])
    limits.check_prompts(shard, model_dir=a.model, max_new_tokens=q["decoding"]["max_new_tokens"],
                         setting="queries.decoding.max_new_tokens",
                         blame=lambda key: f"{a.seeds} in {a.si_template}" if key.startswith("si#")
                         else f"{a.topics} (id={key.split('#')[0]}) in {a.rt_template}")
    run_shard(shard, model_dir=a.model,
              decoding=Decoding.from_params(q["decoding"]), seed=p["seed"], engine=Engine.from_params(p),
              out_path=a.out, journal_dir=a.journal_dir, stop=queries.STOP)


if __name__ == "__main__":
    stage.run(main)
