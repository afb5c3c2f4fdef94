"""Stage `align`, merge: parse thoughts and answers, reject bad outputs with reasons, validate, count citations.

    python scripts/collect_aligned.py --shards data/aligned/shards/*.jsonl --principles principles/principles.yaml \
        --exemplars principles/exemplars.yaml --params '{"principles": {...}, "align": {...}}' \
        --out data/aligned/aligned.jsonl --rejected data/aligned/rejected.jsonl --metrics metrics/align.json \
        --citations plots/principle_citations.csv
"""
from selfalign.core import stage
from selfalign.core.config import parse_slice
from selfalign.core.files import InputError, write_csv, write_json, write_jsonl
from selfalign.data import principles
from selfalign.engine import shards
from selfalign.engine.journal import read_shards
from selfalign.stages import align
from selfalign.validation.write import invalid_path, write_rejected, write_validated


def main() -> None:
    a = shards.collect_parser(__doc__.splitlines()[0], "--principles", "--exemplars", "--params", "--out", "--rejected",
                             "--metrics", "--citations", rule="collect_aligned", journal="align").parse_args()
    p = parse_slice(a.params)
    active, exemplars, version = principles.load_alignment_text(a.principles, a.exemplars, p["principles"]["exclude"])
    rows = read_shards(a.shards)
    kept, rejected, counts, cited = align.collect(rows, assistant=p["align"]["assistant_name"], principles=active,
                                                  exemplars=exemplars, principles_version=version,
                                                  filters=p["align"]["filters"])
    n = counts["generations"]
    if not kept:
        # Nothing is replaced (the step's outputs change together or not at all); the rejected outputs
        # are kept beside them for inspection, where neither Snakemake nor DVC removes them.
        audit = invalid_path(a.rejected)
        write_jsonl(audit, rejected)
        reasons = ", ".join(f"{k.removeprefix('removed.')}={v}" for k, v in sorted(counts.items())
                            if k.startswith("removed.") and v)
        raise InputError(f"{a.out} (rule {a.rule}): none of {n} outputs parsed into a thought and an answer "
                         f"({reasons}); see {audit}. A larger align.decoding.max_new_tokens or model may help.")
    # The contamination check's figures, as every generating job found them (the same on each).
    # The mix (planned, pool, held out, answered) comes from there too.
    sampled = dict(rows[0]["meta"]["contamination"])
    origins = align.origin_figures(kept + rejected, kept)
    origins["mix"] = sampled.pop("mix", {}) | origins["mix"]
    with shards.collecting(a.journal_dir):
        write_rejected(a.rejected, rejected, dataset="aligned_rejected", rule=a.rule)
        write_json(a.metrics, {**dict(sorted(counts.items())), **sampled, **origins,
                               "kept_share": round(len(kept) / n, 4) if n else 0.0,
                               "citations_per_answer": round(sum(cited.values()) / len(kept), 3) if kept else 0.0})
        write_csv(a.citations, ["principle", "citations"], [[f"{pr.id} ({pr.name})", cited.get(pr.id, 0)] for pr in active])
        write_validated(a.out, kept, dataset="aligned", rule=a.rule)


if __name__ == "__main__":
    stage.run(main)
