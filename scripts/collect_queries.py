"""Stage `queries`, merge: parse, filter and deduplicate the shards' queries; validate; write metrics.

    python scripts/collect_queries.py --shards data/queries/shards/*.jsonl --seeds data/seeds/self_instruct.jsonl \
        --types data/seeds/red_team_types.jsonl --params '{"queries": {...}}' --out data/queries/queries.jsonl \
        --rejected data/queries/rejected.jsonl --metrics metrics/queries.json
"""
import argparse

from selfalign import queries, stage
from selfalign.config import parse_slice
from selfalign.generation import clear_journals, read_shards
from selfalign.io import replace_together, write_json, write_jsonl
from selfalign.seeds import load_question_types, load_self_instruct
from selfalign.validation import write_validated


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", nargs="+", required=True)
    for flag in ("--seeds", "--types", "--params", "--out", "--rejected", "--metrics"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--rule", default="collect_queries")
    ap.add_argument("--journal-dir", default=".selfalign/journal/queries")
    a = ap.parse_args()
    q = parse_slice(a.params)["queries"]
    rows = read_shards(a.shards)
    kept, rejected, counts = queries.collect(rows, load_self_instruct(a.seeds), load_question_types(a.types),
                                             min_words=q["min_words"], max_words=q["max_words"],
                                             threshold=q["rouge_threshold"])
    with replace_together():  # the step's outputs change together or not at all
        write_validated(a.out, kept, dataset="queries", rule=a.rule, words=(q["min_words"], q["max_words"]))
        if rejected:
            write_validated(a.rejected, rejected, dataset="queries_rejected", rule=a.rule)
        else:
            write_jsonl(a.rejected, [])  # an empty audit file still marks the stage as run
        write_json(a.metrics, {"generations": len(rows), "truncated_generations": sum(not r["finished"] for r in rows),
                               **dict(sorted(counts.items()))})
    clear_journals(a.journal_dir)


if __name__ == "__main__":
    stage.run(main)
