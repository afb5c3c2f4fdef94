"""Does the model's agreement with itself tell good aligned answers from bad ones? (SelfCheckGPT's idea,
Manakul et al. 2023: a model that knows a fact says it again when sampled again; a made-up one varies.)

For every labelled align answer that the current filters keep (tests/data/quality/labels.jsonl), the
base model answers the same align prompt `--samples` more times at `--temperature`; the answer's
agreement is its mean ROUGE-L against those samples' answers (0 for a sample that fails the format).
Prints each answer's label, agreement and relevance (per-token PMI, `align.filters.off_topic`), and
where the good answers rank by each score: a score that could make a filter ranks them first.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/self_consistency.py [--samples 4 --temperature 0.8]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfalign.core.config import load_params  # noqa: E402
from selfalign.core.files import read_jsonl  # noqa: E402
from selfalign.data import principles
from selfalign.data.templates import Template  # noqa: E402
from selfalign.engine.journal import run_shard  # noqa: E402
from selfalign.engine.types import Decoding, Engine
from selfalign.eval import quality  # noqa: E402
from selfalign.stages import align
from selfalign.text.dedup import rouge_l  # noqa: E402

LABELS = ROOT / "tests/data/quality/labels.jsonl"


def ranks(scored: list[dict], key: str) -> list[int]:
    """The 1-based ranks of the good answers when all are sorted by `key`, highest first."""
    order = sorted(scored, key=lambda r: -r[key])
    return [k + 1 for k, r in enumerate(order) if r["label"] == "good"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--model", default=str(ROOT / "models/base"), help="the base model's folder (`dvc repro model`)")
    a = ap.parse_args()
    p = load_params(ROOT / "params.yaml")
    cfg = p["align"]
    active, exemplars, version = principles.load_alignment_text(ROOT / "principles/principles.yaml",
                                                                ROOT / "principles/exemplars.yaml", p["principles"]["exclude"])
    grams = align.exemplar_ngrams(exemplars)
    kept = [lb for lb in read_jsonl(LABELS) if lb["stage"] == "align"
            and quality.kept_by_filters(lb, p, active=active, exemplar_grams=grams)]

    def answer(text: str, stopped_by: str | None) -> str | None:
        parsed = align.parse_response(text, stopped_by=stopped_by, assistant=cfg["assistant_name"], principles=active,
                                      exemplar_grams=grams)
        return None if parsed.reason else parsed.answer

    queries = [{"id": f"{i:04d}/{k}", "query": lb["text"]} for i, lb in enumerate(kept) for k in range(a.samples)]
    items = align.build_items(queries, Template(ROOT / "templates/align.j2"), assistant=cfg["assistant_name"],
                              identity=cfg["identity"], principles=active, exemplars=exemplars, principles_version=version)
    decoding = Decoding.from_params(cfg["decoding"] | {"temperature": a.temperature})
    with tempfile.TemporaryDirectory() as journal:
        rows = run_shard(items, model_dir=a.model, decoding=decoding, seed=p["seed"], engine=Engine.from_params(p),
                         out_path=None, journal_dir=journal, stop=align.stops(cfg["assistant_name"]))
    samples: dict[int, list[str | None]] = {}
    for row in rows:
        samples.setdefault(int(row["key"].split("/")[0]), []).append(answer(row["output"], row["stopped_by"]))
    scored = []
    for i, lb in enumerate(kept):
        own = answer(lb["output"], lb["stopped_by"])
        scored.append({"label": lb["label"], "query": lb["text"], "relevance": lb["relevance"],
                       "agreement": statistics.mean(rouge_l(own, s) if s else 0.0 for s in samples[i]),
                       "formatted": sum(s is not None for s in samples[i])})
    print(f"| label | agreement | relevance | samples in format (of {a.samples}) | query |")
    print("|---|---|---|---|---|")
    for r in sorted(scored, key=lambda r: -r["agreement"]):
        print(f"| {r['label']} | {r['agreement']:.3f} | {r['relevance']:.2f} | {r['formatted']} | {r['query'][:70]} |")
    print(f"\n{len(scored)} kept answers, {sum(r['label'] == 'good' for r in scored)} good; the good ones rank "
          f"{ranks(scored, 'agreement')} by agreement, {ranks(scored, 'relevance')} by relevance (1 = highest)")


if __name__ == "__main__":
    main()
