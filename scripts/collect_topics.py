"""Stage `topics`, merge: parse, clean and deduplicate the shards' topics; validate; write metrics.

    python scripts/collect_topics.py --shards data/topics/shards/*.jsonl --types data/seeds/red_team_types.jsonl \
        --template templates/topics.j2 --params '{"topics": {"max_per_type": 3}}' \
        --out data/topics/topics.jsonl --metrics metrics/topics.json
"""
from selfalign.core import stage
from selfalign.core.config import parse_slice
from selfalign.core.files import write_json
from selfalign.data.seeds import load_question_types
from selfalign.data.templates import Template
from selfalign.engine import shards
from selfalign.engine.journal import read_shards
from selfalign.stages import topics
from selfalign.validation.write import write_validated


def main() -> None:
    a = shards.collect_parser(__doc__.splitlines()[0], "--types", "--template", "--params", "--out", "--metrics",
                             rule="collect_topics", journal="topics").parse_args()
    p = parse_slice(a.params)["topics"]
    rows = read_shards(a.shards)
    types = load_question_types(a.types)
    records, counts, per_type = topics.collect(rows, types, Template(a.template), max_per_type=p["max_per_type"],
                                               max_words=p["max_words"], threshold=p["rouge_threshold"])
    names = {t["id"]: t["name"] for t in types}
    with shards.collecting(a.journal_dir):
        write_validated(a.out, records, dataset="topics", rule=a.rule, words=(1, p["max_words"]))
        write_json(a.metrics, {"generations": len(rows), "truncated_generations": sum(not r["finished"] for r in rows),
                               "rounds": 1 + max((r["meta"]["round"] for r in rows), default=0),
                               "types_covered": sum(n > 0 for n in per_type.values()), "types": len(types),
                               "types_below_min": sum(n < p["min_per_type"] for n in per_type.values()),
                               "per_type": {f"{k} {names[k]}": n for k, n in per_type.items()},
                               **dict(sorted(counts.items()))})


if __name__ == "__main__":
    stage.run(main)
