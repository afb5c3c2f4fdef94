"""Stage `model`: materialize the configured base model into a folder every later stage loads.

    python scripts/prepare_model.py --params '{"model": {"name": "gemma3-270m"}}' --out models/base
"""
import argparse

from selfalign.core import stage
from selfalign.core.config import parse_slice
from selfalign.engine import models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True, help="JSON slice of params.yaml (model.*)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    m = parse_slice(a.params)["model"]
    manifest = models.materialize(m["name"], a.out, dtype=m["dtype"], trust_remote_code=m["trust_remote_code"])
    print(f"model {manifest['id']} -> {a.out}")


if __name__ == "__main__":
    stage.run(main)
