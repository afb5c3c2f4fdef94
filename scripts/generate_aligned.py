"""Stage `align`, one shard: the base model answers queries with the principles and exemplars in context.

    python scripts/generate_aligned.py --model models/base --queries data/queries/queries.jsonl \
        --principles principles/principles.yaml --exemplars principles/exemplars.yaml \
        --template templates/align.j2 --hhh data/eval/hhh --truthfulqa data/eval/truthfulqa/TruthfulQA.csv \
        --truthfulqa-mc data/eval/truthfulqa_bigbench/task_mc.json --xstest data/eval/xstest/xstest_prompts.csv --params "$(python -m selfalign.core.config seed generation principles align)" \
        --shard 0 --out data/aligned/shards/000.jsonl
"""
import dataclasses
import functools

from selfalign.core import stage
from selfalign.core.config import parse_slice
from selfalign.core.files import read_jsonl
from selfalign.data import principles
from selfalign.data.eval_sets import eval_questions
from selfalign.data.templates import Template
from selfalign.engine import limits, shards
from selfalign.stages import align


def main() -> None:
    a = shards.parse_args(shards.shard_parser(__doc__.splitlines()[0], "--model", "--queries", "--principles", "--exemplars", "--template",
                           "--hhh", "--truthfulqa", "--truthfulqa-mc", "--xstest", journal="align"))
    p = parse_slice(a.params)
    cfg = p["align"]
    active, exemplars, version = principles.load_alignment_text(a.principles, a.exemplars, p["principles"]["exclude"])
    queries, contamination = align.prepare_queries(read_jsonl(a.queries, required=("id", "query", "source")),
                                       eval_questions(a.hhh, a.truthfulqa, truthfulqa_mc=a.truthfulqa_mc, xstest=a.xstest), threshold=cfg["contamination_threshold"],
                                       max_queries=cfg["max_queries"], seed=p["seed"],
                                       red_team_share=cfg["red_team_share"], heldout=cfg["heldout_queries"])
    items = align.build_items(queries, Template(a.template), assistant=cfg["assistant_name"], identity=cfg["identity"],
                              principles=active, exemplars=exemplars, principles_version=version,
                              rotations=cfg["exemplar_rotations"], seed=p["seed"])
    # Every shard checks all queries, so each row carries the same figures: collect reads them there.
    items = [dataclasses.replace(it, meta=it.meta | {"contamination": contamination}) for it in items]
    tok = limits.load_tokenizer(a.model)

    def blame(key: str) -> str:
        """The longest part of the prompt: a principle, an exemplar, the identity or the query."""
        parts = {f"{a.principles}: principles entry {pr.id} ({pr.name})": pr.text for pr in active}
        parts |= {f"{a.exemplars}: exemplars entry {e.id}": f"{e.query} {e.thought} {e.answer}" for e in exemplars}
        parts |= {"params.yaml: align.identity": cfg["identity"],
                  f"{a.queries} (id={key})": next((q["query"] for q in queries if q["id"] == key), "")}
        counts = dict(zip(parts, limits.count_tokens(tok, list(parts.values()))))
        longest = max(counts, key=counts.get)
        return f"{longest} has {counts[longest]:,} tokens"

    # Relevance is scored only for the filter that reads it; without it the records carry relevance None.
    annotate = None if cfg["filters"]["off_topic"] is None else functools.partial(
        align.annotate_relevance, assistant=cfg["assistant_name"], principles=active, exemplars=exemplars,
        prefix_cache=p["generation"]["prefix_cache"])
    shards.generate_shard(items, a, p, decoding="align.decoding", stop=align.stops(cfg["assistant_name"]), blame=blame,
                         tokenizer=tok, annotate=annotate)


if __name__ == "__main__":
    stage.run(main)
