"""Write a model folder with the architecture of a `models/base` folder and seeded random weights.

For timing the engine on a machine the embedded model's package is not installed on (a GPU host with
no package index, say): the cost of a token depends on the shapes, not on the
weights. What such a model writes means nothing, and it never stops early, so every row generates
its full max_new_tokens.

    .venv/bin/python bench/random_weights.py SRC OUT   # SRC needs config.json, the tokenizer and the manifest
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfalign.engine.models import MANIFEST  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    a = ap.parse_args()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(a.src), dtype=torch.float32)
    model.save_pretrained(a.out)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        if (a.src / name).exists():
            shutil.copy(a.src / name, a.out / name)
    manifest = json.loads((a.src / MANIFEST).read_text())
    manifest.update(path=None, id=f"{manifest['id']}-random-weights", dtype="float32")
    (a.out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    print(f"{a.out}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M random parameters")


if __name__ == "__main__":
    main()
