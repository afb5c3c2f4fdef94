"""What the align stage made of each order of the exemplars: per exemplar standing nearest the query
(last in the prompt), how many answers were kept and the commonest reasons for the rest.

    .venv/bin/python bench/exemplar_orders.py            # after `dvc repro align` (any align.exemplar_rotations)
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfalign.core.files import read_jsonl  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(ROOT), help="the pipeline's folder")
    a = ap.parse_args()
    folder = Path(a.root) / "data/aligned"
    outcomes: dict[int, Counter] = defaultdict(Counter)
    for r in read_jsonl(folder / "aligned.jsonl", allow_empty=True):
        outcomes[r["exemplar_order"][-1]]["kept"] += 1
    for r in read_jsonl(folder / "rejected.jsonl", allow_empty=True):
        outcomes[r["exemplar_order"][-1]][r["reason"]] += 1
    print("| exemplar nearest the query | answers | kept | commonest reasons for the rest |")
    print("|---|---|---|---|")
    for last, c in sorted(outcomes.items()):
        total = sum(c.values())
        rest = ", ".join(f"{reason.replace('_', ' ')} {n}" for reason, n in c.most_common() if reason != "kept")
        print(f"| {last} | {total} | {c['kept']} ({c['kept'] / total:.0%}) | {rest} |")


if __name__ == "__main__":
    main()
