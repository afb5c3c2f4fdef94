"""Stage `verbose`, merge: filter the long answers, keep the rejected ones for audit, validate, count.

    python scripts/collect_verbose.py --shards data/verbose/shards/*.jsonl --principles principles/principles.yaml \
        --params "$(python -m selfalign.core.config align.assistant_name verbose)" \
        --out data/verbose/verbose.jsonl --rejected data/verbose/rejected.jsonl --metrics metrics/verbose.json
"""
from selfalign.core import stage
from selfalign.core.config import parse_slice
from selfalign.core.files import InputError, write_json, write_jsonl
from selfalign.engine import shards
from selfalign.engine.journal import read_shards
from selfalign.data import principles
from selfalign.stages import mix, verbose
from selfalign.validation.write import invalid_path, write_rejected, write_validated


def main() -> None:
    a = shards.collect_parser(__doc__.splitlines()[0], "--principles", "--params", "--out", "--rejected", "--metrics",
                             rule="collect_verbose", journal="verbose").parse_args()
    p = parse_slice(a.params)
    rows = read_shards(a.shards)
    v, assistant = p["verbose"], p["align"]["assistant_name"]
    kept, rejected, counts = verbose.collect(rows, assistant=assistant, min_words=v["min_words"], filters=v["filters"],
                                             principle_names=[pr.name for pr in principles.load_principles(a.principles)],
                                             instruction=verbose.instruction_text(v["instruction"], assistant))
    n = counts["generations"]
    words = [len(r["answer"].split()) for r in kept]
    if not kept:
        audit = invalid_path(a.rejected)  # nothing is replaced; the rejected answers are kept for inspection
        write_jsonl(audit, rejected)
        raise InputError(f"{a.out} (rule {a.rule}): none of {n} long answers passed the filters; see {audit}")
    with shards.collecting(a.journal_dir):
        write_rejected(a.rejected, rejected, dataset="verbose_rejected", rule=a.rule)
        write_json(a.metrics, {**dict(sorted(counts.items())), "kept_share": round(len(kept) / n, 4) if n else 0.0,
                               "mix": {"generated": mix.counts(kept + rejected), "kept": mix.counts(kept)},
                               "refusal_share": {"kept": mix.refusal_shares(kept)},
                               "mean_answer_words": round(sum(words) / len(words), 1) if words else 0.0})
        write_validated(a.out, kept, dataset="verbose", rule=a.rule)


if __name__ == "__main__":
    stage.run(main)
