"""Stage `queries`, one shard: self-instruct instructions and red-teaming questions per (type, topic).

    python scripts/generate_queries.py --model models/base --seeds data/seeds/self_instruct.jsonl \
        --types data/seeds/red_team_types.jsonl --topics data/topics/topics.jsonl \
        --si-template templates/self_instruct.j2 --rt-template templates/red_team_questions.j2 \
        --params '{"seed": 1, "generation": {...}, "queries": {...}}' --shard 0 --out data/queries/shards/000.jsonl
"""
from selfalign.core import stage
from selfalign.core.config import parse_slice
from selfalign.core.files import read_jsonl
from selfalign.data.seeds import load_question_types, load_self_instruct
from selfalign.data.templates import Template
from selfalign.engine import shards
from selfalign.stages import queries


def main() -> None:
    a = shards.parse_args(shards.shard_parser(__doc__.splitlines()[0], "--model", "--seeds", "--types", "--topics", "--si-template",
                           "--rt-template", journal="queries"))
    p = parse_slice(a.params)
    q = p["queries"]
    items = queries.build_items(
        load_self_instruct(a.seeds), load_question_types(a.types), read_jsonl(a.topics),
        Template(a.si_template), Template(a.rt_template), self_instruct_prompts=queries.self_instruct_prompt_count(p),
        demos_per_prompt=q["demos_per_prompt"], questions_per_topic_prompt=q["questions_per_topic_prompt"],
        seed=p["seed"])
    shards.generate_shard(items, a, p, decoding="queries.decoding", stop=queries.STOP,
                         blame=lambda key: f"{a.seeds} in {a.si_template}" if key.startswith("si#")
                         else f"{a.topics} (id={key.split('#')[0]}) in {a.rt_template}")


if __name__ == "__main__":
    stage.run(main)
