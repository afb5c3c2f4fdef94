"""How well each stage's filters pick good outputs: precision and recall on the hand-labelled quality set.

tests/data/quality/labels.jsonl holds outputs of the default pipeline, each labelled good or bad by a
person (criteria: tests/data/quality/CRITERIA.md), kept and rejected ones alike. This script runs the
stage filters of the current code and params.yaml over them and prints, per stage: how many outputs
the filters keep, the share of those that are good (precision), and the share of the good ones that
they keep (recall).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/quality.py [--json bench/quality.json]
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfalign.core.config import load_params  # noqa: E402
from selfalign.core.files import read_jsonl, write_json  # noqa: E402
from selfalign.eval import quality  # noqa: E402

LABELS = ROOT / "tests/data/quality/labels.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default=str(LABELS))
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args()
    params = load_params(ROOT / "params.yaml")
    labels = read_jsonl(a.labels)
    rows = quality.score_filters(labels, params, root=ROOT)
    # The baseline, in the same run: the align stage with its format checks only (every content filter off).
    base = copy.deepcopy(params)
    base["align"]["filters"] = quality.only_filters(params["align"]["filters"])
    before = [r | {"stage": "align (format checks only)"} for r in quality.score_filters(labels, base, root=ROOT)
              if r["stage"] == "align"]

    def share(x: float | None, n: int, d: int) -> str:
        return "n/a" if x is None else f"{x:.0%} ({n}/{d})"

    print("| stage | labelled | good | kept | good among kept (precision) | good kept (recall) |")
    print("|---|---|---|---|---|---|")
    for r in before + rows:
        print(f"| {r['stage']} | {r['labelled']} | {r['good']} | {r['kept']} | {share(r['precision'], r['kept_good'], r['kept'])} "
              f"| {share(r['recall'], r['kept_good'], r['good'])} |")
    # Each align content filter alone, against the format checks alone.
    per_filter = quality.filter_table(labels, params, root=ROOT)
    print("\n| align filter | default | drops | of them bad (precision) | bad answers it drops (recall) |")
    print("|---|---|---|---|---|")
    for r in per_filter:
        recall = "n/a" if r["recall"] is None else f"{r['recall']:.0%}"
        print(f"| `{r['filter']}` | {'on' if r['on'] else 'off'} | {r['dropped']} | "
              f"{share(r['precision'], r['dropped_bad'], r['dropped'])} | {recall} |")
    if a.json:
        write_json(a.json, {"stages": rows, "align_filters": per_filter})


if __name__ == "__main__":
    main()
