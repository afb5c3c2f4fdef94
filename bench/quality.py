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
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfalign.audit import readme  # noqa: E402
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
    figs = quality.figures(labels, params, root=ROOT)

    print(readme.quality_lines(figs))
    # Each align content filter alone, against the format checks alone.
    print()
    print(readme.filter_lines(figs))
    if a.json:
        write_json(a.json, figs)


if __name__ == "__main__":
    main()
