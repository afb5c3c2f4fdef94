"""Stage `queries`, merge: parse, filter and deduplicate the shards' queries; validate; write metrics.

    python scripts/collect_queries.py --shards data/queries/shards/*.jsonl --seeds data/seeds/self_instruct.jsonl \
        --types data/seeds/red_team_types.jsonl --params '{"queries": {...}}' --out data/queries/queries.jsonl \
        --rejected data/queries/rejected.jsonl --metrics metrics/queries.json
"""
from selfalign.core import stage
from selfalign.core.config import parse_slice
from selfalign.core.files import write_json
from selfalign.data.seeds import load_question_types, load_self_instruct
from selfalign.engine import shards
from selfalign.engine.journal import read_shards
from selfalign.stages import queries
from selfalign.validation.write import write_rejected, write_validated


def main() -> None:
    a = shards.collect_parser(__doc__.splitlines()[0], "--seeds", "--types", "--params", "--out", "--rejected", "--metrics",
                             rule="collect_queries", journal="queries").parse_args()
    q = parse_slice(a.params)["queries"]
    rows = read_shards(a.shards)
    kept, rejected, counts = queries.collect(rows, load_self_instruct(a.seeds), load_question_types(a.types),
                                             min_words=q["min_words"], max_words=q["max_words"],
                                             threshold=q["rouge_threshold"])
    with shards.collecting(a.journal_dir):
        write_validated(a.out, kept, dataset="queries", rule=a.rule, words=(q["min_words"], q["max_words"]))
        write_rejected(a.rejected, rejected, dataset="queries_rejected", rule=a.rule)
        write_json(a.metrics, {"generations": len(rows), "truncated_generations": sum(not r["finished"] for r in rows),
                               **dict(sorted(counts.items()))})


if __name__ == "__main__":
    stage.run(main)
